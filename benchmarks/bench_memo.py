"""Tile memo benchmark (kmer encoder): fidelity, recall, throughput, size.

(0) kmer encoder speed: sequences/s and Mbp/s at several lengths.
(a) fidelity: cosine between the composed (tile path) and the direct interval
    embedding, by interval length bucket (mean, p5, p50), on the yeast BED files (real
    sequence) and on the hg19 BED files' chr22 intervals (synthetic hg19 sequence).
(b) recall@10/20 against exact seqpare of set embeddings (normalised mean of the
    interval embeddings), tile path vs direct path, beside the position sketch. Corpus:
    records and held-out queries derived from the yeast BED files (random subsets of a
    source file's intervals, each jittered in position and length), so that every query
    has true neighbours of graded similarity.
(c) ingest-like throughput through ``interval_embeddings(mode="tiles")``, file by file:
    cold (empty memo, tiles computed on the way), warm from disk (a new memo object on
    the filled store), warm in process (the same object again: chunk cache hot).
(d) memo size: bytes on disk per Gbp of genome after a whole-genome fill (float32 and
    float16), and fidelity per memo byte for tiling variants (base 64/128, offsets 2/4/8).
(e) ``--read-path`` alone: the memo's read path on an ingest-sized collection (the yeast
    files plus derived sets, ``--intervals``, default 630k): (e1) fresh-process
    ``interval_embeddings`` file by file on a filled memo, raw and zstd layouts, cold
    (empty chunk table) and warm, with where the time goes; (e2) whole ``gidx ingest``
    processes into an index whose active M model uses tile-memo sequence features (kmer),
    cold memo vs warm memo; (e3) with ``--hyena CHECKPOINT``, the same for HyenaDNA.
    ``--baseline REV`` runs gidx/memo.py + gidx/embed.py of a git revision side by side.

    .venv/bin/python benchmarks/bench_memo.py [--quick] [--workers 2] [--json out.json]
        [--encoder SPEC]
    .venv/bin/python benchmarks/bench_memo.py --fidelity-only --sample 2000 \
        --encoder hyenadna:tests/data/hyenadna/tiny-random --chunk-bp 1024 --workers 0
    .venv/bin/python benchmarks/bench_memo.py --read-path --repeats 3 --ingest-repeats 2 \
        --baseline f4e6f6f --hyena tests/data/hyenadna/tiny-random --workers 2

``--encoder`` (default kmer, k=12, dim=256) is any ``load_encoder`` spec. ``--fidelity-only``
runs part (a) alone on a random sample of the yeast intervals (``--sample``, seed
``--seed``), filling only the memo chunks those intervals touch; a small ``--chunk-bp``
keeps that close to the tiles actually used (a slow encoder such as HyenaDNA on CPU
cannot fill the whole genome in a benchmark's time).

Targets: warm >= 200k intervals/s; mean fidelity cosine >= 0.95; tile-path recall
within 0.02 of direct. (e): cold-process reads >= 500k intervals/s; warm re-ingest >= 1.5x
faster than cold (kmer), >= 20x (HyenaDNA).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gidx.bed import read_bed
from gidx.embed import interval_embeddings
from gidx.encoders import load_encoder
from gidx.errors import InputError
from gidx.genome import Genome
from gidx.intervals import IntervalSet
from gidx.memo import TileMemo, _du
from gidx.tiling import Tiling

ROOT = Path(__file__).resolve().parents[1]
YEAST_FASTA = ROOT / "gidx" / "data" / "sacCer3" / "S_cerevisiae.fasta.gz"
YEAST_BED = ROOT / "gidx" / "data" / "sacCer3" / "bed"
HG19_SIZES = [Path("/work/shared/data/chromsizes/hg19.chrom.sizes"),
              ROOT / "tests" / "data" / "chromsizes" / "hg19.chrom.sizes"]
HG19_BED = [Path("/work/shared/data/bed/hg19"), ROOT / "tests" / "data" / "bed" / "hg19"]
BUCKETS = [0, 100, 200, 500, 1000, 2000, 5000, 20000, np.inf]
ENCODER = "kmer"  # k=12, dim=256


# ---- data ---------------------------------------------------------------------------


def read_folder(folders: list[Path], genome: Genome, aliases: dict | None = None) -> dict[str, IntervalSet]:
    sets, seen = {}, set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = str(path.relative_to(folder))
            if rel in seen:
                continue
            seen.add(rel)
            try:
                sets[rel] = read_bed(path, genome, aliases=aliases, skip_unknown_chroms=True).intervals
            except InputError:
                continue  # e.g. only Ensembl-style names: nothing on this genome
    return sets


def subset(s: IntervalSet, keep: np.ndarray) -> IntervalSet:
    return IntervalSet(s.chroms, s.chrom[keep], s.start[keep], s.end[keep])


def concat(sets) -> IntervalSet:
    sets = list(sets)
    columns = (np.concatenate([getattr(s, f) for s in sets]) for f in ("chrom", "start", "end"))
    return IntervalSet(sets[0].chroms, *columns)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    out = np.full(len(a), np.nan)
    out[ok] = (a[ok] * b[ok]).sum(1) / na[ok] / nb[ok]
    return out


def best_of(fn, repeats: int):
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


# ---- (0) encoder speed ------------------------------------------------------------------


def encoder_speed(quick: bool) -> list[dict]:
    enc = load_encoder(ENCODER)
    rng = np.random.default_rng(0)
    rows = []
    for length in (128, 1024, 10_000):
        n = max(1, (1_000_000 if quick else 4_000_000) // length)
        seqs = ["".join(rng.choice(list("ACGT"), length)) for _ in range(n)]
        seconds, _ = best_of(lambda: enc.embed(seqs), 3)
        rows.append({"length": length, "seqs_per_s": n / seconds, "mbp_per_s": n * length / seconds / 1e6})
    return rows


# ---- (a) fidelity -----------------------------------------------------------------------


def fidelity_table(iv: IntervalSet, tiles: np.ndarray, direct: np.ndarray) -> dict:
    """Cosine per interval; intervals where either side is the zero vector are left out
    and counted (tile path: no tile; direct kmer: no valid k-mer, i.e. shorter than k)."""
    cos = cosine(tiles, direct)
    length = iv.end - iv.start
    table = []
    for lo, hi in zip(BUCKETS[:-1], BUCKETS[1:]):
        m = (length >= lo) & (length < hi) & ~np.isnan(cos)
        if m.any():
            table.append({"bucket": f"{lo}-{hi if np.isfinite(hi) else 'inf'}", "n": int(m.sum()),
                          "mean": float(cos[m].mean()), "p5": float(np.percentile(cos[m], 5)),
                          "p50": float(np.median(cos[m]))})
    valid = ~np.isnan(cos)
    return {"n": int(valid.sum()), "no_tile": int((~tiles.any(axis=1)).sum()),
            "direct_zero": int((~direct.any(axis=1)).sum()), "mean": float(cos[valid].mean()),
            "p5": float(np.percentile(cos[valid], 5)), "p50": float(np.median(cos[valid])), "buckets": table}


# ---- (b) recall -------------------------------------------------------------------------


def derived_sets(sources: list[IntervalSet], genome: Genome, n: int, cap: int, rng) -> list[IntervalSet]:
    """Random subsets (30-100% of up to ``cap`` intervals) of random source files, every
    interval shifted by up to +-30% of its length (at least 50 bp) and rescaled by a
    log-normal factor (sigma 0.2)."""
    out = []
    for _ in range(n):
        src = sources[rng.integers(len(sources))]
        pool = rng.permutation(len(src))[:cap]
        keep = np.sort(pool[: max(1, int(len(pool) * rng.uniform(0.3, 1.0)))])
        s = subset(src, keep)
        length = np.maximum(s.end - s.start, 1)
        shift = (rng.uniform(-0.3, 0.3, len(s)) * np.maximum(length, 50)).astype(np.int64)
        new_len = np.maximum(1, (length * np.exp(rng.normal(0, 0.2, len(s))))).astype(np.int64)
        chrom_len = genome.lengths[s.chrom]
        start = np.clip(s.start + shift, 0, chrom_len - 1)
        end = np.clip(start + new_len, start + 1, chrom_len)
        out.append(IntervalSet(s.chroms, s.chrom, start, end))
    return out


def set_embeddings(sets: list[IntervalSet], embed) -> np.ndarray:
    rows = []
    for s in sets:
        v = embed(s).astype(np.float64).mean(axis=0)
        rows.append(v / max(np.linalg.norm(v), 1e-12))
    return np.array(rows)


def recall_at(truth: list[np.ndarray], scores: np.ndarray, k: int) -> float:
    """Mean over queries of |top-k by score ∩ exact top-k| / |exact top-k| (exact top-k:
    records with S > 0, best first)."""
    values = []
    for q, true in enumerate(truth):
        if not len(true):
            continue
        want = set(true[:k].tolist())
        got = set(np.argsort(-scores[q], kind="stable")[:k].tolist())
        values.append(len(want & got) / len(want))
    return float(np.mean(values))


def recall_section(yeast: Genome, sources: list[IntervalSet], memo: TileMemo, tiling: Tiling, quick: bool,
                   workers: int) -> dict:
    from gidx.seqpare import OverlapIndex
    from gidx.sketch import PositionSketch

    rng = np.random.default_rng(1)
    n_records, n_queries, cap = (120, 20, 600) if quick else (400, 50, 1500)
    records = derived_sets(sources, yeast, n_records, cap, rng)
    queries = derived_sets(sources, yeast, n_queries, cap, rng)
    index = OverlapIndex.from_sets(dict(enumerate(records)))
    truth = []
    for q in queries:
        res = index.search(q)
        order = np.lexsort((res.record_id, -res.s))
        truth.append(res.record_id[order][res.s[order] > 0])
    out = {"records": n_records, "queries": n_queries,
           "intervals": int(sum(map(len, records)) + sum(map(len, queries)))}
    embedders = {
        "tiles": lambda s: interval_embeddings(s, yeast, tiling, memo),
        "direct": lambda s: interval_embeddings(s, yeast, tiling, memo, mode="direct", workers=workers),
    }
    for name, embed in embedders.items():
        t0 = time.perf_counter()
        rec, qry = set_embeddings(records, embed), set_embeddings(queries, embed)
        scores = qry @ rec.T
        out[name] = {k: recall_at(truth, scores, k) for k in (10, 20)} | {"seconds": time.perf_counter() - t0}
    sketch = PositionSketch()
    scores = sketch.embed(queries).astype(np.float64) @ sketch.embed(records).astype(np.float64).T
    out["sketch"] = {k: recall_at(truth, scores, k) for k in (10, 20)}
    return out


# ---- (c) throughput -----------------------------------------------------------------------


def throughput(files: dict[str, IntervalSet], genome: Genome, tiling: Tiling, root: Path, workers: int,
               chunk_bp: int | None = None) -> dict:
    enc = load_encoder(ENCODER)
    opts = {"workers": workers} | ({"chunk_bp": chunk_bp} if chunk_bp else {})
    n = sum(map(len, files.values()))

    def ingest(memo):
        for s in files.values():
            interval_embeddings(s, genome, tiling, memo)

    memo = TileMemo(root, genome, tiling, enc, **opts)
    t0 = time.perf_counter()
    ingest(memo)
    cold = time.perf_counter() - t0
    computed = memo.stats.tiles_computed
    disk_memo = TileMemo(root, genome, tiling, enc, **opts)
    t0 = time.perf_counter()
    ingest(disk_memo)
    warm_disk = time.perf_counter() - t0
    warm_cache, _ = best_of(lambda: ingest(disk_memo), 3)
    together = concat(files.values())
    one_call, _ = best_of(lambda: interval_embeddings(together, genome, tiling, disk_memo), 3)
    assert disk_memo.stats.tiles_computed == 0
    return {"files": len(files), "intervals": n, "tiles_computed_cold": computed,
            "cold_per_s": n / cold, "warm_disk_per_s": n / warm_disk, "warm_cache_per_s": n / warm_cache,
            "warm_cache_one_call_per_s": n / one_call, "memo": memo}


# ---- (d) size and tiling variants ------------------------------------------------------------


def memo_size(genome: Genome, tiling: Tiling, root: Path, dtype: str, workers: int, chroms=None) -> dict:
    memo = TileMemo(root, genome, tiling, load_encoder(ENCODER), dtype, workers=workers)
    t0 = time.perf_counter()
    report = memo.fill(chroms=chroms, all=chroms is None)
    info = memo.info()
    bp = genome.total_bp if chroms is None else sum(genome.lengths_list[genome.code_of[c]] for c in chroms)
    return {"dtype": dtype, "tiling": tiling.params(), "tiles": info["filled"], "bytes": info["bytes_on_disk"],
            "gb_per_gbp": info["bytes_on_disk"] / bp,
            "raw_gb_per_gbp": info["filled"] * memo.dim * np.dtype(dtype).itemsize / bp,
            "fill_seconds": time.perf_counter() - t0,
            "fill_tiles_per_s": report.tiles_computed / max(report.seconds, 1e-9),
            "memo": memo}


# ---- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller corpus, fewer variants (about 2-4 min)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for fills and direct embeddings")
    parser.add_argument("--json", type=Path, help="write all numbers here")
    parser.add_argument("--tmp", type=Path, help="scratch folder (default: a new temporary folder, removed after)")
    parser.add_argument("--encoder", default=ENCODER, help="encoder spec, e.g. kmer or hyenadna:FOLDER")
    parser.add_argument("--fidelity-only", action="store_true", help="part (a) only, on --sample yeast intervals")
    parser.add_argument("--sample", type=int, default=2000, help="--fidelity-only: intervals sampled (0 = all)")
    parser.add_argument("--seed", type=int, default=0, help="--fidelity-only: sampling seed")
    parser.add_argument("--chunk-bp", type=int, default=None, help="--fidelity-only: memo chunk_bp")
    parser.add_argument("--read-path", action="store_true",
                        help="part (e) alone: cold-process memo reads, whole-process re-ingest, HyenaDNA")
    parser.add_argument("--intervals", type=int, default=630_000, help="--read-path: intervals in the collection")
    parser.add_argument("--repeats", type=int, default=3, help="--read-path: fresh processes per configuration")
    parser.add_argument("--ingest-repeats", type=int, default=2, help="--read-path: gidx ingest runs per state")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="--read-path: also run gidx/memo.py + gidx/embed.py of this git revision (e.g. HEAD)")
    parser.add_argument("--skip-ingest", action="store_true", help="--read-path: no whole-process gidx ingest runs")
    parser.add_argument("--hyena", default=None, metavar="CHECKPOINT",
                        help="--read-path: also HyenaDNA, e.g. tests/data/hyenadna/tiny-random")
    parser.add_argument("--hyena-chroms", default="chrI,chrII,chrIII",
                        help="--read-path: chromosomes of the HyenaDNA collection (the model trains on the first)")
    parser.add_argument("--hyena-files", type=int, default=100, help="--read-path: sets of the HyenaDNA part")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    set_encoder(args.encoder)
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench_memo_", dir=args.tmp))
    results: dict = {"quick": args.quick, "cpus": os.cpu_count()}
    results["encoder"] = ENCODER
    try:
        (fidelity_only if args.fidelity_only else read_path if args.read_path else run)(args, scratch, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))


def set_encoder(spec: str) -> None:
    global ENCODER
    ENCODER = spec


def yeast_genome(scratch: Path) -> Genome:
    # a plain-text copy: faster random reads, and pyfaidx 0.9.2.2 fails on bgzip reads that start
    # exactly at a BGZF block boundary (e.g. chrXVI:592187 of this file; see the report)
    plain = scratch / "sacCer3.fa"
    with gzip.open(YEAST_FASTA, "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return Genome.from_fasta(plain, "sacCer3", cache_dir=scratch / "fai")


def fidelity_only(args, scratch: Path, results: dict) -> None:
    """Part (a) alone, on a sample of the yeast intervals (see the module docstring)."""
    tiling, workers = Tiling(), args.workers
    yeast = yeast_genome(scratch)
    yeast_all = concat(read_folder([YEAST_BED], yeast, aliases={"chrM": "chrmt"}).values())
    n_all = len(yeast_all)
    if args.sample and args.sample < n_all:
        keep = np.sort(np.random.default_rng(args.seed).choice(n_all, args.sample, replace=False))
        yeast_all = subset(yeast_all, keep)
    enc = load_encoder(ENCODER)
    opts = {"chunk_bp": args.chunk_bp} if args.chunk_bp else {}
    memo = TileMemo(scratch / "fid", yeast, tiling, enc, workers=workers, **opts)
    print(f"yeast: {len(yeast_all):,} of {n_all:,} intervals (seed {args.seed}), "
          f"{int((yeast_all.end - yeast_all.start).sum()):,} bp; {tiling!r}, encoder {ENCODER}, "
          f"memo chunk_bp {memo.chunk_bp}, workers {workers}")
    print("\n(a) fidelity: cosine(tile path, direct path) per interval")
    t0 = time.perf_counter()
    direct = interval_embeddings(yeast_all, yeast, tiling, memo, mode="direct", workers=workers)
    t1 = time.perf_counter()
    tiles = interval_embeddings(yeast_all, yeast, tiling, memo)
    t2 = time.perf_counter()
    fid = fidelity_table(yeast_all, tiles, direct)
    results["fidelity_yeast"] = fid
    print_fidelity("yeast (real sequence)", fid)
    sqrt_fid = fidelity_table(yeast_all, interval_embeddings(yeast_all, yeast, tiling, memo, weighting="sqrt"),
                              direct)
    results["fidelity_yeast_sqrt_weights"] = sqrt_fid
    print(f"  with weighting='sqrt': mean {sqrt_fid['mean']:.3f}, p5 {sqrt_fid['p5']:.3f}, p50 {sqrt_fid['p50']:.3f}")
    for b in sqrt_fid["buckets"]:
        print(f"    {b['bucket']:>12} bp  n={b['n']:>6}  mean {b['mean']:.3f}  p5 {b['p5']:.3f}  p50 {b['p50']:.3f}")
    st = memo.stats
    results["seconds"] = {"direct": t1 - t0, "tiles_cold": t2 - t1}
    print(f"  direct path {t1 - t0:.1f} s; tile path (cold: {st.tiles_computed:,} tiles in "
          f"{st.chunks_computed:,} chunks computed) {t2 - t1:.1f} s; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run(args, scratch: Path, results: dict) -> None:
    quick, workers = args.quick, args.workers
    tiling = Tiling()
    yeast = yeast_genome(scratch)
    yeast_files = read_folder([YEAST_BED], yeast, aliases={"chrM": "chrmt"})
    yeast_all = concat(yeast_files.values())
    print(f"yeast: {len(yeast_files)} BED files, {len(yeast_all):,} intervals; {tiling!r}, encoder {ENCODER}")

    print("\n(0) kmer encoder speed (k=12, dim=256, one process)")
    results["encoder_speed"] = encoder_speed(quick)
    for r in results["encoder_speed"]:
        print(f"  {r['length']:>6} bp: {r['seqs_per_s']:>10,.0f} seqs/s  {r['mbp_per_s']:6.1f} Mbp/s")

    print("\n(c) ingest-like throughput, yeast (17 files one by one, interval_embeddings tiles mode)")
    tp = throughput(yeast_files, yeast, tiling, scratch / "yeast", workers)
    memo = tp.pop("memo")
    results["throughput_yeast"] = tp
    print(f"  cold (empty memo, {tp['tiles_computed_cold']:,} tiles computed): {tp['cold_per_s']:>10,.0f} intervals/s")
    print(f"  warm, from disk (new memo object):        {tp['warm_disk_per_s']:>10,.0f} intervals/s")
    print(f"  warm, in process (chunk cache):           {tp['warm_cache_per_s']:>10,.0f} intervals/s"
          f"   (one call over all: {tp['warm_cache_one_call_per_s']:,.0f}/s)")

    print("\n(d) memo size after a whole-genome fill (yeast, 12.2 Mbp)")
    sizes = [memo_size(yeast, tiling, scratch / "yeast", "float32", workers)]
    if not quick:
        sizes.append(memo_size(yeast, tiling, scratch / "yeast16", "float16", workers))
    for s in sizes:
        s.pop("memo")
        print(f"  {s['dtype']}: {s['tiles']:,} tiles, {s['bytes'] / 2**20:,.0f} MiB on disk = "
              f"{s['gb_per_gbp']:.1f} GB per Gbp "
              f"(raw {s['raw_gb_per_gbp']:.1f}); hg38 (3.1 Gbp) ~ {s['gb_per_gbp'] * 3.1:.0f} GB")
    results["memo_size"] = sizes

    print("\n(a) fidelity: cosine(tile path, direct path) per interval")
    t0 = time.perf_counter()
    yeast_direct = interval_embeddings(yeast_all, yeast, tiling, memo, mode="direct", workers=workers)
    direct_seconds = time.perf_counter() - t0
    yeast_tiles = interval_embeddings(yeast_all, yeast, tiling, memo)
    fid = fidelity_table(yeast_all, yeast_tiles, yeast_direct)
    results["fidelity_yeast"] = fid
    print_fidelity("yeast (real sequence)", fid)
    sqrt_fid = fidelity_table(yeast_all, interval_embeddings(yeast_all, yeast, tiling, memo, weighting="sqrt"),
                              yeast_direct)
    results["fidelity_yeast_sqrt_weights"] = sqrt_fid
    print(f"  with weighting='sqrt': mean {sqrt_fid['mean']:.3f}, p5 {sqrt_fid['p5']:.3f}, p50 {sqrt_fid['p50']:.3f}")
    print(f"  (direct path: {len(yeast_all) / direct_seconds:,.0f} intervals/s with {workers} workers)")

    hg19 = hg19_genome()
    if hg19 is not None:
        files = read_folder(HG19_BED, hg19)
        chr22 = hg19.code_of["chr22"]
        region = (16_000_000, 26_000_000) if quick else (0, hg19.lengths_list[chr22])
        picked = {}
        for name, s in files.items():
            keep = (s.chrom == chr22) & (s.start >= region[0]) & (s.end <= region[1])
            if quick:
                keep &= (s.end - s.start) <= 1_000_000
            if keep.any():
                picked[name] = subset(s, np.flatnonzero(keep))
        hg_all = concat(picked.values())
        print(f"\nhg19 (synthetic sequence): {len(picked)} files, {len(hg_all):,} intervals on "
              f"chr22:{region[0]:,}-{region[1]:,}")
        tp = throughput(picked, hg19, tiling, scratch / "hg19", workers)
        hg_memo = tp.pop("memo")
        results["throughput_hg19_chr22"] = tp
        print(f"  (c) cold {tp['cold_per_s']:,.0f}/s ({tp['tiles_computed_cold']:,} tiles computed), warm from disk "
              f"{tp['warm_disk_per_s']:,.0f}/s, warm in process {tp['warm_cache_per_s']:,.0f}/s "
              f"(one call {tp['warm_cache_one_call_per_s']:,.0f}/s)")
        hg_direct = interval_embeddings(hg_all, hg19, tiling, hg_memo, mode="direct", workers=workers)
        fid = fidelity_table(hg_all, interval_embeddings(hg_all, hg19, tiling, hg_memo), hg_direct)
        results["fidelity_hg19_chr22"] = fid
        print_fidelity("hg19 chr22 (synthetic sequence)", fid)
        hg_sqrt = interval_embeddings(hg_all, hg19, tiling, hg_memo, weighting="sqrt")
        sqrt_fid = fidelity_table(hg_all, hg_sqrt, hg_direct)
        results["fidelity_hg19_chr22_sqrt_weights"] = sqrt_fid
        print(f"  with weighting='sqrt': mean {sqrt_fid['mean']:.3f}, p5 {sqrt_fid['p5']:.3f}, "
              f"p50 {sqrt_fid['p50']:.3f}")
    else:
        print("\nhg19 chrom.sizes not found: hg19 part skipped")

    print("\n(b) recall@k vs exact seqpare, set embedding = normalised mean of interval embeddings")
    rec = recall_section(yeast, list(yeast_files.values()), memo, tiling, quick, workers)
    results["recall"] = rec
    print(f"  corpus: {rec['records']} records + {rec['queries']} queries derived from the yeast files "
          f"({rec['intervals']:,} intervals)")
    for name in ("tiles", "direct", "sketch"):
        print(f"  {name:>7}: recall@10 {rec[name][10]:.3f}  recall@20 {rec[name][20]:.3f}")
    print(f"  tile - direct: {rec['tiles'][10] - rec['direct'][10]:+.3f} @10, "
          f"{rec['tiles'][20] - rec['direct'][20]:+.3f} @20")

    print("\n(d) tiling variants: fidelity per memo byte" + (" (chrIV only)" if quick else " (whole yeast genome)"))
    variants = [(128, 4, 4), (64, 5, 4)] if quick else \
        [(128, 4, 2), (128, 4, 4), (128, 4, 8), (64, 5, 2), (64, 5, 4), (64, 5, 8)]
    chroms = ["chrIV"] if quick else None
    if quick:
        keep = np.flatnonzero(yeast_all.chrom == yeast.code_of["chrIV"])
        ref_iv, ref_direct = subset(yeast_all, keep), yeast_direct[keep]
    else:
        ref_iv, ref_direct = yeast_all, yeast_direct
    rows = []
    for base, layers, offsets in variants:
        variant = Tiling(base, layers, offsets)
        size = memo_size(yeast, variant, scratch / f"v{base}_{offsets}", "float32", workers, chroms)
        vmemo = size.pop("memo")
        fid = fidelity_table(ref_iv, interval_embeddings(ref_iv, yeast, variant, vmemo), ref_direct)
        sqrt_fid = fidelity_table(ref_iv, interval_embeddings(ref_iv, yeast, variant, vmemo, weighting="sqrt"),
                                  ref_direct)
        rows.append({"base": base, "layers": layers, "offsets": offsets, "mean": fid["mean"], "p5": fid["p5"],
                     "short_mean": fid["buckets"][0]["mean"] if fid["buckets"] else None,
                     "sqrt_weights_mean": sqrt_fid["mean"], "gb_per_gbp": size["gb_per_gbp"], "fidelity": fid})
        print(f"  base {base:>3} x{layers} layers, {offsets} offsets: mean {fid['mean']:.3f} p5 {fid['p5']:.3f} "
              f"(<100 bp: {rows[-1]['short_mean']:.3f}; sqrt weights: mean {sqrt_fid['mean']:.3f})  "
              f"{size['gb_per_gbp']:5.1f} GB/Gbp on disk, fill {size['fill_tiles_per_s']:,.0f} tiles/s")
        shutil.rmtree(vmemo.path, ignore_errors=True)
    results["tiling_variants"] = rows


# ---- (e) the read path: cold process, whole-process re-ingest, HyenaDNA ------------------------------


def yeast_collection(yeast: Genome, target: int, seed: int) -> list[IntervalSet]:
    """An ingest-sized collection: the 17 yeast files, then sets derived from them (random
    subsets, jittered; ``derived_sets``) until ``target`` intervals."""
    sources = list(read_folder([YEAST_BED], yeast, aliases={"chrM": "chrmt"}).values())
    rng = np.random.default_rng(seed)
    sets = list(sources)
    while sum(map(len, sets)) < target:
        sets += derived_sets(sources, yeast, 50, 100_000, rng)
    return sets


def on_chroms(sets: list[IntervalSet], genome: Genome, chroms: list[str]) -> list[IntervalSet]:
    codes = [genome.code_of[c] for c in chroms]
    out = [subset(s, np.flatnonzero(np.isin(s.chrom, codes))) for s in sets]
    return [s for s in out if len(s)]


def save_collection(sets: list[IntervalSet], path: Path) -> None:
    bounds = np.cumsum([0] + [len(s) for s in sets])
    np.savez(path, chrom=np.concatenate([s.chrom for s in sets]).astype(np.int32),
             start=np.concatenate([s.start for s in sets]), end=np.concatenate([s.end for s in sets]), bounds=bounds)


def load_collection(path: Path, genome: Genome) -> list[IntervalSet]:
    z = np.load(path)
    b = z["bounds"]
    return [IntervalSet(tuple(genome.names), z["chrom"][b[i]:b[i + 1]], z["start"][b[i]:b[i + 1]],
                        z["end"][b[i]:b[i + 1]]) for i in range(len(b) - 1)]


def write_beds(sets: list[IntervalSet], genome: Genome, folder: Path, prefix: str = "set") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = np.asarray(genome.names)
    for i, s in enumerate(sets):
        order = np.lexsort((s.end, s.start, s.chrom))
        rows = zip(names[s.chrom[order]].tolist(), s.start[order].tolist(), s.end[order].tolist())
        (folder / f"{prefix}{i:04d}.bed").write_text("".join(f"{c}\t{a}\t{b}\n" for c, a, b in rows))


def baseline_package(rev: str, scratch: Path) -> Path:
    """A copy of the gidx package (with cli and migrations, laid out as installed) whose
    memo.py and embed.py are those of git revision ``rev``: the code before this change,
    run side by side with the working tree (PYTHONPATH=<returned folder>)."""
    import subprocess

    base = scratch / f"baseline-{rev.replace('/', '_')}"
    pkg = base / "gidx"
    shutil.copytree(ROOT / "gidx", pkg, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (pkg / "data").symlink_to(ROOT / "gidx" / "data")
    shutil.copytree(ROOT / "cli", pkg / "cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "migrations", pkg / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("memo.py", "embed.py"):
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:gidx/{name}"], check=True, capture_output=True,
                              text=True).stdout
        (pkg / name).write_text(text)
    return base


def child_env(package: Path | None) -> dict:
    env = dict(os.environ)
    if package is not None:
        env["PYTHONPATH"] = str(package) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_child(mode: str, spec: dict, package: Path | None = None) -> dict:
    """Run ``mode`` of this script in a fresh Python process; its JSON answer."""
    import subprocess

    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", mode, json.dumps(spec)],
                         env=child_env(package), cwd=spec["scratch"], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"child {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(mode: str, spec: dict) -> None:
    """Fresh-process measurements (run by ``run_child``). Everything is set up first --
    imports, genome, collection, and the compiled kernels (one interval embedded through
    a throwaway memo) -- then the clock runs on a new memo object: empty chunk cache."""
    import gidx.memo

    scratch = Path(spec["scratch"])
    genome = Genome.from_fasta(spec["fasta"], "sacCer3", cache_dir=scratch / "fai")
    tiling = Tiling()
    enc = load_encoder(spec["encoder"])
    sets = load_collection(Path(spec["collection"]), genome)
    n = sum(map(len, sets))
    warm_up = TileMemo(scratch / "warm-up", genome, tiling, enc)
    interval_embeddings(IntervalSet(tuple(genome.names), np.array([0], np.int32), np.array([5000]),
                                    np.array([7000])), genome, tiling, warm_up)
    memo = TileMemo(spec["memo"], genome, tiling, enc)
    stored = json.loads((memo.path / "zarr.json").read_text())["attributes"] if memo.path.is_dir() else {}
    result = {"gidx_memo": gidx.memo.__file__, "intervals": n, "files": len(sets),
              "format": stored.get("gidx_tile_memo"), "codec": stored.get("chunk_codec", "zstd")}

    def clock(fn):
        w, c = time.perf_counter(), time.process_time()
        value = fn()
        return time.perf_counter() - w, time.process_time() - c, value

    if mode == "embed":  # interval_embeddings file by file, as ingest calls it
        keep = bool(spec.get("save"))  # timed runs drop each file's rows, as ingest does

        def embed_all():
            return [e for e in (interval_embeddings(s, genome, tiling, memo) for s in sets) if keep]

        result["cold_s"], result["cold_cpu_s"], first = clock(embed_all)
        result["tiles_computed"] = memo.stats.tiles_computed
        result["warm_s"], result["warm_cpu_s"], second = clock(embed_all)
        if keep:  # the bit-identity runs: cold process == warm, saved for comparing codes and layouts
            result["identical"] = all(a.tobytes() == b.tobytes() for a, b in zip(first, second))
            np.save(spec["save"], np.concatenate(first))
    elif mode == "parts":  # the same, split: tiling / memo lookups / means (this code only)
        from gidx.embed import _weighted_means_of_rows

        result["compose_s"], result["compose_cpu_s"], tilings = clock(
            lambda: [tiling.compose(s.chrom, s.start, s.end, genome.lengths) for s in sets])
        result["rows_s"], result["rows_cpu_s"], rows = clock(lambda: [memo.rows(t) for t in tilings])
        result["tile_lookups"] = int(sum(len(t) for t in tilings))

        def means():
            for s, t, r in zip(sets, tilings, rows):
                _weighted_means_of_rows(r, t.interval, t.weight, np.zeros((len(s), memo.dim), np.float32))

        result["means_s"], result["means_cpu_s"], _ = clock(means)
        result["tiles_computed"] = memo.stats.tiles_computed
        result["chunks_read"] = memo.stats.chunks_read
    print(json.dumps(result))


# Diagnostic only (e2/e3 rows marked so): ``Index.tiling()`` reads the catalog on every call,
# and memo sequence features call it once per record (~20 ms each here). Caching it -- a
# change to gidx/index.py, outside this benchmark's scope -- shows what ingest would gain.
CACHE_TILING = ("import functools, gidx.index as _index; "
                "_index.Index.tiling = functools.lru_cache(maxsize=None)(_index.Index.tiling); ")


def gidx_cli(args: list[str], cwd: Path, package: Path | None = None, patch: str = "") -> float:
    """Wall seconds of one whole ``gidx`` process (the console script's entry point;
    ``patch``: Python run first, for the diagnostic rows)."""
    import subprocess

    t0 = time.perf_counter()
    # the patch after gidx.cli.main: that module sets OPENBLAS_NUM_THREADS before numpy loads
    out = subprocess.run([sys.executable, "-c", f"import sys; from gidx.cli.main import main; {patch}"
                          "sys.argv[0] = 'gidx'; sys.exit(main())", *args], env=child_env(package), cwd=cwd,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"gidx {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return seconds


def memo_model_index(path: Path, fasta: Path, encoder: str, corpus: list[IntervalSet], genome: Genome) -> int:
    """An index whose active set encoder is a (barely) trained M model with tile-memo
    sequence features, so that ingest embeds every record through the memo. Trained for
    speed, not quality: one epoch of two steps, then activated whatever its recall."""
    from gidx.index import Index
    from gidx.model import ModelConfig
    from gidx.train import TrainConfig, activate, train

    idx = Index.create(path, fasta=fasta, genome_name="sacCer3", encoder=encoder)
    write_beds(corpus, genome, path.parent / f"{path.name}-corpus", prefix="train")
    rep = idx.ingest([path.parent / f"{path.name}-corpus"])
    assert not rep.rejected, rep.rejected
    idx.truth()
    mcfg = ModelConfig(features="both", sequence="memo", seq_in=idx.sequence_encoder().dim, buckets=1024, hidden=32,
                       chunk=1024)
    res = train(idx, mcfg, TrainConfig(epochs=1, steps_per_epoch=2, seeds_per_batch=4, pos_per_seed=2,
                                       max_intervals=256, patience=1, val_fraction=0.25, val_k=5))
    activate(idx, res.model_id)
    return res.model_id


def reingest(snapshot: Path, beds: Path, work: Path, package: Path | None, warm_memo: Path | None,
             patch: str = "") -> tuple[float, Path]:
    """``gidx ingest`` of ``beds`` into a copy of ``snapshot`` (which holds no record of
    them) as one whole process; cold: no tile memo, warm: ``warm_memo`` copied in first."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(snapshot, work, ignore=shutil.ignore_patterns("tiles.zarr"))
    if warm_memo is not None:
        shutil.copytree(warm_memo, work / "tiles.zarr")
    return gidx_cli(["ingest", str(beds), "-i", str(work), "-q"], work.parent, package, patch), work / "tiles.zarr"


