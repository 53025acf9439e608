"""Throughput and coverage of Tiling.compose on peak-like intervals.

Intervals: lengths log-uniform in [50 bp, 5 kbp], uniform positions on the hg38
primary chromosomes. Prints intervals/s for compose and for unique_tiles, then
per length bucket: mean tiles per interval and mean coverage fraction
(sum of weights / interval length).

    .venv/bin/python benchmarks/bench_tiling.py [--n 2000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gidx.tiling import Tiling

HG38_PRIMARY_SIZES = np.array(
    [248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973,
     145138636, 138394717, 133797422, 135086622, 133275309, 114364328, 107043718,
     101991189, 90338345, 83257441, 80373285, 58617616, 64444167, 46709983,
     50818468, 156040895, 57227415],
    dtype=np.int64,
)  # chr1..chr22, chrX, chrY
BUCKET_EDGES = [50, 100, 200, 500, 1000, 2000, 5001]


def peak_like_intervals(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    chrom = rng.choice(len(HG38_PRIMARY_SIZES), n, p=HG38_PRIMARY_SIZES / HG38_PRIMARY_SIZES.sum())
    length = np.exp(rng.uniform(np.log(50), np.log(5000), n)).astype(np.int64)
    start = (rng.random(n) * (HG38_PRIMARY_SIZES[chrom] - length)).astype(np.int64)
    return chrom.astype(np.int32), start, start + length


def best_seconds(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tiling = Tiling()
    chrom, start, end = peak_like_intervals(args.n)
    seconds, tiles = best_seconds(lambda: tiling.compose(chrom, start, end, HG38_PRIMARY_SIZES), args.repeats)
    unique_seconds, (keys, _) = best_seconds(tiles.unique_tiles, args.repeats)

    print(f"{tiling!r}, {args.n:,} intervals (best of {args.repeats})")
    print(f"compose:      {args.n / seconds:,.0f} intervals/s ({seconds:.3f} s, {len(tiles):,} tiles)")
    print(f"unique_tiles: {args.n / unique_seconds:,.0f} intervals/s ({unique_seconds:.3f} s, {len(keys):,} distinct)")

    length = end - start
    n_tiles = np.bincount(tiles.interval, minlength=args.n)
    covered = np.bincount(tiles.interval, weights=tiles.weight, minlength=args.n)
    print(f"{'length bp':>12} {'intervals':>10} {'tiles/interval':>15} {'coverage':>9}")
    for lo, hi in zip(BUCKET_EDGES[:-1], BUCKET_EDGES[1:]):
        in_bucket = (length >= lo) & (length < hi)
        print(
            f"{f'[{lo}, {hi})':>12} {in_bucket.sum():>10,} {n_tiles[in_bucket].mean():>15.2f} "
            f"{(covered[in_bucket] / length[in_bucket]).mean():>9.3f}"
        )
    print(f"{'all':>12} {args.n:>10,} {n_tiles.mean():>15.2f} {(covered / length).mean():>9.3f}")


if __name__ == "__main__":
    main()
