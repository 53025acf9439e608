"""Vector-stage benchmark (issue 13): the ANN index against brute force, without a gidx ingest.

    nice -n 5 .venv/bin/python benchmarks/bench_ann.py --sizes 10000 30000 100000 \
        --brute 10000 20000 30000 50000 [--median 1000] [--queries 200] [--ingest 10000] \
        [--many 256 2048] [--fresh 5000] [--nprobes 4 ...] [--work /work/scale/ann] [--json out.json]
    nice -n 5 .venv/bin/python benchmarks/bench_ann.py --sizes 100000 1000000 --median 300 \
        --ingest 100000 --nprobes 32 48        # 10^6: smaller records (7 min to generate)

Vectors: position-sketch embeddings (``PositionSketch()``, dim 1536) of families of
perturbed subsets of the real hg19 files in tests/data (the generator of
``benchmarks/scale_corpus.py``: a family root is a random subset of one real file, its
size log-normal around ``--median`` intervals, clipped to [100, 20000]; its 20 members
are the root perturbed at strengths spread over [0.05, 0.9] by ``gidx.corpus.perturb``).
They are made in chunks of 10 000 rows (500 families) cached as float32 ``.npy`` under
``--work/vec-m<median>-s<seed>/`` (a size reuses the chunks of a smaller one). Queries:
``--queries`` held-out members (not stored) of random families, at random strengths.

Per size N: the rows go through ``VectorStore.add`` in batches of 256 into a fresh store
under ``--work``, with ``VectorStore.maintain`` after every ``--ingest`` rows (as
``Index.maintain`` runs after each ingest); then

* ``--brute``: in-process brute force over the mirror (no index) at those sizes, and the
  one-shot cost of loading + converting the float16 mirror (where ANN_MIN_ROWS comes from),
* maintain: seconds of each call that did something (ANN build / optimize / retrain),
* recall@20 and @200 of ``VectorStore.search`` (limit 20 = ``--no-rerank``, limit 200
  = the re-ranked default) against float32 brute force over the cached vectors,
  and the same for the float16 brute force (what the store holds),
* vector-stage latency in process, p50/p95 over the queries (after one warm-up pass),
  in a fresh process, once per ``--nprobes`` value besides the module's default,
* bytes on disk per record: the LanceDB folder and the mirror folder,
* ``search_many`` throughput (queries/s at limit 200, ``--many`` queries per call: the
  held-out queries then stored rows), by its own choice, brute force, and the index,
* fresh rows: latency with ``--fresh`` rows added after the last maintain, and after it,
* peak RSS (VmHWM) of the query process, and of the benchmark process (it maps the cached
  vectors: not a store figure).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK_FAMILIES = 500
FAMILY_SIZE = 20
CHUNK = CHUNK_FAMILIES * FAMILY_SIZE


def _root(fam: int, median: int, seed: int):
    """(family rng after the root draw, root set) of family ``fam``."""
    from benchmarks.scale_corpus import _bases
    from gidx.intervals import IntervalSet

    _, bases = _bases()
    rng = np.random.default_rng([seed, fam])
    src = bases[int(rng.integers(len(bases)))]
    n = int(np.clip(round(np.exp(rng.normal(np.log(median), 0.8))), 100, 20_000))
    if len(src) > n:
        keep = np.sort(rng.choice(len(src), n, replace=False))
        return rng, IntervalSet(src.chroms, src.chrom[keep], src.start[keep], src.end[keep])
    return rng, src


def _chunk(args) -> np.ndarray:
    c, median, seed = args
    from benchmarks.scale_corpus import _bases
    from gidx.corpus import perturb
    from gidx.sketch import PositionSketch

    genome, bases = _bases()
    lengths = np.asarray(genome.lengths, dtype=np.int64)
    enc = PositionSketch()
    out = np.empty((CHUNK, enc.dim), np.float32)
    i = 0
    for fam in range(c * CHUNK_FAMILIES, (c + 1) * CHUNK_FAMILIES):
        rng, root = _root(fam, median, seed)
        for t in np.linspace(0.05, 0.9, FAMILY_SIZE):
            donor = bases[int(rng.integers(len(bases)))]
            out[i] = enc.embed_one(perturb(root, float(t), rng, lengths, donor), lengths)
            i += 1
    return out


def vectors(n: int, median: int, seed: int, work: Path, jobs: int) -> list[np.ndarray]:
    """The first ``n`` rows as memory-mapped float32 chunks (made and cached when missing)."""
    d = work / f"vec-m{median}-s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-n // CHUNK)
    todo = [c for c in range(n_chunks) if not (d / f"chunk-{c:05d}.npy").exists()]
    if todo:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(jobs) as pool:
            for c, arr in zip(todo, pool.map(_chunk, [(c, median, seed) for c in todo])):
                tmp = d / f".tmp-chunk-{c:05d}.npy"
                np.save(tmp, arr)
                os.rename(tmp, d / f"chunk-{c:05d}.npy")
        print(f"generated {len(todo) * CHUNK} vectors in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    chunks = [np.load(d / f"chunk-{c:05d}.npy", mmap_mode="r") for c in range(n_chunks)]
    chunks[-1] = chunks[-1][: n - (n_chunks - 1) * CHUNK]
    return chunks


def queries(n_families: int, count: int, median: int, seed: int) -> np.ndarray:
    """``count`` held-out members (not stored) of random families among the first ``n_families``."""
    from benchmarks.scale_corpus import _bases
    from gidx.corpus import perturb
    from gidx.sketch import PositionSketch

    genome, bases = _bases()
    lengths = np.asarray(genome.lengths, dtype=np.int64)
    enc = PositionSketch()
    pick = np.random.default_rng([seed, 10**9])
    out = np.empty((count, enc.dim), np.float32)
    for i in range(count):
        fam = int(pick.integers(n_families))
        _, root = _root(fam, median, seed)
        rng = np.random.default_rng([seed, fam, 1, i])
        out[i] = enc.embed_one(perturb(root, float(rng.uniform(0.05, 0.9)), rng, lengths,
                                       bases[int(rng.integers(len(bases)))]), lengths)
    return out


def brute_top(chunks: list[np.ndarray], q: np.ndarray, k: int, dtype=np.float32) -> np.ndarray:
    """Exact top ``k`` row numbers per query (cosine; rows are unit), rows as ``dtype``."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    best_s = np.full((len(q), 0), -np.inf)
    best_i = np.zeros((len(q), 0), np.int64)
    off = 0
    for ch in chunks:
        for s in range(0, len(ch), 20_000):
            block = np.asarray(ch[s: s + 20_000]).astype(dtype).astype(np.float32)
            sims = qn @ block.T
            ids = np.broadcast_to(np.arange(off + s, off + s + len(block)), sims.shape)
            allS = np.concatenate([best_s, sims], axis=1)
            allI = np.concatenate([best_i, ids], axis=1)
            top = np.argpartition(-allS, min(k, allS.shape[1] - 1), axis=1)[:, :k]
            best_s = np.take_along_axis(allS, top, 1)
            best_i = np.take_along_axis(allI, top, 1)
        off += len(ch)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


