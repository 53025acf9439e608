"""Whole-process `gidx query` timings, side by side with the reference seqpare, and
batch-query throughput.

(a) one-shot: an index of the 22 UCSC hg19 tracks (tests/data/bed/hg19/seqpare_ucsc);
    every track is a query; per repeat the commands run alternately, file by file:
    `gidx query FILE -k 20` (default: vector top 200 re-ranked, query stored),
    `gidx query FILE -k 20 --exact`, `gidx query FILE -k 20 --no-rerank`, and the
    reference `seqpare 'DIR/*' FILE -m 1 -o OUT` (github deepstanding/seqpare, built
    outside this repository: pass --seqpare BIN). Also `python -c pass` and the
    import floor of the CLI. Reports the median over files of each file's median.
(b) batch: a `gidx corpus` of 1,050 records from the same tracks (+ chipseeker_geo);
    1,000 ingested, the other 50 are queries. One `gidx query DIR -k 20` process
    (default re-rank, stored) against 50 one-shot runs: queries/s, and the ranked
    records and exact scores compared query by query.

    .venv/bin/python benchmarks/bench_cli.py --seqpare /path/to/seqpare/bin/seqpare [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UCSC = REPO / "tests" / "data" / "bed" / "hg19" / "seqpare_ucsc"
GEO = REPO / "tests" / "data" / "bed" / "hg19" / "chipseeker_geo"
SIZES = REPO / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"
BIN = Path(sys.executable).parent
GIDX = str(BIN / "gidx")


def run(cmd: list[str], **kw) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def med(xs) -> float:
    return statistics.median(xs)


def one_shot(work: Path, seqpare: str | None, repeats: int) -> None:
    idx = work / "ucsc_idx"
    if not idx.exists():
        subprocess.run([GIDX, "init", str(idx), "--chrom-sizes", str(SIZES), "-q"], check=True)
        subprocess.run([GIDX, "ingest", str(UCSC), "-i", str(idx), "-q"], check=True)
    files = sorted(UCSC.glob("*.bed.gz"))
    # warm-up: OS cache, the vector mirror, compiled bytecode
    for f in files[:2]:
        run([GIDX, "query", str(f), "-i", str(idx), "--no-save"])
    modes = {
        "gidx query -k 20 (default: re-rank 200, stored)": [],
        "gidx query -k 20 --exact (stored)": [],
        "gidx query -k 20 --no-rerank (stored)": [],
    }
    cmds = {
        "gidx query -k 20 (default: re-rank 200, stored)": lambda f: [GIDX, "query", str(f), "-i", str(idx), "-k", "20"],
        "gidx query -k 20 --exact (stored)": lambda f: [GIDX, "query", str(f), "-i", str(idx), "-k", "20", "--exact"],
        "gidx query -k 20 --no-rerank (stored)": lambda f: [GIDX, "query", str(f), "-i", str(idx), "-k", "20",
                                                            "--no-rerank"],
    }
    if seqpare:
        name = "reference seqpare 'DIR/*' FILE -m 1"
        modes[name] = []
        out = work / "ref_out"
        cmds[name] = lambda f: [seqpare, f"{UCSC}/*", str(f), "-m", "1", "-o", str(out)]
    per_file = {m: {f.name: [] for f in files} for m in modes}
    floor = {"python -c pass": [], "import floor of the CLI (typer, numpy, pyarrow, duckdb, gidx.index)": []}
    for _ in range(repeats):
        for f in files:
            for m, c in cmds.items():
                per_file[m][f.name].append(run(c(f)))
        floor["python -c pass"].append(run([sys.executable, "-c", "pass"]))
        floor["import floor of the CLI (typer, numpy, pyarrow, duckdb, gidx.index)"].append(run(
            [sys.executable, "-c", "import gidx.cli.main, numpy, pyarrow.csv, duckdb, gidx.index"]))
    print(f"## one-shot, {len(files)} query files x {repeats} repeats, alternated "
          f"(median over files of each file's median; slowest file's median)\n")
    print("| command | median s | slowest file s |\n|---|---|---|")
    for m in modes:
        meds = [med(v) for v in per_file[m].values()]
        print(f"| {m} | {med(meds):.3f} | {max(meds):.3f} |")
    for m, v in floor.items():
        print(f"| {m} | {med(v):.3f} | |")
    print()


STAGES = r"""
import sys, time
T0 = time.perf_counter()
marks = []
def mark(n): marks.append((n, time.perf_counter()))
import gidx.cli.main as m
mark("import gidx.cli.main (typer)")
import gidx.index as gi
mark("import gidx.index (numpy, gidx)")
def wrap(name, before, after):
    f = getattr(gi.Index, name)
    def w(*a, **k):
        if before: mark(before)
        r = f(*a, **k)
        mark(after)
        return r
    setattr(gi.Index, name, classmethod(lambda cls, *a, **k: w(*a, **k)) if name == "open" else w)
