"""Training the M model from the catalog's seqpare graph (``gidx train``).

Graph: nodes = records, edge weight = seqpare S (symmetrised by max, self
pairs dropped). ``N(a)`` = a's *positive neighbourhood* = {b : S(a,b) >= pos_threshold}.

Negatives are conservative: x is a negative for anchor a only if
S(a, x) <= neg_max **and** x lies in no neighbourhood overlapping a's, i.e.
x not in N(a) and x not in N(b) for any b in N(a) (a neighbour's neighbour is
never called negative). Everything else is ignored for that anchor.

A batch is a series of sub-graphs: ``seeds_per_batch`` random seed nodes, each
with up to ``pos_per_seed`` of its positive neighbours; every node of the
batch is an anchor with its own positives/negatives inside the batch. Sets
larger than ``max_intervals`` are subsampled per step. Loss on cosine distance:
online batch-hard triplet (default), listwise (softmax of cosine over the batch against S as soft
targets) or contrastive; with triplet/contrastive an optional graded term
(``rank_weight``) orders a's positives by S.

Split: whole *groups* of records are held out (group = record name before the
first ``/``: a corpus family derived from one real file; a record without ``/``
is its own group). Held-out records are never in a batch; validation
recall@k is measured for held-out queries against exact seqpare over all
records, every epoch, with early stopping on it.

Reproducible: every random choice comes from ``(seed, epoch, step, rank)``.
Checkpoint each epoch to ``<index>/models/<id>/state.pt`` (temp + rename);
rerunning the same command (same config, hyper-parameters and data version)
resumes the unfinished model. At the end the best weights are exported
(``model.npz``, numpy inference), every record is re-embedded into a new
LanceDB table (encoders row ``model``), the model is marked ``ready``, and
it becomes the active set encoder only if it beats the position sketch on
the held-out queries.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) gradients are averaged with
DDP (gloo on CPU, nccl on GPU); rank 0 alone writes the catalog, checkpoints
and vectors, and decides early stopping.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import GidxError
from .evaluate import Truth, check_truth, evaluate, load_seqpare, sketch_encoder
from .model import ModelConfig, NumpyDeepSets, ModelEncoder, save_numpy, sequence_features

if TYPE_CHECKING:
    from .index import Index


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "triplet"  # triplet | listwise (softmax over the batch, S as soft targets) | contrastive
    temperature: float = 0.05  # listwise: cosine / temperature are the logits
    margin: float = 0.2
    pos_threshold: float = 0.2
    neg_max: float = 0.05
    rank_weight: float = 0.5
    rank_delta: float = 0.05
    seeds_per_batch: int = 16
    pos_per_seed: int = 3
    steps_per_epoch: int = 40
    epochs: int = 20
    patience: int = 4
    lr: float = 3e-2
    max_intervals: int = 4096
    val_fraction: float = 0.15
    val_within: float = 0.0  # also hold out this fraction of the records of every training family
    val_k: int = 20
    seed: int = 0
    name: str = "M"

    def __post_init__(self) -> None:
        if self.loss not in ("listwise", "triplet", "contrastive"):
            raise GidxError(f"--loss must be listwise, triplet or contrastive, not {self.loss!r}")


# ---- graph and sampler ------------------------------------------------------------------


@dataclass
class Graph:
    """Symmetrised seqpare graph over record ids."""

    s: dict[int, dict[int, float]]
    pos_threshold: float
    neg_max: float
    _blocked: dict[int, set] = field(default_factory=dict, repr=False)

    @classmethod
    def from_arrays(cls, q, t, s, pos_threshold: float, neg_max: float) -> "Graph":
        adj: dict[int, dict[int, float]] = {}
        for a, b, v in zip(q.tolist(), t.tolist(), s.tolist()):
            if a == b or v <= 0:
                continue
            for x, y in ((a, b), (b, a)):
                d = adj.setdefault(x, {})
                if v > d.get(y, 0.0):
                    d[y] = v
        return cls(adj, pos_threshold, neg_max)

    def S(self, a: int, b: int) -> float:
        return 1.0 if a == b else self.s.get(a, {}).get(b, 0.0)

    def neighbourhood(self, a: int) -> set[int]:
        return {b for b, v in self.s.get(a, {}).items() if v >= self.pos_threshold}

    def blocked(self, a: int) -> set[int]:
        """Nodes that may never be a negative for anchor a."""
        if a not in self._blocked:
            nb = self.neighbourhood(a)
            out = {a} | nb | {b for b, v in self.s.get(a, {}).items() if v > self.neg_max}
            for b in nb:
                out |= self.neighbourhood(b)
            self._blocked[a] = out
        return self._blocked[a]

    def masks(self, nodes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(S matrix, positive mask, negative mask) for the nodes of a batch (row = anchor)."""
        n = len(nodes)
        S = np.array([[self.S(a, b) for b in nodes] for a in nodes], dtype=np.float64)
        pos = (S >= self.pos_threshold) & ~np.eye(n, dtype=bool)
        neg = np.array([[b not in self.blocked(a) for b in nodes] for a in nodes], dtype=bool)
        return S, pos, neg


