"""Scale benchmark (issue 13): ingest, disk, query latency and truth --top against the
number of records N, on corpora of families of jittered real hg19 files
(benchmarks/scale_corpus.py).

    python benchmarks/bench_scale.py --work /work/scale --sizes 1000,10000,100000 \\
        [--small-sizes 1000000] [--truth-top 50 --truth-sizes 10000,100000] [--plot benchmarks/figures/scale.png]

For each N: generate the corpus (and 200 query files: new members of families, never
ingested), `gidx init` + `gidx ingest` in a child process (wall time, peak RSS from
wait4), the index's bytes on disk by part, then in-process queries with `--no-save`
semantics (Index.search): the vector stage alone (`rerank=None`), the default (re-rank
200) and, up to 10^4, `--exact`; p50/p95 over the query files after a warm-up pass over
them (the page cache then holds what they read, as a serving process's would).
Optionally `gidx truth --top K` (child process: wall, peak RSS). `--small-sizes` are
built from small records (median 100 intervals, 30-2,000), for 10^6. Results go to a
JSON file beside the work folder and print as a markdown table; `--plot` draws each cost
against N (log-log). Everything is kept under --work, so a rerun reuses what exists
(delete a folder to rebuild it).
"""

from __future__ import annotations

import os

# one BLAS thread, as the CLI sets it: OpenBLAS's default threads make a small
# matrix-vector product 100x slower on a busy 2-core box (RESULTS §7)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = ROOT / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"


