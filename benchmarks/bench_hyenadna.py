"""HyenaDNA encoder: throughput, and how much a few end bases move an embedding.

1. Throughput of ``HyenaDNAEncoder`` (collate + forward + masked mean) on random DNA,
   per sequence length, batch size and torch thread count, as sequences/s and kbp/s.
   Reference points: the README anchor (upstream remote code, tiny-1k shape, 1000 bp,
   batch 8, 1 thread, CPU: ~60 seq/s on a 2-vCPU AMD EPYC VM), and the upstream op order
   (transposes, conv1d, FFT of exactly 2L, filter rebuilt per call; ``upstream_forward``
   below) timed here on the same machine.
2. End sensitivity: cosine between the embedding of a sequence and of the same sequence
   with n bases trimmed from / added to its ends (random DNA, and yeast windows when the
   genome is there). Base length 800 bp so that +100 at both ends still fits tiny-1k.
   With random weights (the fixtures) the numbers say how the architecture mixes
   positions, not what a trained model has learned.
3. ``--pipeline``: the same model through gidx's streaming ``Pipeline`` as a memo fill
   runs it (tile sequences fetched from the genome per chunk, collate, forward, decollate,
   write), against the bare ``encoder.embed`` on the same tiles' sequences fetched
   beforehand. N tiles of 1 kbp (``Tiling(1024, 1, 1)``) from the bundled yeast genome,
   one torch thread; sinks: a numpy array (pipeline stages only) and the memo's Zarr arrays
   (``TileMemo`` write path, a fresh memo per run); 0, 1 and 2 DataLoader workers for the
   data side. Goal: pipeline >= 0.8 x bare. Runs of all configurations alternate, round
   after round, so that load from other processes hits them alike.

    .venv/bin/python benchmarks/bench_hyenadna.py [--quick] [--checkpoint DIR]
        [--device cuda --autocast bf16] [--threads 1,2] [--genome FASTA.gz]
    .venv/bin/python benchmarks/bench_hyenadna.py --pipeline [--tiles 256] [--chunk-bp 65536]
        [--batch-sizes 8,32] [--workers 0,1,2] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gidx.encoders.hyenadna import HyenaDNAEncoder

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "tests" / "data" / "hyenadna" / "tiny-random"
GENOME = Path("/work/shared/data/genomes/sacCer3/S_cerevisiae.fasta.gz")
ANCHOR_SEQ_PER_S = 60  # README: upstream code, 1000 bp, batch 8, 1 thread


def random_dna(rng, n: int, length: int) -> list[str]:
    return ["".join(s) for s in rng.choice(list("ACGT"), (n, length))]


def upstream_forward(model, input_ids):
    """The upstream modeling_hyena.py forward, op for op, on gidx's loaded weights."""
    b = model.backbone
    x = b.embeddings.word_embeddings(input_ids)
    for layer in b.layers:
        m, f = layer.mixer, layer.mixer.filter_fn
        L, D = x.shape[1], x.shape[2]
        u = m.in_proj(layer.norm1(x.float())).transpose(1, 2)
        uc = F.conv1d(u, m.short_filter.weight, m.short_filter.bias, padding=2, groups=3 * D)[..., :L]
        x0, x1, v = uc.split(D, dim=1)
        k = f.implicit_filter(f.pos_emb.z[:, :L])
        k = (k * (torch.exp(-f.pos_emb.t[:, :L] * f.modulation.deltas.abs()) + 0.05))[0].transpose(0, 1)
        v = v * x1
        k_f = torch.fft.rfft(k.float(), n=2 * L) / (2 * L)
        y = torch.fft.irfft(torch.fft.rfft(v.float(), n=2 * L) * k_f, n=2 * L, norm="forward")[..., :L]
        r = m.out_proj(((y + v * f.bias[:, None]) * x0).transpose(1, 2)) + x
        x = layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.norm2(r)), approximate="tanh")) + r.float()
    return b.ln_f(x)


