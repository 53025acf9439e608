"""Queries and SQL from other processes while `gidx ingest` runs, and two ingests at once.

    python benchmarks/concurrency.py [--files 100]

Prints a tally: queries answered (each must rank its own file first with score ~1),
SQL statements answered (record counts must only grow), errors, the slowest answer, and
whether two concurrent ingests of one folder end with every file exactly once.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YEAST = ROOT / "gidx" / "data" / "sacCer3"


def family(folder: Path, n: int, genome) -> Path:
    from gidx.bed import read_bed

    src = read_bed(YEAST / "bed" / "winston_annotations" / "Scer_polIItranscripts-adjustedTSS.bed.gz", genome).intervals
    folder.mkdir()
    for i in range(n):
        lines = [f"{genome.names[c]}\t{max(0, s - i - 1)}\t{e}" for c, s, e in zip(src.chrom, src.start, src.end)]
        (folder / f"copy{i:03d}.bed").write_text("\n".join(lines) + "\n")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100)
    args = ap.parse_args()
    from gidx.index import Index

    tmp = Path(tempfile.mkdtemp(prefix="gidx-conc-"))
    try:
        path = tmp / "idx"
        idx = Index.create(path, fasta=YEAST / "S_cerevisiae.fasta.gz", genome_name="sacCer3", aliases={"chrM": "chrmt"})
        idx.ingest([YEAST / "bed"])
        fam = family(tmp / "family", args.files, idx.genome)
        queries = sorted((YEAST / "bed").rglob("*.bed*"))
        before = idx.sql("select count(*) n from records")["n"][0].as_py()
        proc = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", "ingest", str(fam), "-i", str(path), "-q"],
                                stderr=subprocess.PIPE, text=True)
        answered = sql_answered = wrong = errors = 0
        slowest = 0.0
        counts = []
        while proc.poll() is None:
            for kind in ("query", "sql"):
                t = time.perf_counter()
                try:
                    if kind == "query":
                        q = queries[answered % len(queries)]
                        res = Index.open(path).query(q, k=3, rerank=None)
                        wrong += abs(res["score"][0].as_py() - 1.0) > 1e-5
                        answered += 1
                    else:
                        counts.append(Index.open(path).sql("select count(*) n from records")["n"][0].as_py())
                        sql_answered += 1
                except Exception as e:  # noqa: BLE001 - the tally is the result
                    errors += 1
                    print("error:", e, file=sys.stderr)
                slowest = max(slowest, time.perf_counter() - t)
        ingest_ok = proc.returncode == 0
        after = Index.open(path).sql("select count(*) n from records")["n"][0].as_py()
        print(f"queries answered during the ingest: {answered} (wrong: {wrong}); SQL answered: {sql_answered}; "
              f"errors: {errors}; slowest answer {slowest * 1000:.0f} ms; record counts monotonic: "
              f"{counts == sorted(counts)}; ingest exit 0: {ingest_ok}; records {before} -> {after} "
              f"(expected {before + args.files})")
        # two ingests of the same folder at once
        path2 = tmp / "idx2"
        Index.create(path2, fasta=YEAST / "S_cerevisiae.fasta.gz", genome_name="sacCer3", aliases={"chrM": "chrmt"})
        cmd = [sys.executable, "-m", "gidx.cli.main", "ingest", str(fam), "-i", str(path2), "-q"]
        a, b = subprocess.Popen(cmd), subprocess.Popen(cmd)
        codes = (a.wait(), b.wait())
        rows = Index.open(path2).sql("select count(*) n, count(distinct content_hash) h from records").to_pylist()[0]
        print(f"two concurrent ingests of {args.files} files: exit codes {codes}; records {rows['n']} "
              f"(distinct contents {rows['h']})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