def run_measured(cmd: list[str]) -> dict:
    """Run a command as a child and read its own peak RSS (not this process's)."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {os.waitstatus_to_exitcode(status)}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def gidx_bin() -> str:
    return str(Path(sys.executable).with_name("gidx"))


def corpus(work: Path, n: int, small: bool) -> tuple[Path, Path]:
    c, q = work / f"corpus-{n}", work / f"queries-{n}"
    args = [sys.executable, str(ROOT / "benchmarks" / "scale_corpus.py"), str(c), "--records", str(n),
            "--queries", str(q), "--n-queries", "200"]
    if small:
        args += ["--median", "100", "--min", "30", "--max", "2000"]
    subprocess.run(args, check=True)
    return c, q


def measure_queries(index: Path, queries: list[Path], exact: bool) -> dict:
    import gidx

    idx = gidx.Index.open(index)
    out = {}
    modes = [("vector", dict(rerank=None)), ("rerank200", dict())]
    if exact:
        modes.append(("exact", dict(exact=True)))
    snap = idx._snapshot()
    table = idx.vector_table(snap["encoder_id"], snap["encoder"])
    for label, kw in modes:
        for q in queries:  # warm-up pass: the page cache holds what these queries read, as a server's would
            idx.search(q, k=20, **kw)
        times = []
        for q in queries:
            t0 = time.perf_counter()
            idx.search(q, k=20, **kw)
            times.append((time.perf_counter() - t0) * 1000)
        out[label] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                      "p95_ms": round(float(np.percentile(times, 95)), 1)}
    # the vector stage alone (no BED parsing, no sketch): what the ANN / matrix costs
    from gidx.bed import read_bed

    vecs = [snap["encoder"].embed([read_bed(q, idx.genome).intervals], idx.genome.lengths)[0] for q in queries]
    for v in vecs:
        idx.vectors.search(table, v, 200, snap["ids"])
    times = []
    for v in vecs:
        t0 = time.perf_counter()
        idx.vectors.search(table, v, 200, snap["ids"])
        times.append((time.perf_counter() - t0) * 1000)
    out["vector_search_only"] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                                 "p95_ms": round(float(np.percentile(times, 95)), 1)}
    return out


def one_size(work: Path, n: int, small: bool, truth_top: int | None, skip_queries: bool) -> dict:
    t0 = time.perf_counter()
    c, q = corpus(work, n, small)
    gen_s = time.perf_counter() - t0
    index = work / f"index-{n}"
    res: dict = {"records": n, "small_records": small, "corpus_s": round(gen_s, 1)}
    stamp = index / ".bench-ingest.json"
    if not stamp.exists():
        shutil.rmtree(index, ignore_errors=True)
        subprocess.run([gidx_bin(), "init", str(index), "--chrom-sizes", str(SIZES)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ing = run_measured([gidx_bin(), "ingest", "-q", "-i", str(index), str(c)])
        ing["records_per_s"] = round(n / ing["wall_s"], 1)
        stamp.write_text(json.dumps(ing))
    res["ingest"] = json.loads(stamp.read_text())
    import duckdb

    with duckdb.connect(str(index / "catalog.duckdb"), read_only=True) as con:
        res["records_stored"], res["intervals"] = con.execute(
            "select count(*), sum(n_intervals) from records").fetchall()[0]
    parts = {p.name: du(p) for p in index.iterdir() if not p.name.startswith(".")}
    res["disk_mb"] = {k: round(v / 2**20, 1) for k, v in parts.items() if v > 2**16}
    res["disk_total_mb"] = round(sum(parts.values()) / 2**20, 1)
    vec = parts.get("vectors.lance", 0) + parts.get("vectors.mirror", 0)
    res["vector_bytes_per_record"] = round(vec / n)
    if not skip_queries:
        qs = sorted(q.glob("*.bed"))
        # in a fresh process: one that measured smaller indexes before runs 20-60 % slower
        # (their objects and threads stay around)
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            res["query"] = pool.apply(measure_queries, (index, qs, n <= 10_000))
    if truth_top:
        tr = run_measured([gidx_bin(), "truth", "-q", "-i", str(index), "--top", str(truth_top)])
        res["truth_top"] = {"k": truth_top, **tr}
    return res


def table(results: list[dict]) -> str:
    head = ("| records | intervals | ingest wall | records/s | ingest peak RSS | index on disk | vectors/record "
            "| vector search p50/p95 | query --no-rerank p50/p95 | default (re-rank 200) p50/p95 | --exact p50/p95 "
            "| truth --top wall / peak RSS |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        q = r.get("query", {})

        def pp(k):
            return f"{q[k]['p50_ms']} / {q[k]['p95_ms']} ms" if k in q else "–"

        tr = r.get("truth_top")
        rows.append(
            f"| {r['records']:,}{' (small)' if r['small_records'] else ''} | {r['intervals']:,} | "
            f"{r['ingest']['wall_s']} s | {r['ingest']['records_per_s']} | {r['ingest']['peak_rss_mb']:,.0f} MB | "
            f"{r['disk_total_mb']:,.0f} MB | {r['vector_bytes_per_record']:,} B | {pp('vector_search_only')} | "
            f"{pp('vector')} | {pp('rerank200')} | {pp('exact')} | "
            + (f"{tr['wall_s']} s / {tr['peak_rss_mb']:,.0f} MB |" if tr else "– |"))
    return "\n".join(rows)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["records"] for r in results]
    series = {
        "ingest wall (s)": [r["ingest"]["wall_s"] for r in results],
        "ingest peak RSS (MB)": [r["ingest"]["peak_rss_mb"] for r in results],
        "index on disk (MB)": [r["disk_total_mb"] for r in results],
        "query default p95 (ms)": [r.get("query", {}).get("rerank200", {}).get("p95_ms") for r in results],
        "vector search p95 (ms)": [r.get("query", {}).get("vector_search_only", {}).get("p95_ms") for r in results],
    }
    fig, ax = plt.subplots(figsize=(7, 5))
    for label, ys in series.items():
        pts = [(x, y) for x, y in zip(n, ys) if y]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    small = [f"{r['records']:.0e}".replace("+0", "") for r in results if r["small_records"]]
    ax.set_xlabel("records in the index" + (f" ({', '.join(small)}: ~100-interval records; others ~1,000)"
                                             if small else ""))
    ax.set_title("gidx cost against index size (2-core box)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--small-sizes", default="", help="sizes built from ~100-interval records (e.g. 1000000)")
    ap.add_argument("--truth-top", type=int, default=0)
    ap.add_argument("--truth-sizes", default="")
    ap.add_argument("--skip-queries", action="store_true")
    ap.add_argument("--plot", type=Path)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    out_json = a.work / "bench_scale.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else []
    truth_sizes = {int(x) for x in a.truth_sizes.split(",") if x}
    todo = [(int(x), False) for x in a.sizes.split(",") if x] + [(int(x), True) for x in a.small_sizes.split(",") if x]
    for n, small in todo:
        r = one_size(a.work, n, small, a.truth_top if n in truth_sizes else None, a.skip_queries)
        results = [x for x in results if (x["records"], x["small_records"]) != (n, small)] + [r]
        results.sort(key=lambda x: x["records"])
        out_json.write_text(json.dumps(results, indent=1))
        print(json.dumps(r), file=sys.stderr)
    print(table(results))
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