def read_path(args, scratch: Path, results: dict) -> None:
    repeats = args.repeats
    yeast = yeast_genome(scratch)
    fasta = scratch / "sacCer3.fa"
    tiling = Tiling()
    sets = yeast_collection(yeast, args.intervals, args.seed)
    n = sum(map(len, sets))
    coll = scratch / "collection.npz"
    save_collection(sets, coll)
    base = baseline_package(args.baseline, scratch) if args.baseline else None
    out = results.setdefault("read_path", {"intervals": n, "files": len(sets), "baseline": args.baseline})
    print(f"(e) tile memo read path. Collection: {len(sets)} sets, {n:,} intervals (the 17 yeast files + sets derived "
          f"from them, seed {args.seed}) on sacCer3 (real FASTA); {tiling!r}; encoder {ENCODER}; "
          f"baseline = gidx/memo.py + gidx/embed.py of {args.baseline or '(none)'}")

    # memos of the whole collection, one per layout; the baseline writes its own (format 1)
    memos = {}
    for label, codec in (("raw", "raw"), ("zstd", "zstd")):
        memo = TileMemo(scratch / f"memo-{label}", yeast, tiling, load_encoder(ENCODER), workers=args.workers,
                        codec=codec)
        report = memo.fill(all=True)
        memos[label] = memo.root
        out[f"fill_{label}"] = {"seconds": report.seconds, "mib": _du(memo.path) / 2**20}
        print(f"  whole-genome fill, {label}: {report.seconds:.1f} s, {_du(memo.path) / 2**20:,.0f} MiB on disk")
    if base is not None:  # the baseline's own memo (format 1), filled by the baseline code
        spec = {"scratch": str(scratch), "fasta": str(fasta), "encoder": ENCODER, "collection": str(coll),
                "memo": str(scratch / "memo-baseline")}
        r = run_child("embed", spec, base)
        out["baseline_cold_fill"] = r
        memos["baseline"] = scratch / "memo-baseline"
        print(f"  baseline, empty memo, fresh process: {r['cold_s']:.1f} s ({n / r['cold_s']:,.0f} intervals/s, "
              f"{r['tiles_computed']:,} tiles computed)")

    print(f"\n(e1) fresh process, interval_embeddings(mode='tiles') file by file; {repeats} processes each, "
          "median [min-max]; intervals/s by wall clock (by CPU time)")
    runs = [("this", "raw", None), ("this", "zstd", None)]
    if base is not None:
        runs = [("baseline", "baseline", base), ("baseline", "raw", base)] + runs
    rows = {}
    for _ in range(repeats):  # interleaved, so that load changes hit every configuration alike
        for code, label, package in runs:
            spec = {"scratch": str(scratch), "fasta": str(fasta), "encoder": ENCODER, "collection": str(coll),
                    "memo": str(memos[label])}
            rows.setdefault((code, label), []).append(run_child("embed", spec, package))
    for (code, label), rs in rows.items():
        assert all(r["tiles_computed"] == 0 for r in rs), rs
        line = {k: [r[k] for r in rs] for k in ("cold_s", "cold_cpu_s", "warm_s", "warm_cpu_s")}
        out.setdefault("e1", []).append({"code": code, "memo": label, "format": rs[0]["format"],
                                         "codec": rs[0]["codec"], **line})
        print(f"  {code:>8} code, {label:>8} memo (format {rs[0]['format']}, {rs[0]['codec']}): cold process "
              f"{rate(n, line['cold_s'])} ({rate(n, line['cold_cpu_s'])} CPU);  warm, same process "
              f"{rate(n, line['warm_s'])} ({rate(n, line['warm_cpu_s'])} CPU)")
    # the same embeddings whatever the code and layout
    saved = []
    for i, (code, label, package) in enumerate(runs):
        spec = {"scratch": str(scratch), "fasta": str(fasta), "encoder": ENCODER, "collection": str(coll),
                "memo": str(memos[label]), "save": str(scratch / f"emb{i}.npy")}
        assert run_child("embed", spec, package)["identical"]  # cold process == warm, for each
        saved.append(np.load(scratch / f"emb{i}.npy"))
    out["bit_identical"] = all(x.tobytes() == saved[0].tobytes() for x in saved)
    print(f"  embeddings bit-identical across all {len(saved)} code/layout combinations: {out['bit_identical']}")

    print("\n  where the time goes (this code, fresh process, raw memo; tiling / memo lookups / means):")
    parts = [run_child("parts", {"scratch": str(scratch), "fasta": str(fasta), "encoder": ENCODER,
                                 "collection": str(coll), "memo": str(memos["raw"])}) for _ in range(repeats)]
    out["parts"] = parts
    for key in ("compose", "rows", "means"):
        print(f"    {key:>8}: {med(parts, key + '_s'):.2f} s wall, {med(parts, key + '_cpu_s'):.2f} s CPU")
    print(f"    memo read alone (memo.rows, cold process: {parts[0]['chunks_read']:,} chunks mapped, "
          f"{parts[0]['tile_lookups']:,} tile lookups): {n / med(parts, 'rows_s'):,.0f} intervals/s wall, "
          f"{n / med(parts, 'rows_cpu_s'):,.0f} by CPU")

    if not args.skip_ingest:
        ingest_section(args, scratch, yeast, fasta, sets, base, out)
    if args.hyena:
        hyena_section(args, scratch, yeast, fasta, sets, out)