wrap("open", "typer argument parsing", "Index.open (duckdb, one connection)")
wrap("search", None, "Index.search (read BED, sketch, vectors, re-rank)")
wrap("save_queries", "print the answer", "store the query (one write transaction)")
sys.argv = ["gidx", "query", sys.argv[1], "-i", sys.argv[2], "-k", "20"]
try:
    m.main()
except SystemExit:
    pass
prev = T0
for n, t in marks:
    print(f"STAGE\t{n}\t{1000 * (t - prev):.1f}", file=sys.stderr)
    prev = t
"""


def stages(work: Path, repeats: int, query: str) -> None:
    """Where a one-shot `gidx query` spends its time (timers around Index.open/search/save)."""
    idx = work / "ucsc_idx"
    per: dict[str, list[float]] = {}
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", STAGES, str(UCSC / query), str(idx)], capture_output=True,
                             text=True, check=True)
        walls.append(time.perf_counter() - t)
        for line in res.stderr.splitlines():
            if line.startswith("STAGE\t"):
                _, name, ms = line.split("\t")
                per.setdefault(name, []).append(float(ms))
    print(f"## one-shot stages, `gidx query {query} -k 20` (median of {repeats})\n")
    print("| stage | ms |\n|---|---|")
    for name, v in per.items():
        print(f"| {name} | {med(v):.0f} |")
    print(f"| whole process (wall) | {1000 * med(walls):.0f} |\n")


def tsv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def batch(work: Path) -> None:
    corpus = work / "corpus"
    idx = work / "corpus_idx"
    queries = work / "queries"
    if not idx.exists():
        subprocess.run([GIDX, "corpus", str(corpus), "--from", str(UCSC), "--from", str(GEO), "--chrom-sizes",
                        str(SIZES), "--records", "1050", "--max-intervals", "2000", "-q"], check=True)
        files = sorted(p for p in corpus.rglob("*.bed") if p.is_file())
        queries.mkdir()
        for f in files[::21][:50]:  # 50 queries spread over the families
            shutil.move(str(f), queries / f"{f.parent.name}_{f.name}")
        subprocess.run([GIDX, "init", str(idx), "--chrom-sizes", str(SIZES), "-q"], check=True)
        subprocess.run([GIDX, "ingest", str(corpus), "-i", str(idx), "-q"], check=True)
    qfiles = sorted(queries.glob("*.bed"))
    n_rec = subprocess.run([GIDX, "sql", "select count(*) n from records", "-i", str(idx), "-f", "tsv"],
                           capture_output=True, text=True, check=True).stdout.split()[1]
    t = time.perf_counter()
    res = subprocess.run([GIDX, "query", str(queries), "-i", str(idx), "-k", "20", "-f", "tsv", "-q"],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    got = {}
    for r in tsv_rows(res.stdout):
        got.setdefault(Path(r["query"]).name, []).append((r["record"], r["exact_score"]))
    t = time.perf_counter()
    same = 0
    for f in qfiles:
        one = subprocess.run([GIDX, "query", str(f), "-i", str(idx), "-k", "20", "-f", "tsv", "-q"],
                             capture_output=True, text=True, check=True)
        same += [(r["record"], r["exact_score"]) for r in tsv_rows(one.stdout)] == got.get(f.name)
    singles = time.perf_counter() - t
    print(f"## batch: {len(qfiles)} queries against {n_rec} records, -k 20, default re-rank 200, stored\n")
    print("| run | wall s | queries/s |\n|---|---|---|")
    print(f"| one `gidx query {queries.name}/` process | {wall:.2f} | {len(qfiles) / wall:.1f} |")
    print(f"| {len(qfiles)} one-shot `gidx query FILE` processes | {singles:.2f} | {len(qfiles) / singles:.1f} |")
    print(f"\nranked records and exact scores identical for {same}/{len(qfiles)} queries\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqpare", help="reference seqpare binary (built outside this repository)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", type=Path, help="scratch folder (kept; default: a temporary one)")
    ap.add_argument("--only", choices=["one-shot", "stages", "batch"])
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gidx-bench-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# gidx CLI timings ({time.strftime('%Y-%m-%d')}, work folder {work})\n")
    if args.only in (None, "one-shot"):
        one_shot(work, args.seqpare, args.repeats)
        stages(work, args.repeats, "affyU95.bed.gz")
    if args.only == "stages":
        stages(work, args.repeats, "affyU95.bed.gz")
    if args.only in (None, "batch"):
        batch(work)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
