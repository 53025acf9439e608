"""Exact seqpare search speed (gidx.seqpare.OverlapIndex) against the reference.

(a) the 22 UCSC hg19 tracks of tests/data/bed/hg19/seqpare_ucsc (1.03 M intervals)
    in one in-memory index, each track as the query: time per search (median over
    repeats; the reference ``seqpare -m 1`` anchor is 0.18 s median / 0.38 s largest;
    goals: median <= 18 ms, largest <= 40 ms);
(b) all 22 x 22 searches, total (goal < 1 s);
(c) synthetic indexes of 10^2 .. 10^4 records derived from the tracks by seeded
    subsampling, dropping and shifting: time vs records and vs query size, and bytes
    of the overlap structure per 10^6 intervals;
(d) a ``records=`` search of 200 candidates (re-ranking) vs the full search;
(e) a fresh process: import time of gidx.seqpare (numpy + the compiled kernels of
    gidx/_seqpare.c) and of the extension alone, and the first pair + search.

Wall-clock times are medians (and best) of repeats; "cpu" is the summed CPU time of
all threads. On a machine that other processes keep busy, wall-clock time says
little; "critical path" then estimates the wall time on idle cores: the CPU time of
the busiest search worker thread plus the CPU time outside the workers (best of
repeats; measured by wrapping gidx.seqpare's worker kernels).

    .venv/bin/python benchmarks/bench_seqpare.py [--quick] [--threads 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
UCSC = REPO / "tests" / "data" / "bed" / "hg19" / "seqpare_ucsc"
REF_MEDIAN_S, REF_LARGEST_S = 0.18, 0.38
GOAL_MEDIAN_S, GOAL_LARGEST_S, GOAL_ALL_S = 0.018, 0.040, 1.0


def load_tracks():
    """The UCSC tracks on one shared chromosome code table (gidx's BED reader, no genome)."""
    from gidx.bed import read_bed

    sets = {p.name.removesuffix(".bed.gz"): read_bed(p).intervals for p in sorted(UCSC.glob("*.bed.gz"))}
    names: tuple[str, ...] = ()
    for s in sets.values():
        names = s.with_chroms(names).chroms
    return {k: s.with_chroms(names) for k, s in sets.items()}


def timed(fn, repeats: int):
    """Median wall seconds, median process CPU seconds (all threads), best wall
    seconds, last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus)), float(np.min(walls)), result


class CriticalPath:
    """Records the thread CPU time of each worker call (see the module docstring)."""

    def __init__(self):
        import gidx.seqpare as sp

        self.calls: list[float] = []
        for name in ("_class_worker", "_sweep_worker"):
            kernel = getattr(sp, name)
            setattr(sp, name, self._wrap(kernel))

    def _wrap(self, kernel):
        def timed_kernel(*args):
            t0 = time.thread_time()
            out = kernel(*args)
            self.calls.append(time.thread_time() - t0)
            return out
        return timed_kernel

    def measure(self, fn, repeats: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            self.calls.clear()
            c0 = time.process_time()
            fn()
            total = time.process_time() - c0
            busiest = max(self.calls, default=0.0)
            best = min(best, busiest + max(0.0, total - sum(self.calls)))
        return best


def ms(x: float) -> str:
    return f"{1000 * x:.2f}"


def synthetic_records(tracks: dict, n_records: int, seed: int):
    """Rows (record, chrom, start, end) of records derived from the real tracks: each
    takes a random track, a random subsample of 300-3000 of its intervals (file order
    kept), drops 5% of them and shifts each by up to +-200 bp."""
    rng = np.random.default_rng(seed)
    names = sorted(tracks)
    rec, chrom, start, end = [], [], [], []
    for r in range(n_records):
        src = tracks[names[rng.integers(len(names))]]
        n = min(len(src), int(rng.integers(300, 3000)))
        keep = np.sort(rng.choice(len(src), n, replace=False))
        keep = keep[rng.random(n) > 0.05]  # drop 5%
        shift = rng.integers(-200, 201, len(keep))
        s = np.maximum(src.start[keep] + shift, 0)
        e = np.maximum(src.end[keep] + shift, s)
        rec.append(np.full(len(keep), r, np.int64))
        chrom.append(src.chrom[keep])
        start.append(s)
        end.append(e)
    return np.concatenate(rec), np.concatenate(chrom), np.concatenate(start), np.concatenate(end)


def startup_times(runs: int = 5) -> tuple[float, float, float]:
    """Median over fresh processes of: ``import gidx.seqpare`` (numpy included), the
    import of the extension gidx._seqpare alone, and the first pair + search."""
    code = textwrap.dedent("""
        import time
        t = time.perf_counter()
        import numpy, gidx.intervals
        t1 = time.perf_counter()
        import gidx._seqpare
        t2 = time.perf_counter()
        from gidx.seqpare import OverlapIndex, pair
        t3 = time.perf_counter()
        from gidx.intervals import IntervalSet
        a = IntervalSet.from_tuples([("c1", 0, 10), ("c1", 5, 20)])
        b = IntervalSet.from_tuples([("c1", 2, 12)])
        t4 = time.perf_counter()
        pair(a, b)
        OverlapIndex.from_sets({1: a, 2: b}).search(b, method="class")
        print(t3 - t, t2 - t1, time.perf_counter() - t4)
    """)
    rows = [[float(x) for x in subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                               text=True, cwd=REPO).stdout.split()[-3:]] for _ in range(runs)]
    return tuple(float(np.median(col)) for col in zip(*rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, synthetic indexes up to 10^3 records")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    repeats = 3 if args.quick else args.repeats

    from gidx.seqpare import OverlapIndex

    critical = CriticalPath()
    print(f"# seqpare benchmark (threads={args.threads}, repeats={repeats}, "
          f"cpus available={len(os.sched_getaffinity(0))}, load avg={os.getloadavg()[0]:.1f})\n")
    tracks = load_tracks()
    names = sorted(tracks)
    t0 = time.perf_counter()
    index = OverlapIndex.from_sets({i: tracks[n] for i, n in enumerate(names)}, threads=args.threads)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.search(tracks["affyGnf1h"])  # first search (page faults, worker pool start)
    first = time.perf_counter() - t0
    for n in names:  # warm
        index.search(tracks[n])
    print(f"index: {len(names)} tracks, {index.n_intervals:,} intervals, built in {build:.2f} s; "
          f"first search {1000 * first:.1f} ms\n")

    # (a) each track as the query
    print("## (a) each track as the query against all 22\n")
    print("| query | intervals | records hit | wall ms (median) | wall ms (best) | cpu ms | critical path ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    walls, cpus, bests, crit = {}, {}, {}, {}
    for n in sorted(names, key=lambda n: len(tracks[n])):
        walls[n], cpus[n], bests[n], res = timed(lambda: index.search(tracks[n]), repeats)
        crit[n] = critical.measure(lambda: index.search(tracks[n]), repeats)
        print(f"| {n} | {len(tracks[n]):,} | {len(res)} | {ms(walls[n])} | {ms(bests[n])} | {ms(cpus[n])} "
              f"| {ms(crit[n])} |")
    w = np.array(list(walls.values()))
    largest = max(names, key=lambda n: len(tracks[n]))
    print(f"\nmedian {ms(np.median(w))} ms (reference {ms(REF_MEDIAN_S)}, goal {ms(GOAL_MEDIAN_S)}); "
          f"largest query ({largest}) {ms(walls[largest])} ms (reference {ms(REF_LARGEST_S)}, "
          f"goal {ms(GOAL_LARGEST_S)}); max {ms(w.max())} ms; best-of-repeats median "
          f"{ms(np.median(list(bests.values())))} ms, largest {ms(bests[largest])} ms; "
          f"cpu median {ms(np.median(list(cpus.values())))} ms, largest {ms(cpus[largest])} ms; "
          f"critical path median {ms(np.median(list(crit.values())))} ms, largest {ms(crit[largest])} ms, "
          f"sum {sum(crit.values()):.3f} s\n")

    # (b) all 22 x 22
    t_all, c_all, _, _ = timed(lambda: [index.search(tracks[n]) for n in names], max(1, repeats // 2))
    print(f"## (b) all {len(names)}x{len(names)} searches: {t_all:.3f} s wall, {c_all:.3f} s cpu "
          f"(goal < {GOAL_ALL_S:.0f} s)\n")

    # (c) synthetic indexes
    print("## (c) synthetic indexes (records: 300-3000 subsampled, shifted intervals of a random track)\n")
    sizes = (100, 1000) if args.quick else (100, 1000, 10000)
    queries = ["affyGnf1h", "agilentCgh4x44k", "agilentCgh2x105k"]
    print("| records | intervals | build s | bytes / 10^6 intervals | "
          + " | ".join(f"{q} ({len(tracks[q]) // 1000}k) ms" for q in queries) + " | records hit (largest) |")
    print("|---:|---:|---:|---:|" + "---:|" * len(queries) + "---:|")
    big = None
    for n_rec in sizes:
        rows = synthetic_records(tracks, n_rec, seed=n_rec)
        t0 = time.perf_counter()
        syn = OverlapIndex.from_arrays(*rows, threads=args.threads)
        build = time.perf_counter() - t0
        syn.search(tracks[queries[0]])
        times = []
        for q in queries:
            wt, _, _, res = timed(lambda: syn.search(tracks[q]), repeats)
            times.append(wt)
        per_m = syn.nbytes() / syn.n_intervals * 1e6
        print(f"| {n_rec:,} | {syn.n_intervals:,} | {build:.1f} | {per_m / 1e6:.1f} MB | "
              + " | ".join(ms(t) for t in times) + f" | {len(res):,} |")
        big = syn
    print()

    # (d) re-ranking: records= restricted to 200 candidates
    rng = np.random.default_rng(0)
    cand = rng.choice(big.record_ids, 200, replace=False)
    print(f"## (d) records= search of 200 candidates in the {len(big.record_ids):,}-record index\n")
    print("| query | intervals | full ms | 200 candidates ms |")
    print("|---|---:|---:|---:|")
    for q in queries:
        full = timed(lambda: big.search(tracks[q]), repeats)[0]
        sub = timed(lambda: big.search(tracks[q], records=cand), repeats)[0]
        print(f"| {q} | {len(tracks[q]):,} | {ms(full)} | {ms(sub)} |")
    print()

    # (e) start-up
    imp, ext, first = startup_times()
    print(f"## (e) a fresh process (median of 5): import gidx.seqpare {1000 * imp:.1f} ms (numpy included), "
          f"of which the extension gidx._seqpare {1000 * ext:.2f} ms; first pair + search {1000 * first:.1f} ms")


if __name__ == "__main__":
    main()