def med(rows: list[dict], key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def rate(n: int, seconds: list[float]) -> str:
    s = sorted(seconds)
    return f"{n / np.median(s):>9,.0f}/s [{n / s[-1]:,.0f}-{n / s[0]:,.0f}]"


def ingest_section(args, scratch: Path, yeast: Genome, fasta: Path, sets: list[IntervalSet], base: Path | None,
                   out: dict) -> None:
    n = sum(map(len, sets))
    beds = scratch / "collection-beds"
    write_beds(sets, yeast, beds)
    rng = np.random.default_rng(args.seed + 1)
    sources = list(read_folder([YEAST_BED], yeast, aliases={"chrM": "chrmt"}).values())
    snapshot = scratch / "idx-kmer"
    t0 = time.perf_counter()
    memo_model_index(snapshot, fasta, "kmer", derived_sets(sources, yeast, 40, 300, rng), yeast)
    print(f"\n(e2) whole-process `gidx ingest` of the collection ({len(sets)} BED files, {n:,} intervals) into an index "
          f"whose active set encoder is M with tile-memo sequence features (kmer; setup {time.perf_counter() - t0:.0f} s)")
    codes = [("this", None, ""), ("this+cached tiling", None, CACHE_TILING)] + \
        ([("baseline", base, "")] if base is not None else [])
    rows = {}
    for r in range(args.ingest_repeats):  # interleaved, so that load changes hit every configuration alike
        for code, package, patch in codes:
            cold, memo_dir = reingest(snapshot, beds, scratch / "ingest-cold", package, None, patch)
            rows.setdefault((code, "cold"), []).append(cold)
            keep = scratch / f"memo-after-{code}"
            if r == 0:
                shutil.rmtree(keep, ignore_errors=True)
                shutil.copytree(memo_dir, keep)
            warm, _ = reingest(snapshot, beds, scratch / "ingest-warm", package, keep, patch)
            rows.setdefault((code, "warm"), []).append(warm)
    for code, _, _ in codes:
        cold, warm = rows[(code, "cold")], rows[(code, "warm")]
        out.setdefault("e2", []).append({"code": code, "cold_s": cold, "warm_s": warm})
        print(f"  {code:>18} code: cold memo {np.median(cold):6.1f} s ({n / np.median(cold):,.0f} intervals/s), "
              f"warm memo {np.median(warm):6.1f} s ({n / np.median(warm):,.0f}/s): warm {np.median(cold) / np.median(warm):.1f}x "
              f"faster  (runs: cold {', '.join(f'{x:.1f}' for x in cold)}; warm {', '.join(f'{x:.1f}' for x in warm)})")


def hyena_section(args, scratch: Path, yeast: Genome, fasta: Path, sets: list[IntervalSet], out: dict) -> None:
    spec_encoder = f"hyenadna:{Path(args.hyena).resolve()}"
    chroms = args.hyena_chroms.split(",")
    hsets = on_chroms(sets, yeast, chroms)[: args.hyena_files]
    n = sum(map(len, hsets))
    coll = scratch / "collection-hyena.npz"
    save_collection(hsets, coll)
    print(f"\n(e3) HyenaDNA {args.hyena} (random weights; CPU): {len(hsets)} sets, {n:,} intervals on "
          f"{', '.join(chroms)}")
    spec = {"scratch": str(scratch), "fasta": str(fasta), "encoder": spec_encoder, "collection": str(coll),
            "memo": str(scratch / "memo-hyena")}
    r = run_child("embed", spec)
    warm = [r] + [run_child("embed", spec) for _ in range(max(args.repeats, 2))]
    out["e3_fresh_process"] = warm
    later = ", ".join(f"{x['cold_s']:.2f}" for x in warm[1:])
    print(f"  fresh process, interval_embeddings file by file: cold (empty memo, {r['tiles_computed']:,} tiles "
          f"computed) {r['cold_s']:.1f} s; warm memo, next fresh processes: {later} s -> "
          f"{r['cold_s'] / med(warm[1:], 'cold_s'):.0f}x")
    if args.skip_ingest:
        return
    beds = scratch / "collection-hyena-beds"
    write_beds(hsets, yeast, beds)
    snapshot = scratch / "idx-hyena"
    rng = np.random.default_rng(args.seed + 2)
    t0 = time.perf_counter()
    # trained on the first chromosome only: its memo fill is setup; the ingest's cold memo is deleted anyway
    memo_model_index(snapshot, fasta, spec_encoder, derived_sets(on_chroms(hsets, yeast, chroms[:1]), yeast, 30, 200,
                                                                 rng), yeast)
    setup = time.perf_counter() - t0
    cold, memo_dir = reingest(snapshot, beds, scratch / "ingest-hyena-cold", None, None)
    keep = scratch / "memo-after-hyena"
    shutil.copytree(memo_dir, keep)
    warm = [reingest(snapshot, beds, scratch / "ingest-hyena-warm", None, keep)[0] for _ in range(args.ingest_repeats)]
    cached = [reingest(snapshot, beds, scratch / "ingest-hyena-warm", None, keep, CACHE_TILING)[0]
              for _ in range(args.ingest_repeats)]
    out["e3_ingest"] = {"cold_s": cold, "warm_s": warm, "warm_cached_tiling_s": cached, "setup_s": setup}
    print(f"  whole-process `gidx ingest` (index with encoder {spec_encoder}, M with memo features; setup "
          f"{setup:.0f} s): cold memo {cold:.1f} s, warm memo {np.median(warm):.1f} s "
          f"(runs {', '.join(f'{x:.1f}' for x in warm)}): warm {cold / np.median(warm):.0f}x faster; "
          f"diagnostic, Index.tiling cached: warm {np.median(cached):.1f} s, {cold / np.median(cached):.0f}x")


def print_fidelity(title: str, fid: dict) -> None:
    print(f"  {title}: {fid['n']:,} intervals: mean {fid['mean']:.3f}, p5 {fid['p5']:.3f}, p50 {fid['p50']:.3f}  "
          f"(left out: {fid['no_tile']} without a tile, {fid['direct_zero']} with a zero direct vector)")
    for b in fid["buckets"]:
        print(f"    {b['bucket']:>12} bp  n={b['n']:>6}  mean {b['mean']:.3f}  p5 {b['p5']:.3f}  p50 {b['p50']:.3f}")


def hg19_genome() -> Genome | None:
    for path in HG19_SIZES:
        if path.is_file():
            return Genome.from_chrom_sizes(path, "hg19")
    return None


if __name__ == "__main__":
    main()