def recall(got: list[np.ndarray], truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(np.intersect1d(g[:k], t[:k])) / k for g, t in zip(got, truth)]))


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def rss_mb() -> float:
    """Peak RSS of this process image (VmHWM: ru_maxrss would include the parent's at fork)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pct(ts) -> tuple[float, float]:
    return float(np.percentile(ts, 50) * 1e3), float(np.percentile(ts, 95) * 1e3)


def query_phase(store: str, table: str, n: int, q_path: str, truth_path: str, truth16_path: str,
                nprobes: list) -> dict:
    """In a fresh process: open the store, search every query (limit 200 and 20; one warm-up
    pass each), recall against the brute-force rankings, peak RSS. With an index, once per
    ``nprobes`` value (None: the module's ANN_NPROBES)."""
    import gidx.vectors as V
    from gidx.vectors import VectorStore

    vs = VectorStore(Path(store))
    live = np.arange(n, dtype=np.int64)
    Q, T, T16 = np.load(q_path), np.load(truth_path), np.load(truth16_path)
    out: dict = {"ann": vs.ann_stats(table), "runs": []}
    t0 = time.perf_counter()
    vs.search(table, Q[0], 200, live)
    out["first_search_s"] = time.perf_counter() - t0  # LanceDB import / mirror load + conversion
    default = V.ANN_NPROBES
    for npr in (nprobes if out["ann"] else [None]):
        V.ANN_NPROBES = default if npr is None else npr
        run = {"nprobes": V.ANN_NPROBES}
        for limit in (200, 20):
            for q in Q:  # warm-up pass
                vs.search(table, q, limit, live)
            got, ts = [], []
            for q in Q:
                t1 = time.perf_counter()
                ids, _ = vs.search(table, q, limit, live)
                ts.append(time.perf_counter() - t1)
                got.append(ids)
            run[f"limit{limit}"] = {"p50_ms": _pct(ts)[0], "p95_ms": _pct(ts)[1],
                                    "recall20": recall(got, T, 20), f"recall{limit}": recall(got, T, limit),
                                    "recall20_vs_f16": recall(got, T16, 20)}
        out["runs"].append(run)
        if npr is None:
            out.update(run)
    V.ANN_NPROBES = default
    out["peak_rss_mb"] = rss_mb()
    return out


def _in_subprocess(fn, *args):
    import multiprocessing as mp

    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def run_size(n: int, a) -> dict:
    import gidx.vectors as V
    from gidx.vectors import VectorStore

    chunks = vectors(n, a.median, a.seed, a.work, a.jobs)
    tag = f"{n}-m{a.median}-s{a.seed}"
    q_path, t_path, t16_path = (a.work / f"{p}-{tag}.npy" for p in ("queries", "truth", "truth16"))
    if not q_path.exists():
        np.save(q_path, queries(n // FAMILY_SIZE, a.queries, a.median, a.seed))
    Q = np.load(q_path)
    t0 = time.perf_counter()
    if not t_path.exists():
        np.save(t_path, brute_top(chunks, Q, 200))
    if not t16_path.exists():
        np.save(t16_path, brute_top(chunks, Q, 200, np.float16))
    T, T16 = np.load(t_path), np.load(t16_path)
    res: dict = {"n": n, "truth_s": time.perf_counter() - t0,
                 "f16_brute_recall20": recall(list(T16), T, 20), "f16_brute_recall200": recall(list(T16), T, 200)}

    store = a.work / f"store-{tag}"
    shutil.rmtree(store, ignore_errors=True)
    vs = VectorStore(store / "vectors.lance")
    table = "sketch"
    reports, t_add, added = [], 0.0, 0
    off = 0
    for ch in chunks:
        for s in range(0, len(ch), 256):
            block = np.asarray(ch[s: s + 256])
            t1 = time.perf_counter()
            vs.add(table, np.arange(off, off + len(block), dtype=np.int64), block)
            t_add += time.perf_counter() - t1
            off += len(block)
            added += len(block)
            if added >= a.ingest or off == n:
                added = 0
                rep = vs.maintain(table, np.arange(off, dtype=np.int64))
                if rep["actions"]:
                    reports.append({"rows": rep["rows"], **rep["seconds"]})
                    print(f"  {n}: maintain at {rep['rows']} rows: {rep['seconds']}", file=sys.stderr)
    res["add_s"] = t_add
    res["maintain"] = reports
    res["disk_after_maintain"] = {"lance": du(store / "vectors.lance"), "mirror": du(store / "vectors.mirror")}
    t = vs._table(table)
    vs._optimize(t, timedelta(0))  # versions younger than the grace period: what the next maintain drops
    res["disk"] = {"lance": du(store / "vectors.lance"), "mirror": du(store / "vectors.mirror")}
    res["bytes_per_record"] = sum(res["disk"].values()) / n
    res["bytes_per_record_after_maintain"] = sum(res["disk_after_maintain"].values()) / n
    res["query"] = _in_subprocess(query_phase, str(store / "vectors.lance"), table, n, str(q_path), str(t_path),
                                  str(t16_path), [None] + [x for x in a.nprobes if x])
    live = np.arange(n, dtype=np.int64)
    for m in a.many:  # the held-out queries, then stored rows spread over the table (truth's query records)
        pick = np.linspace(0, n - 1, max(0, m - len(Q))).astype(int)
        qs = np.concatenate([Q, np.stack([chunks[i // CHUNK][i % CHUNK] for i in pick])])[:m] if len(pick) else Q[:m]
        saved = V.SEARCH_MANY_BRUTE_ROWS
        for label, brute_rows in (("auto", None), ("brute", 10**12), ("ann", 0)):
            if label != "auto" and vs.ann_stats(table) is None:
                continue
            V.SEARCH_MANY_BRUTE_ROWS = brute_rows
            t1 = time.perf_counter()
            ids, _ = vs.search_many(table, qs, 200, live)
            dt = time.perf_counter() - t1
            res.setdefault("search_many", []).append(
                {"m": len(qs), "path": label, "s": dt, "queries_per_s": len(qs) / dt,
                 "recall20": recall(list(ids[: len(Q)]), T, 20)})
            print(f"  search_many m={len(qs)} {label}: {len(qs) / dt:.0f} q/s", file=sys.stderr)
        V.SEARCH_MANY_BRUTE_ROWS = saved
    if vs.ann_stats(table) is not None and a.fresh:
        # rows added after the last maintain are scanned flat until the next one
        nxt = vectors(n + a.fresh, a.median, a.seed, a.work, a.jobs)
        extra = np.stack([nxt[i // CHUNK][i % CHUNK] for i in range(n, n + a.fresh)])
        for s in range(0, len(extra), 256):
            vs.add(table, np.arange(n + s, n + s + len(extra[s: s + 256]), dtype=np.int64), extra[s: s + 256])
        live = np.arange(n + len(extra), dtype=np.int64)
        ts = []
        for q in Q[:100]:
            t1 = time.perf_counter()
            vs.search(table, q, 200, live)
            ts.append(time.perf_counter() - t1)
        rep = vs.maintain(table, live)
        ts2 = []
        for q in Q[:100]:
            t1 = time.perf_counter()
            vs.search(table, q, 200, live)
            ts2.append(time.perf_counter() - t1)
        res["fresh"] = {"rows": len(extra), "unindexed_p50_ms": _pct(ts)[0], "unindexed_p95_ms": _pct(ts)[1],
                        "maintain": rep["seconds"], "after_p50_ms": _pct(ts2)[0], "after_p95_ms": _pct(ts2)[1]}
    res["peak_rss_mb_bench"] = rss_mb()
    if not a.keep:
        shutil.rmtree(store, ignore_errors=True)
    return res


def brute_sweep(sizes: list[int], a) -> list[dict]:
    """In-process brute force over the mirror (no index): where it stops meeting p95 <= 10 ms."""
    import gidx.vectors as V
    from gidx.vectors import VectorStore

    out = []
    chunks = vectors(max(sizes), a.median, a.seed, a.work, a.jobs)
    allrows = np.concatenate([np.asarray(c) for c in chunks])
    Q = np.load(a.work / f"queries-{max(sizes)}-m{a.median}-s{a.seed}.npy") \
        if (a.work / f"queries-{max(sizes)}-m{a.median}-s{a.seed}.npy").exists() else \
        queries(max(sizes) // FAMILY_SIZE, a.queries, a.median, a.seed)
    saved = V.ANN_MIN_ROWS
    V.ANN_MIN_ROWS = 10**12
    try:
        for n in sizes:
            store = a.work / f"brute-{n}"
            shutil.rmtree(store, ignore_errors=True)
            vs = VectorStore(store / "vectors.lance")
            for s in range(0, n, 4096):
                vs.add("sketch", np.arange(s, min(n, s + 4096)), allrows[s: min(n, s + 4096)])
            live = np.arange(n, dtype=np.int64)
            cold = VectorStore(store / "vectors.lance")
            t0 = time.perf_counter()
            cold.mirror.load("sketch")
            load_s = time.perf_counter() - t0
            row = {"n": n, "mirror_load_convert_ms": load_s * 1e3}
            for limit in (200, 20):
                for q in Q:
                    vs.search("sketch", q, limit, live)
                ts = []
                for q in Q:
                    t1 = time.perf_counter()
                    vs.search("sketch", q, limit, live)
                    ts.append(time.perf_counter() - t1)
                row[f"limit{limit}_p50_ms"], row[f"limit{limit}_p95_ms"] = _pct(ts)
            out.append(row)
            print(f"  brute {row}", file=sys.stderr)
            shutil.rmtree(store, ignore_errors=True)
    finally:
        V.ANN_MIN_ROWS = saved
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--brute", type=int, nargs="*", default=[], help="sizes for the brute-force sweep")
    ap.add_argument("--median", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--ingest", type=int, default=10_000, help="rows between maintain calls")
    ap.add_argument("--many", type=int, nargs="*", default=[256, 2048], help="queries per search_many call")
    ap.add_argument("--fresh", type=int, default=5_000, help="rows added after the last maintain")
    ap.add_argument("--work", type=Path, default=Path("/work/scale/ann"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--nprobes", type=int, nargs="*", default=[], help="also query with these nprobes")
    ap.add_argument("--partition-rows", type=int, default=None, help="ANN_PARTITION_ROWS for the builds")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    import gidx.vectors as V

    if a.partition_rows:
        V.ANN_PARTITION_ROWS = a.partition_rows

    results: dict = {"params": {"ANN_MIN_ROWS": V.ANN_MIN_ROWS, "ANN_NUM_BITS": V.ANN_NUM_BITS,
                                "ANN_MIN_LIMIT": V.ANN_MIN_LIMIT, "ANN_REFINE": V.ANN_REFINE,
                                "ANN_NPROBES": V.ANN_NPROBES, "ANN_PARTITION_ROWS": V.ANN_PARTITION_ROWS,
                                "median": a.median}, "sizes": []}
    if a.brute:
        results["brute"] = brute_sweep(a.brute, a)
    for n in a.sizes:
        r = run_size(n, a)
        results["sizes"].append(r)
        print(json.dumps(r, default=str), file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    if results.get("brute"):
        print("\n| rows (brute force, mirror) | load+convert ms (one-shot) | limit 200 p50 / p95 ms | limit 20 p50 / p95 ms |")
        print("|---|---|---|---|")
        for r in results["brute"]:
            print(f"| {r['n']:,} | {r['mirror_load_convert_ms']:.0f} | {r['limit200_p50_ms']:.1f} / "
                  f"{r['limit200_p95_ms']:.1f} | {r['limit20_p50_ms']:.1f} / {r['limit20_p95_ms']:.1f} |")
    print("\n| rows | served by | recall@20 (limit 200) | recall@200 | recall@20 (limit 20) | p50 / p95 ms "
          "(limit 200) | p50 / p95 ms (limit 20) | bytes/record (after maintain; after cleanup) | "
          "build / optimize s | search_many q/s | peak RSS MB (query process) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["sizes"]:
        q = r["query"]
        l2, l20 = q["limit200"], q["limit20"]
        builds = [m.get("build", m.get("rebuild")) for m in r["maintain"] if "build" in m or "rebuild" in m]
        opts = [m["optimize"] for m in r["maintain"] if "optimize" in m]
        served = q["ann"]["type"] if q["ann"] else "mirror"
        sm = {x["m"]: x["queries_per_s"] for x in r.get("search_many", []) if x["path"] == "auto"}
        print(f"| {r['n']:,} | {served} | {l2['recall20']:.3f} | {l2['recall200']:.3f} | {l20['recall20']:.3f} | "
              f"{l2['p50_ms']:.1f} / {l2['p95_ms']:.1f} | {l20['p50_ms']:.1f} / {l20['p95_ms']:.1f} | "
              f"{r['bytes_per_record_after_maintain']:.0f}; {r['bytes_per_record']:.0f} | "
              f"{'/'.join(f'{b:.0f}' for b in builds) or '-'} / {max(opts, default=0):.2f} | "
              f"{' / '.join(f'{v:.0f} (m={k})' for k, v in sm.items()) or '-'} | {q['peak_rss_mb']:.0f} |")
    print("\n| rows | nprobes | recall@20 (limit 200) | recall@20 (limit 20) | p50 / p95 ms (limit 200) | "
          "p50 / p95 ms (limit 20) |\n|---|---|---|---|---|---|")
    for r in results["sizes"]:
        for x in r["query"]["runs"]:
            l2, l20 = x["limit200"], x["limit20"]
            print(f"| {r['n']:,} | {x['nprobes'] or 'default'} | {l2['recall20']:.3f} | {l20['recall20']:.3f} | "
                  f"{l2['p50_ms']:.1f} / {l2['p95_ms']:.1f} | {l20['p50_ms']:.1f} / {l20['p95_ms']:.1f} |")
    print("\n| rows | search_many m | path | queries/s | recall@20 |\n|---|---|---|---|---|")
    for r in results["sizes"]:
        for x in r.get("search_many", []):
            print(f"| {r['n']:,} | {x['m']} | {x['path']} | {x['queries_per_s']:.0f} | {x['recall20']:.3f} |")
    print("\n| rows | maintain calls that did something (rows: action s) | fresh rows: p50 / p95 ms unindexed -> "
          "after maintain (its s) |\n|---|---|---|")
    for r in results["sizes"]:
        acts = "; ".join(f"{m['rows']:,}: " + ", ".join(f"{k} {v:.2f}" for k, v in m.items() if k != "rows")
                         for m in r["maintain"])
        f = r.get("fresh")
        fr = (f"{f['rows']:,} rows: {f['unindexed_p50_ms']:.1f} / {f['unindexed_p95_ms']:.1f} -> "
              f"{f['after_p50_ms']:.1f} / {f['after_p95_ms']:.1f} ({f['maintain']})") if f else "-"
        print(f"| {r['n']:,} | {acts} | {fr} |")
    print("\nfloat16 storage vs float32 brute force: " + ", ".join(
        f"{r['n']:,}: recall@20 {r['f16_brute_recall20']:.4f} @200 {r['f16_brute_recall200']:.4f}"
        for r in results["sizes"]))


if __name__ == "__main__":
    main()
