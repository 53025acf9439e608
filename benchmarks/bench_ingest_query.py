"""Ingest throughput and query latency of gidx (issue: walking skeleton).

Measures, on a fresh index each time:
  * sketch embedding alone (intervals/s),
  * whole ingest (parse, validate, hash, embed, LanceDB, overlap segments, catalog) in-process,
  * query latency in-process (warm Index object), vector-only and with exact re-rank,
  * `gidx query` end-to-end as a new process (what a user waits for).

    python benchmarks/bench_ingest_query.py            # bundled yeast + hg19 seqpare_ucsc (22 files, 1.03M intervals)
    python benchmarks/bench_ingest_query.py --quick    # bundled yeast only
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
YEAST = ROOT / "gidx" / "data" / "sacCer3"


def collections(quick: bool):
    out = [("sacCer3 bundled (17 files)", dict(fasta=YEAST / "S_cerevisiae.fasta.gz"), YEAST / "bed", {"chrM": "chrmt"})]
    ucsc = ROOT / "tests" / "data" / "bed" / "hg19" / "seqpare_ucsc"
    if not ucsc.exists():
        ucsc = SHARED / "bed" / "hg19" / "seqpare_ucsc"
    if not quick and ucsc.exists():
        sizes = ROOT / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"
        if not sizes.exists():
            sizes = SHARED / "chromsizes" / "hg19.chrom.sizes"
        out.append(("hg19 seqpare_ucsc (22 files)", dict(chrom_sizes=sizes), ucsc, {}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    from gidx.bed import read_bed
    from gidx.index import Index, expand_paths
    from gidx.sketch import PositionSketch

    rows = []
    for label, genome_args, folder, aliases in collections(args.quick):
        tmp = Path(tempfile.mkdtemp(prefix="gidx-bench-"))
        try:
            idx = Index.create(tmp / "idx", aliases=aliases, **genome_args)
            g = idx.genome
            sets = [read_bed(p, g, aliases=aliases).intervals for p, _ in expand_paths([folder])]
            n_iv = sum(len(s) for s in sets)
            sk = PositionSketch()
            sk.embed(sets[:1], g.lengths)
            t = time.perf_counter()
            sk.embed(sets, g.lengths)
            sketch_rate = n_iv / (time.perf_counter() - t)
            import lancedb  # noqa: F401  (import cost is not ingest work)
            import gidx.seqpare  # noqa: F401

            rep = idx.ingest([folder])
            ingest_rate = rep.intervals / rep.seconds
            files = [p for p, _ in expand_paths([folder])]
            sizes = [len(s) for s in sets]
            queries = [files[int(np.argsort(sizes)[len(sizes) // 2])], files[int(np.argmax(sizes))]]
            lat = {}
            for q in queries:
                for mode, kw in (("vector", dict(rerank=None)), ("rerank200", dict(rerank=200)), ("exact", dict(exact=True))):
                    idx.query(q, k=20, save=False, **kw)  # warm
                    ts = []
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        idx.query(q, k=20, save=False, **kw)
                        ts.append((time.perf_counter() - t) * 1000)
                    lat[(q.name, mode)] = (statistics.median(ts), len(read_bed(q, g, aliases=aliases).intervals))
            cli = []
            for _ in range(5):
                t = time.perf_counter()
                subprocess.run([sys.executable, "-m", "gidx.cli.main", "query", str(queries[0]), "-i", str(tmp / "idx"),
                                "-k", "20", "-q", "-f", "tsv"], check=True, capture_output=True)
                cli.append(time.perf_counter() - t)
            rows.append((label, n_iv, sketch_rate, ingest_rate, lat, statistics.median(cli)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    print("| collection | intervals | sketch embed (intervals/s) | whole ingest (intervals/s) | `gidx query` process (s) |")
    print("|---|---:|---:|---:|---:|")
    for label, n_iv, sk_rate, in_rate, _, cli in rows:
        print(f"| {label} | {n_iv:,} | {sk_rate:,.0f} | {in_rate:,.0f} | {cli:.2f} |")
    print()
    print("| collection | query file | query intervals | vector only (ms) | + re-rank top 200 (ms) | exact, all records (ms) |")
    print("|---|---|---:|---:|---:|---:|")
    for label, _, _, _, lat, _ in rows:
        for qname in dict.fromkeys(q for q, _ in lat):
            n = lat[(qname, "vector")][1]
            print(f"| {label} | {qname} | {n:,} | {lat[(qname, 'vector')][0]:.1f} | {lat[(qname, 'rerank200')][0]:.1f} "
                  f"| {lat[(qname, 'exact')][0]:.1f} |")


if __name__ == "__main__":
    main()
