"""A large realistic corpus for the scale benchmark (issue 13): families of jittered
subsets of the real hg19 files bundled in tests/data (22 UCSC tracks + 5 GEO peak files).

    python benchmarks/scale_corpus.py OUT --records 100000 [--median 1000] [--min 100] [--max 20000]
                                          [--queries QDIR --n-queries 200]

Each family has a root: a random subset of one real file, its size drawn log-normally
around ``--median`` (clipped to [--min, --max]); its ``--family-size`` members are the
root perturbed at strengths spread over [0.05, 0.9] (``gidx.corpus.perturb``: drop, shift,
resize, add, swap in intervals of another file). Files are BED3 text, written as
``OUT/<family>/<member>.bed``; the same seed gives the same corpus. Generation runs in
``--jobs`` processes (default: all cores) and is resumable: a family folder that is
complete (its ``.done`` marker written last) is skipped. ``--queries`` writes one more
member of each of ``--n-queries`` families (spread over all of them), never ingested:
query files with graded similar records in the index.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = ROOT / "tests" / "data" / "bed" / "hg19"
CHROM_SIZES = ROOT / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"

_BASES = None


def _bases():
    global _BASES
    if _BASES is None:
        from gidx.bed import read_bed
        from gidx.genome import Genome

        genome = Genome.from_chrom_sizes(CHROM_SIZES)
        bases = []
        for p in sorted(SOURCES.rglob("*.bed.gz")):
            s = read_bed(p, genome, skip_unknown_chroms=True).intervals
            if len(s) >= 200:
                bases.append(s)
        _BASES = (genome, bases)
    return _BASES


def _root(fam: int, median: int, lo: int, hi: int, seed: int):
    """Family ``fam``'s root set and the generator its members are drawn from."""
    from gidx.intervals import IntervalSet

    genome, bases = _bases()
    rng = np.random.default_rng([seed, fam])
    src = bases[int(rng.integers(len(bases)))]
    n = int(np.clip(round(np.exp(rng.normal(np.log(median), 0.8))), lo, hi))
    if len(src) > n:
        keep = np.sort(rng.choice(len(src), n, replace=False))
        return IntervalSet(src.chroms, src.chrom[keep], src.start[keep], src.end[keep]), rng
    return src, rng


def _write(path: Path, s) -> None:
    import pyarrow as pa
    from pyarrow import csv

    genome, _ = _bases()
    tbl = pa.table({"chrom": pa.array(list(genome.names)).take(pa.array(s.chrom)), "start": pa.array(s.start),
                    "end": pa.array(s.end)})
    csv.write_csv(tbl, str(path), csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none"))


def _family(args) -> int:
    out, fam, family_size, median, lo, hi, seed = args
    from gidx.corpus import perturb

    d = Path(out) / f"f{fam:06d}"
    if (d / ".done").exists():
        return 0
    genome, bases = _bases()
    root, rng = _root(fam, median, lo, hi, seed)
    lengths = np.asarray(genome.lengths, dtype=np.int64)
    d.mkdir(parents=True, exist_ok=True)
    for j, t in enumerate(np.linspace(0.05, 0.9, family_size)):
        donor = bases[int(rng.integers(len(bases)))]
        _write(d / f"m{j:03d}.bed", perturb(root, float(t), rng, lengths, donor))
    (d / ".done").write_text("")
    return family_size


def _query(args) -> None:
    """One query file: a new member of family ``fam`` (never ingested), at a random strength."""
    out_q, fam, median, lo, hi, seed = args
    from gidx.corpus import perturb

    genome, bases = _bases()
    root, _ = _root(fam, median, lo, hi, seed)
    rng = np.random.default_rng([seed, fam, 1])
    t = float(rng.uniform(0.05, 0.9))
    _write(Path(out_q) / f"q{fam:06d}.bed",
           perturb(root, t, rng, np.asarray(genome.lengths, dtype=np.int64), bases[int(rng.integers(len(bases)))]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--family-size", type=int, default=20)
    ap.add_argument("--median", type=int, default=1000)
    ap.add_argument("--min", type=int, default=100)
    ap.add_argument("--max", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--queries", type=Path, help="also write query files here: new members of families")
    ap.add_argument("--n-queries", type=int, default=200)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    n_fam = -(-a.records // a.family_size)
    jobs = [(str(a.out), f, min(a.family_size, a.records - f * a.family_size), a.median, a.min, a.max, a.seed)
            for f in range(n_fam)]
    made = 0
    with ProcessPoolExecutor(a.jobs) as pool:
        for made_one in pool.map(_family, jobs, chunksize=16):
            made += made_one
        if a.queries:
            a.queries.mkdir(parents=True, exist_ok=True)
            fams = np.unique(np.linspace(0, n_fam - 1, min(a.n_queries, n_fam)).astype(int))
            list(pool.map(_query, [(str(a.queries), int(f), a.median, a.min, a.max, a.seed) for f in fams]))
    print(f"{a.records} records in {n_fam} families under {a.out} ({made} written now) "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