def sample_batch(graph: Graph, train: list[int], rng, seeds: int, per_seed: int) -> list[int]:
    """A batch = union of sub-graphs: seed nodes with some of their positive neighbours (training nodes only)."""
    trainset = set(train)
    eligible = [a for a in train if graph.neighbourhood(a) & trainset] or train
    out: list[int] = []
    seen = set()
    for a in rng.choice(eligible, min(seeds, len(eligible)), replace=False).tolist():
        nb = sorted(graph.neighbourhood(a) & trainset)
        pick = rng.choice(nb, min(per_seed, len(nb)), replace=False).tolist() if nb else []
        for x in [a, *pick]:
            if x not in seen:
                seen.add(x)
                out.append(x)
    return out


def split_records(names: dict[int, str], val_fraction: float, seed: int,
                  within: float = 0.0) -> tuple[list[int], list[int]]:
    """(train ids, held-out ids): whole groups (name before the first '/') are held out, and with
    ``within`` > 0 also that fraction of the records of every other group (relatives stay in training)."""
    groups: dict[str, list[int]] = {}
    for r, nm in sorted(names.items()):
        groups.setdefault(nm.split("/", 1)[0] if "/" in nm else nm, []).append(r)
    keys = sorted(groups)
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    n_val = max(1, int(round(val_fraction * len(keys)))) if len(keys) > 1 else 0
    held = sorted(r for k in keys[:n_val] for r in groups[k])
    train = sorted(r for k in keys[n_val:] for r in groups[k])
    if within > 0:
        out = {r for k in keys[n_val:] for r in groups[k][1:] if rng.random() < within}  # keep each group's first
        held, train = sorted(set(held) | out), [r for r in train if r not in out]
    return train, held


# ---- losses -----------------------------------------------------------------------------