def timings(fns, min_seconds: float, sync) -> list[list[float]]:
    """Wall times of each fn, called in turn (so load from other processes hits all alike),
    at least 3 rounds and about min_seconds in total."""
    rounds: list[list[float]] = []
    for fn in fns:  # warm-up: allocator, filter cache, FFT plans
        fn()
    while len(rounds) < 3 or sum(map(sum, rounds)) < min_seconds:
        row = []
        for fn in fns:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            row.append(time.perf_counter() - t0)
        rounds.append(row)
    return [list(col) for col in zip(*rounds)]


def throughput(args) -> None:
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    print(f"## Throughput: {args.checkpoint.name}, {args.device}"
          f"{', autocast ' + args.autocast if args.autocast else ''}\n")
    print("seq/s from the median (and best) wall time per batch: forward + masked-mean pooling of a collated batch.\n")
    print("| threads | length (bp) | batch | seq/s median (best) | kbp/s median | vs anchor 60 seq/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for threads in args.threads:
        enc = HyenaDNAEncoder(args.checkpoint, device=args.device, autocast=args.autocast, threads=threads)
        for length in args.lengths:
            for bs in args.batch_sizes:
                batch = enc.collate(random_dna(rng, bs, length))
                [t] = timings([lambda: enc.decollate(enc.forward(batch), batch)], args.min_seconds, sync)
                print(row(threads, length, bs, t), flush=True)
        if args.device == "cpu":  # the anchor's configuration, upstream op order vs gidx, alternating
            batch = enc.collate(random_dna(rng, 8, 1000))
            with torch.inference_mode():
                ours, upstream = timings([lambda: enc.decollate(enc.forward(batch), batch),
                                          lambda: upstream_forward(enc.model, batch["input_ids"])],
                                         2 * args.min_seconds, sync)
            print(row(threads, 1000, 8, upstream, "upstream op order, this machine"), flush=True)
            speedup = statistics.median(upstream) / statistics.median(ours)
            print(row(threads, 1000, 8, ours, f"gidx, same rounds: {speedup:.2f}x upstream"), flush=True)
    print()


def row(threads: int, length: int, bs: int, times: list[float], note: str = "") -> str:
    med, best = bs / statistics.median(times), bs / min(times)
    ratio = f"{med / ANCHOR_SEQ_PER_S:.2f}x" if length == 1000 else ""
    return (f"| {threads} | {length} | {bs} | {med:,.1f} ({best:,.1f}) | {med * length / 1e3:,.1f} "
            f"| {ratio}{' — ' + note if note else ''} |")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def end_sensitivity(enc: HyenaDNAEncoder, windows: list[str], ns: list[int], label: str) -> None:
    """windows: 800 + 2 * max(ns) bp each; the unchanged sequence is the middle 800 bp.

    Raw cosines between any two embeddings are ~0.99 (a large shared component), so the
    table is on embeddings centred by the mean of the unchanged ones: 0 = as different as
    an unrelated window, 1 = identical."""
    pad = max(ns)
    core = [w[pad:-pad] for w in windows]
    base = enc.embed(core)
    mean = base.mean(0)
    unrelated = np.roll(base, 1, axis=0)
    print(f"### {label}: {len(windows)} windows of 800 bp\n")
    print(f"Cosine to the unchanged window's embedding, centred, mean (min). Unrelated windows: "
          f"{cosine_rows(base - mean, unrelated - mean).mean():.3f} centred, "
          f"{cosine_rows(base, unrelated).mean():.4f} raw.\n")
    print("| n | trim n at both ends | add n at both ends | add n at left end | add n at right end |")
    print("|---:|---:|---:|---:|---:|")
    for n in ns:
        variants = [[c[n:-n] for c in core], [w[pad - n: len(w) - pad + n] for w in windows],
                    [w[pad - n: len(w) - pad] for w in windows], [w[pad: len(w) - pad + n] for w in windows]]
        cells = [cosine_rows(base - mean, enc.embed(v) - mean) for v in variants]
        print(f"| {n} | " + " | ".join(f"{c.mean():.3f} ({c.min():.3f})" for c in cells) + " |", flush=True)
    print()


def yeast_windows(path: Path, n: int, length: int, rng) -> list[str]:
    import pyfaidx

    with tempfile.TemporaryDirectory() as tmp:  # the index must not be written beside the FASTA
        fasta = pyfaidx.Fasta(str(path), indexname=f"{tmp}/g.fai", gzi_indexname=f"{tmp}/g.gzi")
        chroms = [c for c in fasta.keys() if c != "chrmt"]
        sizes = np.array([len(fasta[c]) for c in chroms])
        out = []
        for c in rng.choice(len(chroms), n, p=sizes / sizes.sum()):
            start = int(rng.integers(0, sizes[c] - length))
            out.append(str(fasta[chroms[c]][start: start + length]))
        return out


YEAST_BUNDLED = REPO / "gidx" / "data" / "sacCer3" / "S_cerevisiae.fasta.gz"


def pipeline_vs_bare(args) -> None:
    """Section 3 (see the module docstring)."""
    from gidx.genome import Genome
    from gidx.memo import TileMemo
    from gidx.pipeline import Pipeline
    from gidx.tiling import Tiling

    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    threads = args.threads[0]
    enc = HyenaDNAEncoder(args.checkpoint, device=args.device, autocast=args.autocast, threads=threads)
    tiling = Tiling(1024, 1, 1)
    with tempfile.TemporaryDirectory(prefix="bench_hyenadna_") as tmp:
        genome = Genome.from_fasta(YEAST_BUNDLED, "sacCer3", cache_dir=Path(tmp) / "fai")
        chrom = genome.code_of[args.chrom]

        def new_memo(i: int, bs: int, workers: int) -> TileMemo:
            return TileMemo(Path(tmp) / f"memo{i}", genome, tiling, enc, chunk_bp=args.chunk_bp,
                            batch_size=bs, workers=workers)

        probe = new_memo(0, 8, 0)
        refs = probe.chunk_refs((chrom, 0, 0))
        n_items = -(-args.tiles // probe.layout.chunk_len((chrom, 0, 0)))
        refs = refs[:n_items]
        n_tiles = sum(b - a for a, b in map(probe.layout.tile_range, refs))
        starts, ends = tiling.tile_bounds(0, 0, np.arange(n_tiles))
        seqs = genome.fetch(np.full(n_tiles, chrom), starts, ends)  # pre-fetched for the bare runs
        assert all(len(x) == 1024 for x in seqs)
        print(f"## Pipeline vs bare forward: {args.checkpoint.name} (random weights), {args.device}, "
              f"{threads} torch thread(s)\n")
        print(f"{n_tiles} tiles of 1024 bp from {args.chrom}:0-{n_tiles * 1024:,} (bundled sacCer3), "
              f"{len(refs)} pipeline items (memo chunks of {probe.layout.chunk_len((chrom, 0, 0))} tiles); "
              f"{args.rounds} rounds, all configurations alternating; seq/s from the median (best) wall time.\n")

        counter = iter(range(1, 1 << 30))
        sinks: dict = {}

        def bare(bs):
            def fn():
                enc.batch_size = bs
                sinks["bare", bs] = enc.embed(seqs)
            return fn

        def numpy_sink(bs, workers):
            def fn():
                memo = new_memo(0, bs, workers)  # only for its sequence stage and layout
                out = np.empty((n_tiles, enc.dim), dtype=np.float32)

                def write(ref, rows):
                    a, b = memo.layout.tile_range(ref)
                    out[a:b] = rows

                Pipeline(preprocess=memo._sequences, collate=enc.collate, forward=enc.forward,
                         decollate=enc.decollate, batch_size=bs, workers=workers,
                         worker_init=memo._sequences.reopen).run(refs, write)
                sinks["numpy", bs, workers] = out
            return fn

        def zarr_sink(bs, workers):
            state = {}

            def setup():
                state["memo"] = new_memo(next(counter), bs, workers)

            def fn():
                memo = state["memo"]
                memo._pipeline(workers).run(refs, write=memo._write_chunk)
                sinks["zarr", bs, workers] = (memo, np.asarray(memo._grid_arrays((chrom, 0, 0), False)[0][:n_tiles]))
            return setup, fn

        configs = []  # (label, bs, workers, setup, fn)
        for bs in args.batch_sizes:
            configs.append(("bare `encoder.embed`, pre-fetched", bs, None, None, bare(bs)))
            configs.append(("pipeline -> numpy", bs, 0, None, numpy_sink(bs, 0)))
            for w in args.workers:
                configs.append(("pipeline -> Zarr memo", bs, w, *zarr_sink(bs, w)))
        times = [[] for _ in configs]
        for r in range(args.rounds + 1):  # round 0: warm-up (FFT plans, filter cache, imports)
            for (label, bs, w, setup, fn), t in zip(configs, times):
                if setup:
                    setup()
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                if r:
                    t.append(time.perf_counter() - t0)
        import os
        print(f"load average after the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
        print("| batch | path | data-side workers | seq/s median (best) | vs bare (median) | max abs diff vs bare |")
        print("|---:|---|---:|---:|---:|---:|")
        for (label, bs, w, _, _), t in zip(configs, times):
            base = times[configs.index(next(c for c in configs if c[1] == bs and c[2] is None))]
            out = sinks["bare", bs] if w is None else sinks["numpy", bs, w] if "numpy" in label else sinks["zarr", bs, w][1]
            diff = float(np.abs(out - sinks["bare", bs]).max())
            print(f"| {bs} | {label} | {'' if w is None else w} | {n_tiles / statistics.median(t):,.1f} "
                  f"({n_tiles / min(t):,.1f}) | {statistics.median(base) / statistics.median(t):.2f} | {diff:.1e} |")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--autocast", default=None, choices=["bf16", "fp16"], help="GPU only")
    parser.add_argument("--threads", default="1,2", help="torch threads to try, comma-separated")
    parser.add_argument("--genome", type=Path, default=GENOME, help="bgzip FASTA for real windows")
    parser.add_argument("--quick", action="store_true", help="short run: fewer repeats and windows")
    parser.add_argument("--skip-ends", action="store_true", help="throughput only")
    parser.add_argument("--pipeline", action="store_true", help="only section 3: pipeline vs bare forward")
    parser.add_argument("--tiles", type=int, default=256, help="--pipeline: tiles of 1 kbp to embed")
    parser.add_argument("--chunk-bp", type=int, default=1 << 16, help="--pipeline: memo chunk (one pipeline item)")
    parser.add_argument("--chrom", default="chrIV", help="--pipeline: yeast chromosome the tiles come from")
    parser.add_argument("--batch-sizes", default="8,32", help="--pipeline: batch sizes, comma-separated")
    parser.add_argument("--workers", default="0,1,2", help="--pipeline: data-side worker counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="--pipeline: timed rounds (after one warm-up)")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    if args.pipeline:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        args.workers = [int(w) for w in args.workers.split(",")]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads\n")
        pipeline_vs_bare(args)
        return
    args.lengths, args.batch_sizes = [200, 1000], [1, 8, 32, 64]
    args.min_seconds = 0.3 if args.quick else 2.0

    print(f"torch {torch.__version__}, {torch.get_num_threads()} default threads\n")
    throughput(args)
    if args.skip_ends:
        return
    ns, n_windows = [1, 5, 10, 50, 100], 16 if args.quick else 64
    rng = np.random.default_rng(1)
    enc = HyenaDNAEncoder(args.checkpoint, device=args.device, autocast=args.autocast, threads=args.threads[0])
    print(f"## End sensitivity ({args.checkpoint.name}: random weights, pooling mean over the bases)\n")
    end_sensitivity(enc, random_dna(rng, n_windows, 800 + 2 * max(ns)), ns, "random DNA")
    if args.genome.exists():
        end_sensitivity(enc, yeast_windows(args.genome, n_windows, 800 + 2 * max(ns), rng), ns,
                        f"yeast ({args.genome.name})")


if __name__ == "__main__":
    main()
