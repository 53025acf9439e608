"""The M model: a Deep Sets set encoder trained to make cosine search agree with seqpare.

``set_emb = rho(mean_i phi(x_i))`` with, per interval i,
``x_i = [sequence features of i || position features of i]``; every interval
counts once (seqpare counts intervals), and the mean makes the model
permutation invariant.

Position features (what the position sketch knows, made learnable): at each
resolution r (default 1 kb, 10 kb, 100 kb, 1 Mb) the genome bins holding the
interval's start, midpoint and last base are hashed (splitmix64, as the
sketch) into ``buckets`` ids; each id has a learned ``pos_dim`` vector (an
embedding bag, weight 1/3 each). Initialised Gaussian, the mean over a set of
these vectors is a random projection of the set's multi-resolution bin
histogram -- the position sketch up to projection noise -- so training starts
from the sketch and refines it.

Sequence features are pluggable (:func:`sequence_features`): ``kmer`` =
hashed 12-mer counts of the interval's central ``seq_window`` bases (the
interval's own sequence, from the index genome), sign-sketched to
``seq_in`` dims; ``memo`` = interval embeddings composed from the tile memo
(``gidx.embed``) once that module exists. ``features`` selects
``position`` / ``sequence`` / ``both`` (the ablation).

phi(z) = z + MLP(z) (last layer zero-initialised, so phi starts as identity);
rho = per-block L2 normalisation (one block per resolution, one for the
sequence part) with learned block gains, a linear map initialised to the
identity, and a final L2 normalisation.

Training memory is flat in set size: :meth:`DeepSets.forward_set` runs phi
over chunks of ``chunk`` intervals under gradient checkpointing and keeps
only the running sum. Inference needs no torch at all:
:class:`NumpyDeepSets` evaluates the same function from the exported weights
(``model.npz``), so a query with a trained model pays numpy, not torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .intervals import IntervalSet
from .sketch import splitmix64

if TYPE_CHECKING:
    from .genome import Genome
    from .index import Index

SQRT_2_OVER_PI = 0.7978845608028654


@dataclass(frozen=True)
class ModelConfig:
    features: str = "position"  # position | sequence | both (sequence needs genome reads: slow on synthetic genomes)
    resolutions: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    buckets: int = 8192  # hashed bin ids per resolution
    pos_dim: int = 48  # embedding dims per resolution
    sequence: str = "kmer"  # kmer | memo
    seq_in: int = 64  # sequence feature dims
    seq_dim: int = 32  # projected sequence dims
    seq_window: int = 128  # central bases of each interval read for kmer features
    kmer: int = 12
    hidden: int = 128
    learn_bins: bool = False  # train the per-bin vectors too (memorises seen loci; does not transfer)
    learn: str = "gains,mlp"  # which locus-agnostic parts train: gains (per-block weights), mlp (phi), out (rho's linear map)
    chunk: int = 4096  # intervals per checkpointed phi chunk
    seed: int = 0

    def __post_init__(self) -> None:
        if self.features not in ("position", "sequence", "both"):
            raise ValueError(f"features must be position, sequence or both, not {self.features!r}")
        object.__setattr__(self, "resolutions", tuple(int(r) for r in self.resolutions))

    @property
    def use_pos(self) -> bool:
        return self.features in ("position", "both")

    @property
    def use_seq(self) -> bool:
        return self.features in ("sequence", "both")

    @property
    def blocks(self) -> list[int]:
        return ([self.pos_dim] * len(self.resolutions) if self.use_pos else []) + ([self.seq_dim] if self.use_seq else [])

    @property
    def dim(self) -> int:
        return sum(self.blocks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["resolutions"] = list(self.resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "resolutions" in known:
            known["resolutions"] = tuple(known["resolutions"])
        return cls(**known)


# ---- per-interval inputs (numpy; shared by training and inference) ---------------


def position_ids(cfg: ModelConfig, chrom: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(n, R, 3) int64 row ids into the position table: start, midpoint, last-base bins per resolution."""
    chrom = np.asarray(chrom).astype(np.uint64)
    start = np.asarray(start, dtype=np.int64)
    last = np.maximum(np.asarray(end, dtype=np.int64) - 1, start)
    mid = (start + last) // 2
    out = np.empty((len(start), len(cfg.resolutions), 3), dtype=np.int64)
    for level, res in enumerate(cfg.resolutions):
        salt = np.uint64((cfg.seed * 1_000_003 + level + 1) * 0x9E3779B1)
        for j, pos in enumerate((start, mid, last)):
            key = (chrom << np.uint64(36)) ^ (pos // res).astype(np.uint64)
            out[:, level, j] = (splitmix64(key ^ salt) % np.uint64(cfg.buckets)).astype(np.int64) + level * cfg.buckets
    return out


_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _i
    _CODE[ord(chr(_b).lower())] = _i


def kmer_features(genome: "Genome", s: IntervalSet, window: int, k: int, dims: int, seed: int = 0) -> np.ndarray:
    """Hashed k-mer counts of each interval's central ``window`` bases, sign-sketched, L2-normalised."""
    n = len(s)
    out = np.zeros((n, dims), dtype=np.float32)
    if n == 0:
        return out
    length = np.maximum(s.end - s.start, 0)
    w = np.minimum(length, window)
    lo = s.start + (length - w) // 2
    seqs = genome.fetch(s.chrom, lo, lo + w)
    buf = np.frombuffer("".join(seqs).encode(), dtype=np.uint8)
    if len(buf) < k:
        return out
    codes = _CODE[buf].astype(np.uint64)
    lens = np.fromiter((len(x) for x in seqs), dtype=np.int64, count=n)
    owner = np.repeat(np.arange(n), lens)
    pos_in = np.arange(len(buf)) - np.repeat(np.cumsum(lens) - lens, lens)
    m = len(buf) - k + 1
    key = np.zeros(m, dtype=np.uint64)
    bad = np.zeros(m, dtype=bool)
    for j in range(k):
        key = (key << np.uint64(2)) | (codes[j : j + m] & np.uint64(3))
        bad |= codes[j : j + m] == 4
    valid = ~bad & (pos_in[:m] + k <= lens[owner[:m]])
    key, own = key[valid], owner[:m][valid]
    h = splitmix64(key ^ np.uint64(0xA5A5_0000 + seed))
    bucket = (h % np.uint64(dims)).astype(np.int64)
    sign = np.where(h >> np.uint64(63), -1.0, 1.0)
    out = np.bincount(own * dims + bucket, weights=sign, minlength=n * dims).reshape(n, dims).astype(np.float32)
    nrm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, nrm, out=out, where=nrm > 0)