def batch_loss(emb, S: np.ndarray, pos: np.ndarray, neg: np.ndarray, cfg: TrainConfig):
    import torch

    if cfg.loss == "listwise":  # cross-entropy of softmax(cos / T) over the batch against S / sum(S), per anchor
        St = torch.from_numpy(S).float().clone()
        St.fill_diagonal_(0)
        tot = St.sum(1)
        ok = tot > 0
        if not ok.any():
            return (emb * 0).sum(), 0
        logits = (emb @ emb.T) / cfg.temperature
        logits = logits.masked_fill(torch.eye(len(S), dtype=torch.bool), -1e9)
        logp = torch.log_softmax(logits, dim=1)
        loss = -((St / tot.clamp_min(1e-12)[:, None]) * logp).sum(1)[ok].mean()
        return loss, int(ok.sum())
    d = 1.0 - emb @ emb.T  # cosine distance
    P, N = torch.from_numpy(pos), torch.from_numpy(neg)
    anchors = P.any(1) & N.any(1)
    if not anchors.any():
        return (emb * 0).sum(), 0
    if cfg.loss == "triplet":
        d_ap = torch.where(P, d, torch.full_like(d, -1e9)).max(1).values
        d_an = torch.where(N, d, torch.full_like(d, 1e9)).min(1).values
        loss = torch.relu(d_ap - d_an + cfg.margin)[anchors].mean()
    else:
        lp = (d * P).sum() / P.sum().clamp_min(1)
        ln = (torch.relu(cfg.margin * 2 - d) * N).sum() / N.sum().clamp_min(1)
        loss = lp + ln
    if cfg.rank_weight > 0:  # graded: a's closer neighbours (by S) must be closer in embedding
        St = torch.from_numpy(S)
        more = (St[:, :, None] > St[:, None, :] + cfg.rank_delta) & (St[:, :, None] > 0) & ~torch.eye(len(S), dtype=torch.bool)[:, :, None]
        more &= ~torch.eye(len(S), dtype=torch.bool)[:, None, :]
        if more.any():
            viol = torch.relu(d[:, :, None] - d[:, None, :] + cfg.margin * 0.5)
            loss = loss + cfg.rank_weight * viol[more].mean()
    return loss, int(anchors.sum())


# ---- data -------------------------------------------------------------------------------


class Records:
    """Intervals and sequence features of records, loaded once, in memory."""

    def __init__(self, index: "Index", ids: list[int], mcfg: ModelConfig, progress=None):
        from .truth import record_sets

        self.sets = {}
        self.seq = {}
        genome = index.genome if mcfg.use_seq else None
        for lo in range(0, len(ids), 256):
            part = record_sets(index, ids[lo : lo + 256])
            for r, s in part.items():
                self.sets[r] = s
                self.seq[r] = sequence_features(mcfg, genome, s, index).astype(np.float32)
            if progress:
                progress(min(lo + 256, len(ids)), len(ids), "loading records")

    def item(self, r: int, rng=None, cap: int | None = None):
        s, q = self.sets[r], self.seq[r]
        if rng is not None and cap and len(s) > cap:
            keep = np.sort(rng.choice(len(s), cap, replace=False))
            return s.chrom[keep], s.start[keep], s.end[keep], q[keep]
        return s.chrom, s.start, s.end, q


def embed_all(net: NumpyDeepSets, recs: Records, ids: list[int]) -> np.ndarray:
    out = np.zeros((len(ids), net.cfg.dim), dtype=np.float32)
    for j, r in enumerate(ids):
        out[j] = net.embed_arrays(*recs.item(r))
    return out


# ---- the training run -------------------------------------------------------------------


@dataclass
class TrainResult:
    model_id: int
    epochs: int
    best_epoch: int
    metrics: dict
    activated: bool
    resumed_from: int  # epochs already done when this run started
    message: str
    history: list = field(default_factory=list)


def _dist():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None, 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist, dist.get_rank(), dist.get_world_size()


def _bcast(dist, obj):
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _digest(d: dict) -> str:
    return json.dumps(d, sort_keys=True)


