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

    .venv/bin/python benchmarks/bench_hyenadna.py [--quick] [--checkpoint DIR]
        [--device cuda --autocast bf16] [--threads 1,2] [--genome FASTA.gz]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--autocast", default=None, choices=["bf16", "fp16"], help="GPU only")
    parser.add_argument("--threads", default="1,2", help="torch threads to try, comma-separated")
    parser.add_argument("--genome", type=Path, default=GENOME, help="bgzip FASTA for real windows")
    parser.add_argument("--quick", action="store_true", help="short run: fewer repeats and windows")
    parser.add_argument("--skip-ends", action="store_true", help="throughput only")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
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
