"""gidx ingest / gidx truth: single process vs Ray workers on a local cluster.

    python benchmarks/bench_ray.py [--files 200] [--intervals 20000] [--workers 2]

Makes ``--files`` synthetic hg19 BED files (``--intervals`` random peaks each, seeded),
then times, in this one process:

* ``Index.ingest(DIR)`` and ``Index.truth()``: single process;
* ``Index.ingest(DIR, ray="auto")`` and ``Index.truth(ray="auto")`` on a local cluster of
  ``WORKERS`` CPUs (``ray.init(num_cpus=WORKERS)``, what ``--ray auto`` starts; started
  once before timing, reported apart).

Both indexes are checked to be identical. Prints per-task timings (worker time) and the
driver's own time (commits, catalog reads), and from them what N workers would take:
the workers' total divided by N, but never below the driver's serial part.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HG19_SIZES = ROOT / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"


def make_files(out: Path, n: int, per: int, seed: int = 0) -> None:
    from gidx.genome import read_chrom_sizes

    names, lengths = read_chrom_sizes(HG19_SIZES)
    keep = [i for i, nm in enumerate(names) if "_" not in nm]
    w = np.asarray([lengths[i] for i in keep], dtype=np.float64)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    for f in range(n):
        c = rng.choice(keep, size=per, p=w / w.sum())
        ln = rng.integers(100, 2000, per)
        start = (rng.random(per) * (np.asarray(lengths)[c] - ln)).astype(np.int64)
        order = np.lexsort((start, c))
        lines = [f"{names[c[i]]}\t{start[i]}\t{start[i] + ln[i]}\tp{i}" for i in order]
        (out / f"set{f:04d}.bed").write_text("\n".join(lines) + "\n")


def timed_commits(index_cls):
    """Wrap Index._commit_batch to add up the driver's commit time."""
    spent = [0.0]
    orig = index_cls._commit_batch

    def wrapped(self, *a, **k):
        t = time.perf_counter()
        try:
            return orig(self, *a, **k)
        finally:
            spent[0] += time.perf_counter() - t

    index_cls._commit_batch = wrapped
    return spent, lambda: setattr(index_cls, "_commit_batch", orig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--intervals", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import ray

    from gidx import distributed
    from gidx.index import Index

    work = Path(tempfile.mkdtemp(prefix="gidx-bench-ray-"))
    try:
        beds = work / "beds"
        make_files(beds, args.files, args.intervals)
        addr = "auto"

        one = Index.create(work / "one", chrom_sizes=HG19_SIZES)
        spent, undo = timed_commits(Index)
        t = time.perf_counter()
        rep = one.ingest([beds])
        ingest_1 = time.perf_counter() - t
        commit_1 = spent[0]
        t = time.perf_counter()
        one.truth()
        truth_1 = time.perf_counter() - t

        t = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
        distributed.connect(addr)
        connect_s = time.perf_counter() - t
        many = Index.create(work / "ray", chrom_sizes=HG19_SIZES)
        spent[0] = 0.0
        t = time.perf_counter()
        many.ingest([beds], ray=addr)
        ingest_r = time.perf_counter() - t
        commit_r = spent[0]
        undo()
        ing_tasks = list(distributed.LAST_TIMINGS)
        t = time.perf_counter()
        many.truth(ray=addr)
        truth_r = time.perf_counter() - t
        tr_tasks = list(distributed.LAST_TIMINGS)

        same = all(
            one.sql(q).equals(many.sql(q)) for q in (
                "select * exclude (ingested_at) from records order by id",
                "select * from intervals order by record_id, i",
                "select * from seqpare order by query_id, target_id"))
        ids1, v1 = one.vectors.vectors(one.vector_table(*one.set_encoder()))
        ids2, v2 = many.vectors.vectors(many.vector_table(*many.set_encoder()))
        same &= np.array_equal(ids1[np.argsort(ids1)], ids2[np.argsort(ids2)]) and \
            v1[np.argsort(ids1)].tobytes() == v2[np.argsort(ids2)].tobytes()

        n_iv = rep.intervals
        w_ing = sum(t["task_s"] for t in ing_tasks)
        w_tr = sum(t["task_s"] for t in tr_tasks)
        print(f"{args.files} files x {args.intervals:,} intervals = {n_iv:,} intervals; "
              f"{args.workers}-worker local cluster; identical: {same}; ray connect {connect_s:.2f} s")
        print(f"ingest: single {ingest_1:.2f} s (commits {commit_1:.2f} s) | ray {ingest_r:.2f} s "
              f"(driver commits {commit_r:.2f} s) | {len(ing_tasks)} tasks, worker time {w_ing:.2f} s "
              f"(parse {sum(t['parse_s'] for t in ing_tasks):.2f}, embed {sum(t['embed_s'] for t in ing_tasks):.2f}), "
              f"task median {np.median([t['task_s'] for t in ing_tasks]):.3f} s max {max(t['task_s'] for t in ing_tasks):.3f} s")
        print(f"truth:  single {truth_1:.2f} s | ray {truth_r:.2f} s | {len(tr_tasks)} tasks, worker time {w_tr:.2f} s "
              f"(open {sum(t['open_s'] for t in tr_tasks):.2f}, search {sum(t['search_s'] for t in tr_tasks):.2f}), "
              f"task median {np.median([t['task_s'] for t in tr_tasks]):.3f} s max {max(t['task_s'] for t in tr_tasks):.3f} s")
        for n in (1, 2, 8, 32):
            print(f"  projected with {n:>2} workers: ingest ~{max(commit_r, w_ing / n):.2f} s, "
                  f"truth ~{max(truth_r - w_tr / args.workers, 0) + w_tr / n:.2f} s (driver part + workers / N)")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