def train(index: "Index", mcfg: ModelConfig = ModelConfig(), tcfg: TrainConfig = TrainConfig(), *,
          fresh: bool = False, log: Callable[[str], None] | None = None,
          progress: Callable[[int, int, str], None] | None = None,
          stop_after_epochs: int | None = None) -> TrainResult:
    """Train, checkpoint, re-embed, maybe activate. ``stop_after_epochs`` (tests) simulates a kill."""
    import torch
    from sqlalchemy import text

    from .index import _now

    dist, rank, world = _dist()
    log = log if (log and rank == 0) else (lambda m: None)
    torch.manual_seed(tcfg.seed)
    # small per-set matmuls: one thread per rank is fastest (and immune to oversubscription)
    torch.set_num_threads(int(os.environ.get("GIDX_TORCH_THREADS", "1")))

    # -- read everything (all ranks, read-only, before any write) --
    ids, data_version = check_truth(index)
    with index.catalog.connect() as conn:
        names = dict(conn.execute(text("select id, name from records")).fetchall())
    graph = Graph.from_arrays(*load_seqpare(index), tcfg.pos_threshold, tcfg.neg_max)
    truth = Truth.from_arrays(*load_seqpare(index))
    train_ids, held = split_records({int(k): v for k, v in names.items()}, tcfg.val_fraction, tcfg.seed,
                                     tcfg.val_within)
    if not train_ids or not held:
        raise GidxError("need at least two record groups to train (one is held out for validation)")
    if not any(graph.neighbourhood(a) & set(train_ids) for a in train_ids):
        raise GidxError(f"no training record has a neighbour with seqpare S >= {tcfg.pos_threshold} "
                        "(lower --pos-threshold or ingest related files)")
    recs = Records(index, ids, mcfg, progress if rank == 0 else None)
    val_q = [q for q in held if q in truth.nbrs]

    # -- sketch baseline on the same held-out queries --
    sid, sk = sketch_encoder(index)
    sk_mat = sk.embed([recs.sets[r] for r in ids], index.genome.lengths)
    base = evaluate(np.asarray(ids), sk_mat, val_q, truth, (tcfg.val_k,))
    base_recall = base[f"recall@{tcfg.val_k}"]
    log(f"{len(ids)} records ({len(train_ids)} train, {len(held)} held out, {len(val_q)} validation queries); "
        f"sketch recall@{tcfg.val_k} = {base_recall:.4f}")

    # -- register or resume (rank 0 writes) --
    hp = {**asdict(tcfg), "world_size": world}
    hp_key = _digest({k: v for k, v in hp.items() if k != "world_size"})
    state = None
    model_id = None
    if rank == 0:
        with index.catalog.connect() as conn:
            rows = conn.execute(text("select id, config, hyperparams, checkpoint from models where status = 'training' "
                                     "and data_version = :d order by id desc"), dict(d=data_version)).fetchall()
        for mid, c, h, ck in rows if not fresh else []:
            hh = json.loads(h)
            hh.pop("world_size", None)
            if json.loads(c) == mcfg.to_dict() and _digest(hh) == hp_key:
                model_id = int(mid)
                p = index.path / ck / "state.pt"
                if p.exists():
                    state = torch.load(p, weights_only=False)
                break
        if model_id is None:
            with index.catalog.connect(write=True) as conn:
                model_id = int(conn.execute(text(
                    "insert into models (name, status, created_at, config, hyperparams, data_version) "
                    "values (:n, 'training', :t, :c, :h, :d) returning id"),
                    dict(n=tcfg.name, t=_now(), c=json.dumps(mcfg.to_dict()), h=json.dumps(hp),
                         d=data_version)).scalar())
                conn.execute(text("update models set checkpoint = :c where id = :m"),
                             dict(c=f"models/{model_id}", m=model_id))
        mdir = index.path / "models" / str(model_id)
        mdir.mkdir(parents=True, exist_ok=True)
        (mdir / "split.json").write_text(json.dumps({"train": train_ids, "heldout": held}))
    model_id = _bcast(dist, model_id)
    state = _bcast(dist, state)
    mdir = index.path / "models" / str(model_id)

    from .model import build_torch_model

    model = build_torch_model(mcfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=tcfg.lr)
    start_epoch, best, best_epoch, bad, history = 0, -1.0, -1, 0, []
    best_w = model.export()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start_epoch, best, best_epoch, bad, history = (state["epoch"], state["best"], state["best_epoch"],
                                                       state["bad"], state["history"])
        best_w = state["best_w"]
        log(f"resuming model #{model_id} after epoch {start_epoch}")
    ddp = model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model)

    def validate() -> float:
        net = NumpyDeepSets(mcfg, model.export())
        mat = embed_all(net, recs, ids)
        return evaluate(np.asarray(ids), mat, val_q, truth, (tcfg.val_k,))[f"recall@{tcfg.val_k}"]

    if state is None and rank == 0:
        r0 = validate()
        history.append({"epoch": 0, "loss": None, "val_recall": r0})
        best, best_epoch = r0, 0
        log(f"epoch 0 (untrained): val recall@{tcfg.val_k} {r0:.4f}")
    steps = -(-tcfg.steps_per_epoch // world)
    epoch = start_epoch
    stop = start_epoch >= tcfg.epochs or (state is not None and bad >= tcfg.patience)
    while not stop:
        epoch += 1
        t0 = time.perf_counter()
        ddp.train()
        losses = []
        for step in range(steps):
            rng = np.random.default_rng([tcfg.seed, epoch, step, rank])
            nodes = sample_batch(graph, train_ids, rng, tcfg.seeds_per_batch, tcfg.pos_per_seed)
            S, P, N = graph.masks(nodes)
            items = [recs.item(r, rng, tcfg.max_intervals) for r in nodes]
            emb = ddp(items)
            loss, _ = batch_loss(emb, S, P, N, tcfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if progress and rank == 0:
                progress(step + 1, steps, f"epoch {epoch} loss {np.mean(losses):.4f}")
        decision = None
        if rank == 0:
            r = validate()
            improved = r > best
            if improved:
                best, best_epoch, bad, best_w = r, epoch, 0, model.export()
            else:
                bad += 1
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_recall": r,
                            "seconds": round(time.perf_counter() - t0, 2)})
            log(f"epoch {epoch}: loss {np.mean(losses):.4f}  val recall@{tcfg.val_k} {r:.4f} "
                f"(best {best:.4f} @ {best_epoch}; sketch {base_recall:.4f})")
            ck = {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "best": best,
                  "best_epoch": best_epoch, "bad": bad, "history": history, "best_w": best_w}
            tmp = mdir / "state.pt.tmp"
            torch.save(ck, tmp)
            os.replace(tmp, mdir / "state.pt")
            with index.catalog.connect(write=True) as conn:
                conn.execute(text("update models set metrics = :m where id = :i"),
                             dict(m=json.dumps({"history": history, "sketch_val_recall": base_recall}), i=model_id))
            decision = bad >= tcfg.patience or epoch >= tcfg.epochs
            if stop_after_epochs is not None and epoch - start_epoch >= stop_after_epochs:
                decision = "killed"
        decision = _bcast(dist, decision)
        if decision == "killed":
            raise KeyboardInterrupt("simulated kill")
        stop = bool(decision)

    activated, message = False, ""
    metrics = {"val_recall": best, "best_epoch": best_epoch, "sketch_val_recall": base_recall, "val_k": tcfg.val_k,
               "val_queries": len(val_q), "history": history}
    if rank == 0:
        save_numpy(mdir / "model.npz", mcfg, best_w)
        activated, message = finish(index, model_id, mcfg, metrics, progress)
        log(message)
    if dist is not None:
        dist.barrier()
    return TrainResult(model_id, epoch, best_epoch, metrics, activated, start_epoch, message, history)


