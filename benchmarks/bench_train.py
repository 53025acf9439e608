"""Benchmarks of the M model (issue 7).

  .venv/bin/python benchmarks/bench_train.py memory  [--quick]   # peak memory of a training step vs set size
  .venv/bin/python benchmarks/bench_train.py recall -i IDX [--quick]   # recall@k: exact / active model / sketch
  .venv/bin/python benchmarks/bench_train.py latency [--quick]    # query latency vs records (in-process, CLI)

Figures: JSON + PNG under benchmarks/out/ (see benchmarks/RESULTS_train.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
REPO = Path(__file__).resolve().parent.parent


def _step_child(n: int, checkpointed: bool) -> None:
    """One training step (forward + triplet loss + backward + Adam) on a batch of 4 sets of n intervals."""
    import torch

    torch.set_num_threads(1)
    from gidx.intervals import IntervalSet
    from gidx.model import ModelConfig, build_torch_model
    from gidx.train import TrainConfig, batch_loss

    cfg = ModelConfig(features="position", chunk=2048)
    model = build_torch_model(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    rng = np.random.default_rng(0)
    items = []
    for _ in range(4):
        c = rng.integers(0, 22, n).astype(np.int32)
        s = rng.integers(0, 50_000_000, n)
        items.append((c, s, s + 500, np.zeros((n, 0), np.float32)))
    S = np.array([[1, .5, 0, 0], [.5, 1, 0, 0], [0, 0, 1, .5], [0, 0, .5, 1]], float)
    P, N = (S >= .2) & ~np.eye(4, dtype=bool), S == 0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    emb = model(items, checkpointed=checkpointed)
    loss, _ = batch_loss(emb, S, P, N, TrainConfig())
    loss.backward()
    opt.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "checkpointed": checkpointed, "rss_before_kb": base, "peak_kb": peak,
                      "step_delta_mb": (peak - base) / 1024}))


def memory(quick: bool) -> dict:
    sizes = [100, 1_000, 10_000, 100_000] if not quick else [100, 10_000, 100_000]
    rows = []
    for ck in (True, False):
        for n in sizes:
            p = subprocess.run([sys.executable, __file__, "_step", str(n), str(int(ck))], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    return {"memory": rows}


def recall(index: str, quick: bool) -> dict:
    from gidx.evaluate import eval_index
    from gidx.index import Index

    rows, qs = eval_index(Index.open(index), ks=(1, 5, 10, 20, 50), rerank=100)
    return {"recall": rows, "queries": len(qs)}


def latency(quick: bool) -> dict:
    """In-process Index.query (no re-rank, vector search only) with a trained-model encoder vs number of records."""
    import shutil
    import tempfile

    from gidx.index import Index
    from gidx.intervals import IntervalSet
    from gidx.model import ModelConfig, build_torch_model, save_numpy

    out = []
    sizes = [100, 1_000, 10_000] if not quick else [100, 1_000]
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    try:
        idx = Index.create(tmp / "idx", chrom_sizes=REPO / "tests/data/chromsizes/hg19.chrom.sizes")
        cfg = ModelConfig(features="position")
        (tmp / "idx/models/1").mkdir(parents=True, exist_ok=True)
        save_numpy(tmp / "idx/models/1/model.npz", cfg, build_torch_model(cfg).export())
        from gidx.train import model_encoder

        enc = model_encoder(idx, 1)
        g = idx.genome
        for n in sizes:
            table = f"bench_{n}"
            vecs = rng.normal(size=(n, enc.dim)).astype(np.float32)
            idx.vectors.add(table, np.arange(1, n + 1), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
            q = IntervalSet(tuple(g.names), rng.integers(0, 22, 2000).astype(np.int32),
                            (s := rng.integers(0, 50_000_000, 2000)), s + 500)
            ts = []
            for _ in range(30 if not quick else 10):
                t0 = time.perf_counter()
                v = enc.embed([q])[0]
                idx.vectors.search(table, v, 20)
                ts.append((time.perf_counter() - t0) * 1000)
            out.append({"records": n, "query_intervals": 2000, "p50_ms": float(np.percentile(ts, 50)),
                        "p95_ms": float(np.percentile(ts, 95))})
            print(out[-1], file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"latency_in_process": out}


def plot(res: dict, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    if "memory" in res:
        fig, ax = plt.subplots()
        for ck in (True, False):
            r = [x for x in res["memory"] if x["checkpointed"] == ck]
            ax.plot([x["n"] for x in r], [x["step_delta_mb"] for x in r], "o-", label=f"checkpointed={ck}")
        ax.set_xscale("log"), ax.set_xlabel("intervals per set (batch of 4)"), ax.set_ylabel("peak RSS growth in step (MB)")
        ax.legend(), fig.savefig(OUT / f"{name}_memory.png", dpi=100)
    if "recall" in res:
        fig, ax = plt.subplots()
        for r in res["recall"]:
            ks = [1, 5, 10, 20, 50]
            ax.plot(ks, [r[f"recall@{k}"] for k in ks], "o-", label=f"{r['encoder']} rerank={r['rerank']}")
        ax.axhline(1.0, color="k", lw=0.5, label="exact")
        ax.set_xlabel("k"), ax.set_ylabel("recall@k (held-out queries)"), ax.legend(), fig.savefig(OUT / f"{name}_recall.png", dpi=100)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        return _step_child(int(sys.argv[2]), bool(int(sys.argv[3])))
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["memory", "recall", "latency"])
    ap.add_argument("-i", "--index")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    res = {"memory": lambda: memory(a.quick), "recall": lambda: recall(a.index, a.quick),
           "latency": lambda: latency(a.quick)}[a.what]()
    OUT.mkdir(exist_ok=True)
    (OUT / f"train_{a.what}.json").write_text(json.dumps(res, indent=1))
    plot(res, f"train_{a.what}")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