def sequence_features(cfg: ModelConfig, genome: "Genome | None", s: IntervalSet, index: "Index | None" = None) -> np.ndarray:
    """(n, seq_in) float32 sequence features of a set's intervals (the pluggable half of x_i)."""
    if not cfg.use_seq:
        return np.zeros((len(s), 0), dtype=np.float32)
    if cfg.sequence == "kmer":
        if genome is None:
            raise ValueError("kmer sequence features need the index genome")
        return kmer_features(genome, s, cfg.seq_window, cfg.kmer, cfg.seq_in, cfg.seed)
    if cfg.sequence == "memo":  # interval embeddings from the tile memo (gidx.embed), when available
        from .embed import interval_embeddings  # noqa: F401  (not in the tree yet)

        raise NotImplementedError("memo sequence features: wire gidx.embed.interval_embeddings here")
    raise ValueError(f"unknown sequence feature source {cfg.sequence!r}")


# ---- numpy inference (no torch) ----------------------------------------------------


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


class NumpyDeepSets:
    """The exported model: the same function as :class:`DeepSets`, in numpy."""

    def __init__(self, cfg: ModelConfig, weights: dict[str, np.ndarray]):
        self.cfg = cfg
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}

    @classmethod
    def load(cls, path: Path) -> "NumpyDeepSets":
        with np.load(path) as z:
            cfg = ModelConfig.from_dict(json.loads(str(z["__config__"])))
            return cls(cfg, {k: z[k] for k in z.files if k != "__config__"})

    def phi_sum(self, chrom, start, end, seq: np.ndarray) -> np.ndarray:
        cfg, w = self.cfg, self.w
        total = np.zeros(cfg.dim, dtype=np.float64)
        for lo in range(0, len(start), cfg.chunk):
            hi = lo + cfg.chunk
            parts = []
            if cfg.use_pos:
                ids = position_ids(cfg, chrom[lo:hi], start[lo:hi], end[lo:hi])
                parts.append(w["pos.weight"][ids].mean(axis=2).reshape(len(ids), -1))
            if cfg.use_seq:
                parts.append(seq[lo:hi] @ w["seq.weight"].T + w["seq.bias"])
            z = np.concatenate(parts, axis=1)
            h = _gelu(z @ w["mlp1.weight"].T + w["mlp1.bias"])
            total += (z + h @ w["mlp2.weight"].T + w["mlp2.bias"]).sum(axis=0)
        return total

    def rho(self, m: np.ndarray) -> np.ndarray:
        w, out, off = self.w, [], 0
        for j, d in enumerate(self.cfg.blocks):
            b = m[off : off + d]
            out.append(b / max(np.linalg.norm(b), 1e-12) * w["gain"][j])
            off += d
        v = np.concatenate(out) @ w["out.weight"].T + w["out.bias"]
        return v / max(np.linalg.norm(v), 1e-12)

    def embed_arrays(self, chrom, start, end, seq) -> np.ndarray:
        n = len(start)
        if n == 0:
            return np.zeros(self.cfg.dim, dtype=np.float32)
        return self.rho(self.phi_sum(chrom, start, end, seq) / n).astype(np.float32)