def _weights_sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def model_encoder(index: "Index", model_id: int) -> ModelEncoder:
    from .model import load_set_encoder

    rel = f"models/{model_id}/model.npz"
    params = {"model_id": int(model_id), "weights": rel, "sha256": _weights_sha(index.path / rel)}
    return load_set_encoder(index, params)


def reembed(index: "Index", eid: int, enc, record_ids: list[int], progress=None, batch: int = 256) -> None:
    from .truth import record_sets

    table = index.vector_table(eid, enc)
    for lo in range(0, len(record_ids), batch):
        part = record_ids[lo : lo + batch]
        sets = record_sets(index, part)
        index.vectors.add(table, np.asarray(part), enc.embed([sets[r] for r in part], index.genome.lengths))
        if progress:
            progress(min(lo + batch, len(record_ids)), len(record_ids), "re-embedding")


def finish(index: "Index", model_id: int, mcfg: ModelConfig, metrics: dict, progress=None) -> tuple[bool, str]:
    """Re-embed every record with the model, mark it ready, activate it if it beats the sketch."""
    from sqlalchemy import text

    from .index import Index, _now

    enc = model_encoder(index, model_id)
    with index.catalog.connect(write=True) as conn:
        eid = Index._register_encoder(conn, "model", "set", enc.params(), enc.dim)
    index.vectors.drop(index.vector_table(eid, enc))  # a resumed finish starts the table over
    reembed(index, eid, enc, sorted(index.record_ids()), progress)
    beats = metrics["val_recall"] > metrics["sketch_val_recall"]
    metrics = {**metrics, "beats_sketch": bool(beats), "activated": bool(beats)}
    with index.catalog.connect(write=True) as conn:
        conn.execute(text("update models set status = 'ready', finished_at = :t, metrics = :m, set_encoder_id = :e "
                          "where id = :i"), dict(t=_now(), m=json.dumps(metrics), e=eid, i=model_id))
        if beats:
            conn.execute(text("update settings set value = :e where key = 'set_encoder_id'"), dict(e=str(eid)))
    k = metrics["val_k"]
    if beats:
        return True, (f"model #{model_id} is active: held-out recall@{k} {metrics['val_recall']:.4f} "
                      f"vs sketch {metrics['sketch_val_recall']:.4f}")
    return False, (f"model #{model_id} is registered but NOT active: held-out recall@{k} "
                   f"{metrics['val_recall']:.4f} does not beat the position sketch's "
                   f"{metrics['sketch_val_recall']:.4f} (activate anyway: gidx models activate {model_id})")


