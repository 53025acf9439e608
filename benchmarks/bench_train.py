"""Benchmarks of the M model (issue 7).

  .venv/bin/python benchmarks/bench_train.py memory  [--quick] [--mmap-threshold BYTES]   # peak memory of a training step vs set size
  .venv/bin/python benchmarks/bench_train.py recall -i IDX [--quick]   # recall@k: exact / active model / sketch
  .venv/bin/python benchmarks/bench_train.py latency -i IDX100 -i IDX1000 -i IDX10000 --queries CORPUS_DIR \
      [-n 50] [--cli-runs 10] [--encoders sketch,1]   # query latency vs records (in-process, CLI)

Raw JSON under benchmarks/out/, PNGs under benchmarks/figures/ (see benchmarks/RESULTS.md section 5).
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
FIG = Path(__file__).resolve().parent / "figures"
REPO = Path(__file__).resolve().parent.parent


def _step_child(n: int, checkpointed: bool, features: str) -> None:
    """One training step (forward + triplet loss + backward + Adam) on a batch of 4 sets of n intervals.

    Peak RSS growth (``ru_maxrss``, which covers numpy and the torch CPU allocator alike) from just before the
    forward (model, optimizer and the batch's inputs already built) to after ``opt.step()``; a fresh process per
    point. ``features=both`` feeds random sequence features (no genome reads) so the chunked phi MLP runs.
    """
    import torch

    torch.set_num_threads(1)
    from gidx.model import ModelConfig, build_torch_model
    from gidx.train import TrainConfig, batch_loss

    cfg = ModelConfig(features=features)
    model = build_torch_model(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    rng = np.random.default_rng(0)
    items = []
    for _ in range(4):
        c = rng.integers(0, 22, n).astype(np.int32)
        s = rng.integers(0, 50_000_000, n)
        ln = np.exp(rng.uniform(np.log(50), np.log(5_000), n)).astype(np.int64)  # log-uniform 50 bp .. 5 kb
        # float32 directly: a float64 temporary would raise ru_maxrss before ``base`` and hide the step's growth
        seq = rng.standard_normal((n, cfg.seq_in if cfg.use_seq else 0), dtype=np.float32)
        items.append((c, s, s + ln, seq))
    S = np.array([[1, .5, 0, 0], [.5, 1, 0, 0], [0, 0, 1, .5], [0, 0, .5, 1]], float)
    P, N = (S >= .2) & ~np.eye(4, dtype=bool), S == 0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    emb = model(items, checkpointed=checkpointed)
    loss, _ = batch_loss(emb, S, P, N, TrainConfig())
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "features": features, "checkpointed": checkpointed, "rss_before_kb": base,
                      "peak_kb": peak, "step_delta_mb": (peak - base) / 1024, "step_s": dt}))


def memory(quick: bool, mmap_threshold: int | None = None) -> dict:
    """``mmap_threshold``: fix glibc's mmap threshold in the children (``MALLOC_MMAP_THRESHOLD_``); by default it
    adapts upwards, so freed per-chunk buffers stay in the heap and RSS can grow with the number of chunks even
    though no tensor outlives its chunk."""
    sizes = [100, 1_000, 10_000, 100_000] if not quick else [100, 10_000, 100_000]
    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
    # position: per-level bucket sums over chunks of intervals in numpy, learned level weights on those
    for feats, ck in (("position", True), ("both", True), ("both", False)):
        for n in sizes:
            p = subprocess.run([sys.executable, __file__, "_step", str(n), str(int(ck)), feats], capture_output=True,
                               text=True, env=env)
            rows.append({**json.loads(p.stdout.strip().splitlines()[-1]), "load": os.getloadavg(),
                         "malloc_mmap_threshold": mmap_threshold})
            print(rows[-1], file=sys.stderr)
    return {"memory": rows}


def recall(index: str, quick: bool) -> dict:
    from gidx.evaluate import eval_index
    from gidx.index import Index

    rows, qs = eval_index(Index.open(index), ks=(1, 5, 10, 20, 50), rerank=100)  # = gidx eval -k 50 --rerank 100
    return {"recall": rows, "queries": len(qs)}


def _query_files(folder: str, n: int) -> list[Path]:
    files = sorted(x for x in Path(folder).rglob("*") if x.is_file() and ".bed" in x.name.lower())
    step = max(1, len(files) // n)
    return files[::step][:n]


def _pct(ts: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(ts, 50)), "p95_ms": float(np.percentile(ts, 95)), "n": len(ts)}


def latency(indexes: list[str], queries: str, n: int, cli_runs: int, encoders: list[str]) -> dict:
    """Query latency vs number of records, per set encoder (``sketch`` or a model id), in-process and via the CLI.

    In-process: one warm ``Index`` (3 warm-up queries), ``Index.query(q, k=20, ...)`` per query file:
    rerank=None save=False (embedding + vector search), rerank=200 save=False (+ exact re-rank),
    rerank=None save=True (+ catalog write). CLI: ``gidx query -i IDX FILE -k 20 --no-rerank`` and with the default
    re-rank, as subprocesses (interpreter start + imports + open + query + save + print), ``cli_runs`` each.
    The encoder is switched with ``gidx.train.activate`` (this writes the index's settings).
    """
    from gidx.bed import read_bed
    from gidx.index import Index
    from gidx.train import activate

    files = _query_files(queries, n)
    gidx_bin = str(Path(sys.executable).with_name("gidx"))
    out = []
    for path in indexes:
        for enc in encoders:
            activate(Index.open(path), enc)
            idx = Index.open(path)
            recs = int(idx.info()["records"])
            g, al = idx.genome, idx.aliases()
            qsets = [read_bed(f, g, aliases=al, skip_unknown_chroms=True).intervals for f in files]
            for q in qsets[:3]:
                idx.query(q, k=20, rerank=200, save=False)
            row = {"records": recs, "encoder": enc, "encoder_name": idx.set_encoder()[1].name,
                   "query_intervals_median": int(np.median([len(q) for q in qsets])), "load_before": os.getloadavg()}
            for label, kw in (("norerank", dict(rerank=None, save=False)), ("rerank200", dict(rerank=200, save=False)),
                              ("norerank_save", dict(rerank=None, save=True))):
                ts = []
                for q in qsets:
                    t0 = time.perf_counter()
                    idx.query(q, k=20, **kw)
                    ts.append((time.perf_counter() - t0) * 1000)
                row[label] = _pct(ts)
            # embedding alone (the encoder's share of the no-rerank time)
            ts, encoder = [], idx.set_encoder()[1]
            for q in qsets:
                t0 = time.perf_counter()
                encoder.embed([q], g.lengths)
                ts.append((time.perf_counter() - t0) * 1000)
            row["embed_only"] = _pct(ts)
            for label, extra in (("cli_norerank", ["--no-rerank"]), ("cli_rerank200", [])):
                ts = []
                for f in files[:cli_runs]:
                    t0 = time.perf_counter()
                    subprocess.run([gidx_bin, "query", "-i", path, str(f), "-k", "20", "--quiet", *extra],
                                   check=True, capture_output=True)
                    ts.append((time.perf_counter() - t0) * 1000)
                row[label] = _pct(ts)
            row["load_after"] = os.getloadavg()
            out.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return {"latency": out}


def plot(res: dict, name: str) -> None:
    """PNGs under benchmarks/figures/ (referenced from RESULTS.md)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIG.mkdir(exist_ok=True)
    if "memory" in res:
        fig, ax = plt.subplots(figsize=(6, 4))
        for feats, ck in (("position", True), ("both", True), ("both", False)):
            r = [x for x in res["memory"] if x["checkpointed"] == ck and x["features"] == feats]
            lab = "position (default M)" if feats == "position" else f"position + sequence phi, checkpointed={ck}"
            ax.plot([x["n"] for x in r], [x["step_delta_mb"] for x in r], "o-", label=lab)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("intervals per set (batch of 4 sets)"), ax.set_ylabel("peak RSS growth during the step (MB)")
        ax.set_title("M: memory of one training step (no subsampling)"), ax.legend(fontsize=8)
        fig.tight_layout(), fig.savefig(FIG / "train_step_memory.png", dpi=110)
    if "recall" in res:
        ks = [k for k in (1, 5, 10, 20, 50) if f"recall@{k}" in res["recall"][0]]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(ks, [1.0] * len(ks), "k--", label="exact seqpare (= truth)")
        for r in res["recall"]:
            enc = "trained M" if r["encoder"].startswith("model") else "position sketch"
            ax.plot(ks, [r[f"recall@{k}"] for k in ks], "o-" if r["rerank"] else "s:",
                    label=f"{enc}" + (f", re-rank {r['rerank']}" if r["rerank"] else ", no re-rank"))
        ax.set_xscale("log"), ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k"), ax.set_ylabel("recall@k")
        ax.set_title(f"recall@k on {res['queries']} held-out query records (1000-record hg19 corpus)", fontsize=9)
        ax.legend(fontsize=8), fig.tight_layout(), fig.savefig(FIG / "recall_at_k.png", dpi=110)
    if "latency" in res:
        fig, axs = plt.subplots(1, 2, figsize=(10, 4))
        for ax, keys in zip(axs, (("norerank", "rerank200", "norerank_save"), ("cli_norerank", "cli_rerank200"))):
            for enc in sorted({r["encoder"] for r in res["latency"]}):
                rows = sorted((r for r in res["latency"] if r["encoder"] == enc), key=lambda r: r["records"])
                for key in keys:
                    ax.plot([r["records"] for r in rows], [r[key]["p95_ms"] for r in rows], "o-",
                            label=f"{'sketch' if enc == 'sketch' else 'M'} {key} p95")
            ax.set_xscale("log"), ax.set_xlabel("records"), ax.set_ylabel("ms"), ax.legend(fontsize=7)
        axs[0].axhline(20, color="r", lw=0.8), axs[0].set_title("in-process Index.query, k=20 (red: 20 ms target)")
        axs[1].set_title("gidx query CLI, end to end")
        fig.tight_layout(), fig.savefig(FIG / "query_latency.png", dpi=110)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_step":
        return _step_child(int(sys.argv[2]), bool(int(sys.argv[3])), sys.argv[4])
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["memory", "recall", "latency"])
    ap.add_argument("-i", "--index", action="append", help="index (latency: repeatable, one per record count)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mmap-threshold", type=int, help="memory: fixed glibc mmap threshold in bytes for the step processes")
    ap.add_argument("--queries", help="latency: folder of query BED files (e.g. a gidx corpus)")
    ap.add_argument("-n", type=int, default=50, help="latency: in-process queries per setting")
    ap.add_argument("--cli-runs", type=int, default=10, help="latency: CLI runs per setting")
    ap.add_argument("--encoders", default="sketch,1", help="latency: set encoders to activate in turn (sketch, model ids)")
    a = ap.parse_args()
    res = {"memory": lambda: memory(a.quick, a.mmap_threshold), "recall": lambda: recall(a.index[0], a.quick),
           "latency": lambda: latency(a.index, a.queries, a.n, a.cli_runs, a.encoders.split(","))}[a.what]()
    OUT.mkdir(exist_ok=True)
    tag = f"_mmap{a.mmap_threshold}" if a.what == "memory" and a.mmap_threshold else ""
    (OUT / f"train_{a.what}{tag}.json").write_text(json.dumps(res, indent=1))
    if not tag:
        plot(res, f"train_{a.what}")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
