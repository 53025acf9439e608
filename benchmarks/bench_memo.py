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

    .venv/bin/python benchmarks/bench_memo.py [--quick] [--workers 2] [--json out.json]
        [--encoder SPEC]
    .venv/bin/python benchmarks/bench_memo.py --fidelity-only --sample 2000 \
        --encoder hyenadna:tests/data/hyenadna/tiny-random --chunk-bp 1024 --workers 0

``--encoder`` (default kmer, k=12, dim=256) is any ``load_encoder`` spec. ``--fidelity-only``
runs part (a) alone on a random sample of the yeast intervals (``--sample``, seed
``--seed``), filling only the memo chunks those intervals touch; a small ``--chunk-bp``
keeps that close to the tiles actually used (a slow encoder such as HyenaDNA on CPU
cannot fill the whole genome in a benchmark's time).

Targets: warm >= 200k intervals/s; mean fidelity cosine >= 0.95; tile-path recall
within 0.02 of direct.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
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
from gidx.memo import TileMemo
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
    args = parser.parse_args()
    set_encoder(args.encoder)
    scratch = Path(tempfile.mkdtemp(prefix="bench_memo_", dir=args.tmp))
    results: dict = {"quick": args.quick, "cpus": os.cpu_count()}
    results["encoder"] = ENCODER
    try:
        (fidelity_only if args.fidelity_only else run)(args, scratch, results)
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