def list_models(index: "Index"):
    with index.catalog.connect() as conn:
        tbl = index.catalog.raw(conn).sql(
            "select m.id, m.name, m.status, m.created_at, m.finished_at, m.set_encoder_id, "
            "(select value from settings where key = 'set_encoder_id') = cast(m.set_encoder_id as varchar) as active, "
            "json_extract(m.metrics, '$.val_recall')::double as val_recall, "
            "json_extract(m.metrics, '$.sketch_val_recall')::double as sketch_val_recall, "
            "json_extract_string(m.config, '$.features') as features, m.data_version "
            "from models m order by m.id").to_arrow_table()
    return tbl


def activate(index: "Index", model_id: int | str, progress=None) -> str:
    """Make a finished model (or ``sketch``) the active set encoder; embeds records it lacks first."""
    from sqlalchemy import text

    if str(model_id) == "sketch":
        sid, _ = sketch_encoder(index)
        with index.catalog.connect(write=True) as conn:
            conn.execute(text("update settings set value = :e where key = 'set_encoder_id'"), dict(e=str(sid)))
        return f"position sketch #{sid} is active"
    with index.catalog.connect() as conn:
        row = conn.execute(text("select status, set_encoder_id from models where id = :i"), dict(i=int(model_id))).first()
    if row is None:
        raise GidxError(f"no model #{model_id} (see: gidx models list)")
    status, eid = row
    if status != "ready" or eid is None:
        raise GidxError(f"model #{model_id} is {status}: only a model whose re-embedding finished can be activated "
                        "(rerun gidx train to finish it)")
    enc = model_encoder(index, int(model_id))
    have = {int(r) for r in index.vectors.record_ids(index.vector_table(int(eid), enc))}
    missing = sorted(index.record_ids() - have)
    if missing:
        reembed(index, int(eid), enc, missing, progress)
    with index.catalog.connect(write=True) as conn:
        conn.execute(text("update settings set value = :e where key = 'set_encoder_id'"), dict(e=str(eid)))
    return f"model #{model_id} is active (encoder #{eid})" + (f"; embedded {len(missing)} new records" if missing else "")
