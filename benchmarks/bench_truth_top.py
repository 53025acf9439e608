"""`gidx truth --top K` from vector candidates, measured against all-pairs exact top K (issue 13).

    python benchmarks/bench_truth_top.py IDX --top 50 [--candidates 100] [--sample 300]
        [--records 10000 --corpus DIR | --copy-from /work/scale/i1e4] [--sweep 50,100,200,400] [--no-run]

1. the index: IDX as it is, or a copy of ``--copy-from`` (the truth run writes into
   it), or built from ``benchmarks/scale_corpus.py`` (``--records`` families of
   jittered real hg19 files into ``--corpus``, then ``gidx init`` + ``gidx ingest``);
2. the run: ``gidx truth -i IDX --top K --candidates C -q`` in a child process: wall
   time and its peak RSS (``getrusage(RUSAGE_CHILDREN)``);
3. the check: ``--sample`` query records drawn at random (seeded); for each, the
   all-pairs exact top K from a one-vs-all ``OverlapIndex.search`` (no candidates),
   compared with the stored rows:

   * **miss rate** (ties counted as found): per query, with s*_K the true K-th best S,
     ``min(K, #S>0) - #{stored targets with S >= s*_K}``, summed over the sample and
     divided by the sum of ``min(K, #S>0)``: a stored target that ties the true K-th
     value is as good as the one the id order picked;
   * **recall@K**: |stored targets ∩ true top-K targets| / |true top K| (ids; ties by id);
   * **misses at S >= 0.05**: of the true top-K pairs with S >= 0.05, the fraction whose
     target is not stored (the pairs a model is trained to find; below that S the
     neighbours of these corpora are chance overlaps of a few intervals);
   * certified: the fraction of all records whose top K is certified, and the number of
     sampled certified records whose rows differ from all-pairs (must be 0);
   * max |stored S - true S| over the stored pairs of the sample, both as float32 (the
     catalog's type for S): must be 0.

``--sweep C1,C2,..``: before the run, the same check for each C on the sample alone
(candidates and bound computed in memory, nothing written): time per record split
into vector search and exact search, and the miss rate, to choose C. The 10^5 time is
projected from per-record times: the exact part scales with the candidates (constant
per record), the brute-force vector part with the number of records.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROM_SIZES = ROOT / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"
MEANINGFUL = 0.05


def gidx(*args) -> None:
    subprocess.run([sys.executable, "-m", "gidx.cli.main", *map(str, args)], check=True)


def build(idx: Path, corpus: Path, records: int, copy_from: Path | None) -> None:
    if idx.exists():
        print(f"reusing {idx}", file=sys.stderr)
        return
    if copy_from is not None:
        shutil.copytree(copy_from, idx)
        print(f"copied {copy_from} -> {idx}", file=sys.stderr)
        return
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_corpus.py"), str(corpus), "--records",
                    str(records)], check=True)
    gidx("init", idx, "--chrom-sizes", CHROM_SIZES)
    t = time.perf_counter()
    gidx("ingest", "-q", "-i", idx, corpus)
    print(f"ingest: {time.perf_counter() - t:.0f} s", file=sys.stderr)


def _status(pid: int) -> dict:
    try:
        with open(f"/proc/{pid}/status") as f:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f)
                    if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem")}
    except (OSError, ValueError):
        return {}


def run_truth(idx: Path, top: int, candidates: int | None) -> dict:
    """The truth run in a child process; its peak RSS (getrusage) and, polled every 0.2 s
    from /proc, the peaks of its anonymous memory and of its file-backed pages (the
    memory-mapped overlap segments and vector mirror: page cache, reclaimable)."""
    import threading

    cmd = [sys.executable, "-m", "gidx.cli.main", "truth", "-i", str(idx), "--top", str(top)]
    if candidates is not None:
        cmd += ["--candidates", str(candidates)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    stop = threading.Event()

    def poll():
        while not stop.wait(0.2):
            st = _status(proc.pid)
            for k in peak:
                peak[k] = max(peak[k], st.get(k, 0))

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, err = proc.communicate()
    stop.set()
    th.join()
    wall = time.perf_counter() - t
    if proc.returncode:
        raise SystemExit(f"truth failed ({proc.returncode}): {err}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB (Linux)
    return {"wall_s": wall, "peak_rss_mib": max(rss, peak["VmRSS"] / 1024), "anon_mib": peak["RssAnon"] / 1024,
            "file_mib": peak["RssFile"] / 1024,
            "stderr": err.strip(), "cmd": "gidx " + " ".join(cmd[3:])}


def true_tops(index, sample: list[int], top: int):
    """All-pairs exact top K of each sampled record: one-vs-all search, no candidates."""
    from gidx.truth import record_sets

    ov = index.overlap()
    out, secs = {}, 0.0
    for lo in range(0, len(sample), 64):
        sets = record_sets(index, sample[lo : lo + 64])
        for q in sample[lo : lo + 64]:
            t = time.perf_counter()
            res = ov.search(sets[q])
            secs += (time.perf_counter() - t) * 1e3
            pos = res.s > 0
            ids, s = res.record_id[pos], res.s[pos]
            order = np.lexsort((ids, -s))
            out[q] = (ids[order], s[order])  # every positive pair, best first
    return out, secs / max(1, len(sample))  # ms per record


def compare(truth: dict, stored: dict, top: int) -> dict:
    """Miss rate (ties as found), recall@K, misses among S >= MEANINGFUL, max S error."""
    miss = want = inter = n_true = m_miss = m_want = 0
    err = 0.0
    bad = []
    for q, (ids, s) in truth.items():
        got_ids, got_s = stored.get(q, (np.zeros(0, np.int64), np.zeros(0)))
        k = min(top, len(ids))
        if k:
            s_k = s[k - 1]
            found = int(np.sum(got_s >= s_k - 1e-12))
            miss += max(0, k - found)
            want += k
            t_ids = ids[:k]
            inter += len(np.intersect1d(t_ids, got_ids))
            n_true += k
            big = t_ids[s[:k] >= MEANINGFUL]
            m_want += len(big)
            m_miss += len(np.setdiff1d(big, got_ids))
            if k - found > 0:
                bad.append(q)
        s_of = dict(zip(ids.tolist(), s.tolist()))
        for t, v in zip(got_ids.tolist(), got_s.tolist()):  # the catalog keeps S as float32
            err = max(err, abs(float(np.float32(s_of.get(t, 0.0))) - float(np.float32(v))))
    return {"miss_rate": miss / max(1, want), "recall": inter / max(1, n_true),
            "miss_meaningful": m_miss / max(1, m_want), "meaningful_pairs": m_want, "max_s_err": err,
            "missed_queries": bad}


def stored_rows(index, sample: list[int]):
    rows = index.sql(f"select query_id, target_id, s from seqpare where query_id in ({','.join(map(str, sample))}) "
                     "order by query_id, s desc, target_id").to_pydict()
    out: dict[int, tuple] = {}
    q = np.asarray(rows["query_id"], np.int64)
    t, s = np.asarray(rows["target_id"], np.int64), np.asarray(rows["s"], np.float64)
    for r in sample:
        m = q == r
        out[r] = (t[m], s[m])
    return out


def sweep(index, sample: list[int], top: int, cs: list[int], truth: dict) -> list[dict]:
    """The candidates method for each C on the sample only (nothing written)."""
    from gidx.truth import CHUNK, RecordBounds, make_tasks, record_sets, run_task

    live = np.asarray(sorted(index.record_ids()), np.int64)
    ov = index.overlap()
    bounds = RecordBounds.from_catalog(index, live)
    eid, enc = index.set_encoder()
    table = index.vector_table(eid, enc)
    out = []
    for c in cs:
        stored, t_vec, t_exact, cert, searched = {}, 0.0, 0.0, 0, 0
        for lo in range(0, len(sample), CHUNK):
            chunk = sample[lo : lo + CHUNK]
            sets = record_sets(index, chunk)
            t = time.perf_counter()
            tasks = make_tasks(index, chunk, sets, {}, live, top, c, table, enc)
            t_vec += time.perf_counter() - t
            for task in tasks:
                t = time.perf_counter()
                q, res, ok, n = run_task(ov, task, live, top, bounds, c)
                t_exact += time.perf_counter() - t
                keep = res.s > 0
                stored[q] = (res.record_id[keep], res.s[keep])
                cert += ok
                searched += n
        m = compare(truth, stored, top)
        m.update(candidates=c, vec_ms=t_vec / len(sample) * 1e3, exact_ms=t_exact / len(sample) * 1e3,
                 certified=cert / len(sample), searched=searched / len(sample))
        out.append(m)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index", type=Path)
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--candidates", type=int, default=None, help="default: gidx's default for --top")
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--copy-from", type=Path, default=None)
    ap.add_argument("--sweep", default="", help="comma-separated C values to evaluate on the sample first")
    ap.add_argument("--no-run", action="store_true", help="no truth run: check the rows already stored")
    ap.add_argument("--project", type=int, default=100_000, help="records to project the run time to")
    a = ap.parse_args(argv)

    from gidx.index import Index
    from gidx.truth import default_candidates

    build(a.index, a.corpus or a.index.with_name(a.index.name + "-corpus"), a.records, a.copy_from)
    c_run = a.candidates if a.candidates is not None else default_candidates(a.top)
    # the run first, from this still small process (a child forked from a big parent
    # reports the parent's pages in ru_maxrss)
    run = None if a.no_run else run_truth(a.index, a.top, a.candidates)
    index = Index.open(a.index)
    live = sorted(index.record_ids())
    n = len(live)
    rng = np.random.default_rng(a.seed)
    sample = sorted(int(x) for x in rng.choice(live, min(a.sample, n), replace=False))
    t = time.perf_counter()
    truth, all_pairs_ms = true_tops(index, sample, a.top)
    print(f"all-pairs truth of {len(sample)} sampled records: {time.perf_counter() - t:.0f} s "
          f"({all_pairs_ms:.0f} ms per record)", file=sys.stderr)

    print(f"\n## gidx truth --top {a.top}: {n:,} records, {len(sample)} sampled queries vs all-pairs\n")
    if a.sweep:
        cs = [int(x) for x in a.sweep.split(",")]
        rows = sweep(index, sample, a.top, cs, truth)
        print("| C | miss rate | recall@K | misses at S >= 0.05 | certified | exact searches / record "
              "| vector ms / record | exact ms / record |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['candidates']} | {r['miss_rate']:.4f} | {r['recall']:.4f} | {r['miss_meaningful']:.4f} "
                  f"({r['meaningful_pairs']} pairs) | {r['certified']:.3f} | {r['searched']:.0f} "
                  f"| {r['vec_ms']:.1f} | {r['exact_ms']:.1f} |")
        print()
    if run:
        print(f"run: `{run['cmd']}`: {run['wall_s']:.0f} s, peak RSS {run['peak_rss_mib']:.0f} MiB "
              f"(anonymous {run['anon_mib']:.0f} MiB, file-backed mappings {run['file_mib']:.0f} MiB)")
    prog = index.sql("select count(*) as n, count(*) filter (where certified) as c, min(candidates) as cmin, "
                     "max(candidates) as cmax, min(top_k) as k from seqpare_progress").to_pylist()[0]
    stored = stored_rows(index, sample)
    m = compare(truth, stored, a.top)
    got = index.sql(f"select record_id, certified from seqpare_progress where record_id in "
                    f"({','.join(map(str, sample))})").to_pydict()
    cert = dict(zip(got["record_id"], got["certified"]))
    dishonest = [q for q in m["missed_queries"] if cert.get(q)]
    print()
    print("| records | K | C | wall | per record | peak RSS | certified | miss rate | recall@K "
          "| misses at S >= 0.05 | certified but wrong | max S error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    wall = f"{run['wall_s']:.0f} s" if run else "-"
    per = f"{run['wall_s'] / n * 1e3:.1f} ms" if run else "-"
    rss = f"{run['peak_rss_mib']:.0f} MiB ({run['anon_mib']:.0f} anon)" if run else "-"
    print(f"| {n:,} | {prog['k']} | {prog['cmin']} | {wall} | {per} | {rss} | {prog['c'] / max(1, prog['n']):.3f} "
          f"| {m['miss_rate']:.4f} | {m['recall']:.4f} | {m['miss_meaningful']:.4f} ({m['meaningful_pairs']} pairs) "
          f"| {len(dishonest)} | {m['max_s_err']:.1e} |")
    if run:
        print(f"\nstderr of the run: {run['stderr']}")
    print(f"\nall-pairs one-vs-all search: {all_pairs_ms:.0f} ms per record at {n:,} records "
          f"(x{n:,} records = {all_pairs_ms * n / 1e3 / 60:.0f} min)")
    if run and a.sweep:
        r = next((r for r in rows if r["candidates"] == c_run), None)
        if r:
            # the run's own time per record, with its vector part (brute force: one product
            # per record and stored vector) scaled by the number of records
            scale = a.project / n
            per_rec = run["wall_s"] / n * 1e3
            proj = a.project * (per_rec - r["vec_ms"] + r["vec_ms"] * scale) / 1e3
            print(f"projection to {a.project:,} records (C={c_run}): ({per_rec:.1f} ms per record of this run - "
                  f"{r['vec_ms']:.1f} ms vector search + {r['vec_ms']:.1f} ms x {scale:.0f}) x {a.project:,} = "
                  f"{proj / 60:.0f} min, if the vector search is brute force (an ANN index does not grow with N)")
    print(f"\ncommand: python benchmarks/bench_truth_top.py {' '.join(sys.argv[1:] if argv is None else argv)}")


if __name__ == "__main__":
    main()
