"""The vector stage of a big index: the mirror's code scan against float32 brute force of
the same rows, and against LanceDB's IVF_RQ index where the table has one.

    python benchmarks/bench_codes.py INDEX QUERIES_DIR [--sweep] [--exact-queries 200]

For each held-out query file: its vector (the index's set encoder), the float32 brute
force top 200 over every live stored row (streamed in blocks), then each searcher at
limit 20 (``--no-rerank -k 20``) and limit 200 (the default re-rank depth): recall@20
(the searcher's top 20 against brute force's), recall@200, p50 / p95 ms (in process,
warm: a warm-up pass first). ``--sweep``: the code scan at other candidate depths.
``--exact-queries N``: end to end on the first N queries, recall@20 of the default query
(re-rank 200) against exact seqpare, with the code scan's candidates and with brute
force's. Prints one JSON object (RESULTS.md §10 quotes it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _pct(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p95_ms": round(float(np.percentile(times, 95)), 2)}


def brute_top(vs, table: str, queries: np.ndarray, live: np.ndarray, k: int) -> np.ndarray:
    """(m, k) ids of the float32 brute-force top k (ties by id)."""
    import gidx.vectors as V

    saved = V.SEARCH_MANY_BRUTE_ROWS
    V.SEARCH_MANY_BRUTE_ROWS = 1 << 62
    try:
        return vs.search_many(table, queries, k, live)[0]
    finally:
        V.SEARCH_MANY_BRUTE_ROWS = saved


def measure(search, queries: np.ndarray, want: np.ndarray) -> dict:
    out = {}
    for limit in (20, 200):
        for q in queries:  # warm-up: the page cache and the process's caches as a server's
            search(q, limit)
        times, r20, r200 = [], [], []
        for q, w in zip(queries, want):
            t0 = time.perf_counter()
            ids, _ = search(q, limit)
            times.append((time.perf_counter() - t0) * 1000)
            r20.append(len(np.intersect1d(ids[:20], w[:20])) / 20)
            if limit == 200:
                r200.append(len(np.intersect1d(ids[:200], w[:200])) / 200)
        out[f"limit{limit}"] = {**_pct(times), "recall@20": round(float(np.mean(r20)), 4),
                                "recall@20_min": round(float(np.min(r20)), 2)}
        if r200:
            out[f"limit{limit}"]["recall@200"] = round(float(np.mean(r200)), 4)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("queries", type=Path)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--exact-queries", type=int, default=0)
    a = ap.parse_args(argv)

    import gidx
    import gidx.vectors as V
    from gidx.bed import read_bed

    idx = gidx.Index.open(a.index)
    snap = idx._snapshot()
    enc, live = snap["encoder"], snap["ids"]
    table = idx.vector_table(snap["encoder_id"], enc)
    vs = idx.vectors
    files = sorted(a.queries.glob("*.bed"))
    queries = np.stack([enc.embed([read_bed(f, idx.genome, aliases=snap["aliases"]).intervals],
                                  idx.genome.lengths)[0] for f in files]).astype(np.float32)
    t0 = time.perf_counter()
    want = brute_top(vs, table, queries, live, 200)
    res: dict = {"index": str(a.index), "rows": int(len(live)), "queries": len(files),
                 "brute_force_s": round(time.perf_counter() - t0, 1),
                 "params": {k: getattr(V, k) for k in ("CODES_MIN_ROWS", "CODE_BITS", "CODE_CANDIDATES_MIN",
                                                       "CODE_CANDIDATES_PER_REFINE", "CODE_REFINE_MIN",
                                                       "CODE_REFINE_PER_LIMIT")}}
    res["codes"] = measure(lambda q, lim: vs.search(table, q, lim, live), queries, want)
    if a.sweep:
        saved = (V.CODE_CANDIDATES_MIN, V.CODE_REFINE_MIN)
        res["sweep"] = {}
        for cmin, rmin in ((10_000, 2_000), (20_000, 4_000), (40_000, 8_000)):
            V.CODE_CANDIDATES_MIN, V.CODE_REFINE_MIN = cmin, rmin
            res["sweep"][f"{cmin}/{rmin}"] = measure(lambda q, lim: vs.search(table, q, lim, live), queries, want)
        V.CODE_CANDIDATES_MIN, V.CODE_REFINE_MIN = saved
    t = vs._table(table)
    if t is not None and vs._ann(t) is not None:
        res["lancedb_ivf_rq"] = measure(lambda q, lim: vs._lance_search(table, q, lim, live), queries, want)
    if a.exact_queries:
        sub = files[: a.exact_queries]
        exact = [idx.search(f, k=20, exact=True).table.column("record_id").to_pylist() for f in sub]
        res["end_to_end"] = {"queries": len(sub)}
        lists = {}
        for label, rows in (("codes", V.CODES_MIN_ROWS), ("brute_force", 1 << 62)):
            saved = V.CODES_MIN_ROWS
            V.CODES_MIN_ROWS = rows  # brute force: the mirror as one float32 matrix (10^5: 0.6 GB)
            try:
                lists[label] = [idx.search(f, k=20).table.column("record_id").to_pylist() for f in sub]
            finally:
                V.CODES_MIN_ROWS = saved
            rec = [len(set(g) & set(e)) / 20 for g, e in zip(lists[label], exact)]
            res["end_to_end"][f"recall@20_vs_exact_{label}"] = round(float(np.mean(rec)), 4)
        res["end_to_end"]["identical_top20_lists"] = round(float(np.mean(
            [a_ == b_ for a_, b_ in zip(lists["codes"], lists["brute_force"])])), 3)
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