@dataclass
class ModelEncoder:
    """The SetEncoder of a trained model (``encoders`` row named ``model``)."""

    net: NumpyDeepSets
    model_params: dict
    genome: "Genome | None" = None
    name: str = "model"
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def dim(self) -> int:
        return self.net.cfg.dim

    def params(self) -> dict:
        return dict(self.model_params)

    def embed(self, sets: list[IntervalSet], chrom_lengths: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros((len(sets), self.dim), dtype=np.float32)
        for i, s in enumerate(sets):
            seq = sequence_features(self.net.cfg, self.genome, s)
            out[i] = self.net.embed_arrays(s.chrom, s.start, s.end, seq)
        return out


def load_set_encoder(index: "Index", params: dict) -> ModelEncoder:
    """The active trained set encoder, from its exported weights (numpy only: no torch import)."""
    from .errors import IndexStateError

    path = index.path / params["weights"]
    if not path.exists():
        raise IndexStateError(f"model #{params.get('model_id')}: weights {path} are missing")
    net = NumpyDeepSets.load(path)
    return ModelEncoder(net, params, index.genome if net.cfg.use_seq else None)


# ---- the trainable torch model --------------------------------------------------------


def build_torch_model(cfg: ModelConfig):
    """A :class:`DeepSets` torch module (imports torch: training and tests only)."""
    import torch
    from torch import nn
    from torch.utils.checkpoint import checkpoint

    class DeepSets(nn.Module):
        def __init__(self, cfg: ModelConfig):
            super().__init__()
            self.cfg = cfg
            g = torch.Generator().manual_seed(cfg.seed)
            D = cfg.dim
            if cfg.use_pos:
                self.pos = nn.Embedding(len(cfg.resolutions) * cfg.buckets, cfg.pos_dim)
                with torch.no_grad():
                    self.pos.weight.copy_(torch.randn(self.pos.weight.shape, generator=g) / cfg.pos_dim ** 0.5)
                self.pos.weight.requires_grad_(cfg.learn_bins)
            if cfg.use_seq:
                self.seq = nn.Linear(cfg.seq_in, cfg.seq_dim)
                with torch.no_grad():
                    self.seq.weight.copy_(torch.randn(self.seq.weight.shape, generator=g) / cfg.seq_in ** 0.5)
                    self.seq.bias.zero_()
            self.mlp1 = nn.Linear(D, cfg.hidden)
            self.mlp2 = nn.Linear(cfg.hidden, D)
            with torch.no_grad():
                self.mlp1.weight.copy_(torch.randn(self.mlp1.weight.shape, generator=g) / D ** 0.5)
                self.mlp1.bias.zero_()
                self.mlp2.weight.zero_()
                self.mlp2.bias.zero_()
            self.gain = nn.Parameter(torch.full((len(cfg.blocks),), 1.0 / len(cfg.blocks) ** 0.5))
            self.out = nn.Linear(D, D)
            with torch.no_grad():
                self.out.weight.copy_(torch.eye(D))
                self.out.bias.zero_()
            self.act = nn.GELU(approximate="tanh")
            parts = set(cfg.learn.split(",")) if cfg.learn else set()
            self.gain.requires_grad_("gains" in parts)
            for mod, key in ((self.mlp1, "mlp"), (self.mlp2, "mlp"), (self.out, "out")):
                for p in mod.parameters():
                    p.requires_grad_(key in parts)

        def _phi_sum(self, ids, seq):
            parts = []
            if self.cfg.use_pos:
                parts.append(self.pos(ids).mean(dim=2).flatten(1))
            if self.cfg.use_seq:
                parts.append(self.seq(seq))
            z = torch.cat(parts, dim=1)
            return (z + self.mlp2(self.act(self.mlp1(z)))).sum(dim=0)

        def forward_set(self, chrom, start, end, seq: np.ndarray | None, checkpointed: bool = True):
            """Embedding of one set (unit vector); phi over checkpointed chunks."""
            n = len(start)
            total = None
            for lo in range(0, n, self.cfg.chunk):
                hi = lo + self.cfg.chunk
                ids = torch.from_numpy(position_ids(self.cfg, chrom[lo:hi], start[lo:hi], end[lo:hi])) \
                    if self.cfg.use_pos else torch.zeros(0)
                sq = torch.from_numpy(np.ascontiguousarray(seq[lo:hi])) if self.cfg.use_seq else torch.zeros(0)
                if checkpointed and torch.is_grad_enabled():
                    # non-reentrant: correct parameter gradients and DDP-compatible (reentrant mode breaks
                    # DDP's "mark ready once"); measured peak memory still grows with n (see RESULTS_train.md)
                    part = checkpoint(self._phi_sum, ids, sq, use_reentrant=False)
                else:
                    part = self._phi_sum(ids, sq)
                total = part if total is None else total + part
            return self.rho(total / max(n, 1))

        def rho(self, m):
            out, off = [], 0
            for j, d in enumerate(self.cfg.blocks):
                b = m[off : off + d]
                out.append(b / b.norm().clamp_min(1e-12) * self.gain[j])
                off += d
            v = self.out(torch.cat(out))
            return v / v.norm().clamp_min(1e-12)

        def forward(self, items: list[tuple], checkpointed: bool = True):
            """items: (chrom, start, end, seq) per set -> (B, dim) unit rows."""
            return torch.stack([self.forward_set(*it, checkpointed=checkpointed) for it in items])

        def export(self) -> dict[str, np.ndarray]:
            return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.state_dict().items()}

    return DeepSets(cfg)


def save_numpy(path: Path, cfg: ModelConfig, weights: dict[str, np.ndarray]) -> None:
    """Write the inference weights atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, __config__=np.array(json.dumps(cfg.to_dict())), **weights)
    tmp.replace(path)
