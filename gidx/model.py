"""The M model: a Deep Sets set encoder trained to make cosine search agree with seqpare.

``set_emb = rho(mean_i phi(x_i))`` with, per interval i,
``x_i = [sequence features of i || position features of i]``; every interval
counts once (seqpare counts intervals), and the mean makes the model
permutation invariant.

Position stage (fixed, parameter-free; a position sketch): at each resolution r
of ``resolutions`` an interval spreads its weight over the genome bins it covers in
proportion to its bases in each, and the bins are count-sketched (splitmix64 sign
hash) into ``buckets`` dims. ``ModelConfig.sketch()`` (every interval at 1/10/100 kb,
mass 1 per interval, one L2-normalised block per resolution) is *exactly*
:class:`gidx.sketch.PositionSketch`. The default is the **length-class sketch**: an
interval of length L goes to the resolution ~ L / ``bins_per_interval`` (10 bp .. 1 Mb,
factor sqrt(10); split over the two nearest with cos/sin weights), spread with unit L2
norm, one shared block -- so the inner product of two intervals approximates their
bp-level overlap / sqrt(L_a L_b), close to seqpare's per-pair Jaccard (measured in
benchmarks/RESULTS.md section 5: held-out recall@20 0.90 untrained vs 0.69 for the sketch).
Learned on top (locus-agnostic, so it transfers to loci never trained on): per-resolution
weights (= interval-length classes), a power normalisation sign(v)|v|^a of the aggregated
bucket vector (a learned, 1 at start), block gains.

Sequence features are pluggable (:func:`sequence_features`): ``kmer`` =
hashed 12-mer counts of the interval's central ``seq_window`` bases (the
interval's own sequence, from the index genome), sign-sketched to
``seq_in`` dims; ``memo`` = interval embeddings composed from the tile memo
(``gidx.embed``) once that module exists. ``features`` selects
``position`` / ``sequence`` / ``both`` (the ablation).

The position stage is evaluated as per-level bucket sums V (levels x buckets, numpy, over
chunks of intervals; :func:`level_bucket_sums`) and the learned weights are applied to V, so
memory -- training included -- is O(chunk + levels x buckets), flat in the set size.

Sequence block: phi(z) = z + MLP(z) (last layer zero-initialised, so phi starts as
identity), run over chunks of ``chunk`` intervals under gradient checkpointing keeping
only the running sum. rho = power normalisation (position blocks), per-block L2
normalisation with learned block gains, final L2 normalisation. Inference needs no torch at all:
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
    # position stage (a position sketch, parameter-free; see the module docstring)
    resolutions: tuple[int, ...] = tuple(int(round(10 * 10 ** (k / 2))) for k in range(11))  # 10 bp .. 1 Mb
    assign: str = "length"  # length: each interval at the 1-2 resolutions matching its length | all: every resolution
    spread: str = "l2"  # l2: unit L2 norm per interval | l1: mass 1 per interval (the position sketch)
    bins_per_interval: float = 8.0  # assign=length: target bins an interval covers
    buckets: int = 4096  # hashed dims of the position block (assign=length) or of each resolution's block (all)
    sequence: str = "kmer"  # kmer | memo
    seq_in: int = 64  # sequence feature dims
    seq_dim: int = 32  # projected sequence dims
    seq_window: int = 128  # central bases of each interval read for kmer features
    kmer: int = 12
    hidden: int = 128  # phi MLP width (sequence block)
    learn: str = "levels,power,gains,mlp"  # trainable parts: levels (per-resolution weights = interval-length
    # classes when assign=length), power (exponent of the power normalisation), gains (block weights), mlp (sequence phi)
    chunk: int = 4096  # intervals per checkpointed phi chunk (sequence block) and per position-sum chunk
    seed: int = 0

    def __post_init__(self) -> None:
        if self.features not in ("position", "sequence", "both"):
            raise ValueError(f"features must be position, sequence or both, not {self.features!r}")
        if self.assign not in ("length", "all"):
            raise ValueError(f"assign must be length or all, not {self.assign!r}")
        if self.spread not in ("l1", "l2"):
            raise ValueError(f"spread must be l1 or l2, not {self.spread!r}")
        object.__setattr__(self, "resolutions", tuple(int(r) for r in self.resolutions))

    @classmethod
    def sketch(cls, resolutions=(1_000, 10_000, 100_000), dims: int = 512, seed: int = 0, **kw) -> "ModelConfig":
        """The configuration whose untrained model is exactly :class:`gidx.sketch.PositionSketch`."""
        return cls(resolutions=tuple(resolutions), assign="all", spread="l1", buckets=dims, seed=seed, **kw)

    @property
    def use_pos(self) -> bool:
        return self.features in ("position", "both")

    @property
    def use_seq(self) -> bool:
        return self.features in ("sequence", "both")

    @property
    def pos_blocks(self) -> int:
        return (len(self.resolutions) if self.assign == "all" else 1) if self.use_pos else 0

    @property
    def blocks(self) -> list[int]:
        return [self.buckets] * self.pos_blocks + ([self.seq_dim] if self.use_seq else [])

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


def _bins(chrom, start, end, owner, res):
    """Every (owner, bin key, fraction of the interval's bases in the bin) of the intervals ``owner``."""
    s, e = start[owner], end[owner]
    length = np.maximum(e - s, 1).astype(np.float64)
    last = np.maximum(e - 1, s)
    b0, b1 = s // res, last // res
    nb = (b1 - b0 + 1).astype(np.int64)
    total = int(nb.sum())
    j = np.repeat(np.arange(len(owner)), nb)
    b = np.repeat(b0, nb) + (np.arange(total) - np.repeat(np.cumsum(nb) - nb, nb))
    lo = np.maximum(b * res, s[j])
    hi = np.minimum((b + 1) * res, e[j])
    frac = np.where(e[j] > s[j], (hi - lo) / length[j], 1.0)
    keys = (chrom[owner][j].astype(np.uint64) << np.uint64(36)) ^ b.astype(np.uint64)
    return owner[j], keys, frac


def level_weights(cfg: ModelConfig, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """assign=length: (lower level, its weight, the next level's weight) per interval.

    An interval of length L belongs at the resolution r = L / bins_per_interval (clipped to the
    configured range); between two configured resolutions it is split over both with weights
    cos/sin of the log-distance (squares sum to 1), so similar lengths always share a level.
    """
    res = np.asarray(cfg.resolutions, dtype=np.float64)
    L = np.maximum(end - start, 1).astype(np.float64)
    x = np.interp(np.log(np.clip(L / cfg.bins_per_interval, res[0], res[-1])), np.log(res), np.arange(len(res)))
    lo = np.minimum(np.floor(x).astype(np.int64), len(res) - 1)
    t = x - lo
    return lo, np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)


def position_entries(cfg: ModelConfig, chrom, start, end) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The position sketch of a set, as sparse per-interval entries (owner, column, value, level).

    Column = bucket (+ block offset when assign=all), value = sign * weight of the interval
    in that bin (before learned level weights). Summing ``value`` by column over all entries and
    dividing by n is the untrained set vector; with assign=all, spread=l1 it is the position sketch.
    """
    chrom = np.asarray(chrom)
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    n = len(start)
    outs = []
    if cfg.assign == "length":
        lo, wlo, whi = level_weights(cfg, start, end)
    for level, res in enumerate(cfg.resolutions):
        if cfg.assign == "all":
            owner, w = np.arange(n), np.ones(n)
        else:
            a = np.flatnonzero((lo == level) & (wlo > 1e-9))
            b = np.flatnonzero((lo + 1 == level) & (whi > 1e-9))
            owner = np.concatenate([a, b])
            w = np.zeros(n)
            w[a], w[b] = wlo[a], whi[b]
        if not len(owner):
            continue
        own, keys, frac = _bins(chrom, start, end, owner, res)
        if cfg.spread == "l2":
            n2 = np.bincount(own, weights=frac * frac, minlength=n)
            frac = frac / np.sqrt(n2[own])
        h = splitmix64(keys ^ np.uint64((cfg.seed * 1_000_003 + level + 1) * 0x9E3779B1))
        col = (h % np.uint64(cfg.buckets)).astype(np.int64) + (level * cfg.buckets if cfg.assign == "all" else 0)
        val = np.where(h >> np.uint64(63), -1.0, 1.0) * frac * w[own]
        outs.append((own, col, val, np.full(len(own), level, dtype=np.int64)))
    if not outs:
        z = np.zeros(0, dtype=np.int64)
        return z, z, np.zeros(0), z
    return tuple(np.concatenate(x) for x in zip(*outs))


def position_vector(cfg: ModelConfig, chrom, start, end, level_gain: np.ndarray | None = None) -> np.ndarray:
    """Sum over intervals of the position entries (float64), with optional per-level weights.

    Materialises every entry at once (O(entries) memory): the reference; the model itself uses
    :func:`level_bucket_sums` + :func:`apply_level_gain`, which give the same vector in O(levels x buckets).
    """
    _, col, val, lev = position_entries(cfg, chrom, start, end)
    if level_gain is not None:
        val = val * np.asarray(level_gain, dtype=np.float64)[lev]
    return np.bincount(col, weights=val, minlength=cfg.buckets * cfg.pos_blocks)


def level_bucket_sums(cfg: ModelConfig, chrom, start, end, chunk: int | None = None) -> np.ndarray:
    """V: (levels, buckets) float64, V[l, b] = sum over the set's intervals of their level-l entries in bucket b
    (before the learned level weights), accumulated over chunks of ``chunk`` intervals (default ``cfg.chunk``).

    Every entry depends on its own interval only, so chunking changes nothing but memory: O(chunk + levels x
    buckets), whatever the set size. ``apply_level_gain(cfg, level_gain, V)`` is then the position half of
    the summed phi (= ``position_vector(..., level_gain)``).
    """
    chrom = np.asarray(chrom)
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    levels, B = len(cfg.resolutions), cfg.buckets
    V = np.zeros(levels * B, dtype=np.float64)
    step = max(int(chunk or cfg.chunk), 1)
    for lo in range(0, len(start), step):
        sl = slice(lo, lo + step)
        _, col, val, lev = position_entries(cfg, chrom[sl], start[sl], end[sl])
        V += np.bincount(lev * B + col % B, weights=val, minlength=levels * B)  # col % B: bucket within the block
    return V.reshape(levels, B)


def apply_level_gain(cfg: ModelConfig, level_gain, V):
    """The position vector from the per-level sums V (numpy arrays or torch tensors alike): one shared block
    ``level_gain @ V`` (assign=length) or one block per level ``level_gain[l] * V[l]`` (assign=all)."""
    if cfg.assign == "all":
        return (level_gain[:, None] * V).reshape(-1)
    return level_gain @ V


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
    if cfg.sequence == "memo":  # interval embeddings composed from the index's tile memo
        from .embed import interval_embeddings

        if index is None:
            raise ValueError("memo sequence features need the index (its genome, tiling, encoder and memo)")
        emb = interval_embeddings(s, index.genome, index.tiling(), index.memo(), mode="tiles")
        if emb.shape[1] != cfg.seq_in:
            raise ValueError(f"memo embeddings have {emb.shape[1]} dims, the model expects seq_in={cfg.seq_in}")
        return emb.astype(np.float32)
    raise ValueError(f"unknown sequence feature source {cfg.sequence!r}")


# ---- numpy inference (no torch) ----------------------------------------------------


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))


POWER_RANGE = (0.05, 3.0)  # the learned power-normalisation exponent is clamped to this range


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
        """Sum over intervals of phi: [position entries weighted by level | sequence phi]."""
        cfg, w = self.cfg, self.w
        parts = []
        if cfg.use_pos:
            V = level_bucket_sums(cfg, chrom, start, end)
            parts.append(apply_level_gain(cfg, w["level_gain"].astype(np.float64), V))
        if cfg.use_seq:
            total = np.zeros(cfg.seq_dim, dtype=np.float64)
            for lo in range(0, len(start), cfg.chunk):
                z = seq[lo : lo + cfg.chunk] @ w["seq.weight"].T + w["seq.bias"]
                h = _gelu(z @ w["mlp1.weight"].T + w["mlp1.bias"])
                total += (z + h @ w["mlp2.weight"].T + w["mlp2.bias"]).sum(axis=0)
            parts.append(total)
        return np.concatenate(parts)

    def rho(self, m: np.ndarray) -> np.ndarray:
        cfg, w, out, off = self.cfg, self.w, [], 0
        for j, d in enumerate(cfg.blocks):
            b = m[off : off + d].astype(np.float64)
            if j < cfg.pos_blocks:
                a = float(np.clip(w["power"][j], *POWER_RANGE))
                b = np.sign(b) * np.abs(b) ** a
            out.append(b / max(np.linalg.norm(b), 1e-12) * w["gain"][j])
            off += d
        v = np.concatenate(out)
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
    index: "Index | None" = field(default=None, repr=False)  # for memo sequence features
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
            seq = sequence_features(self.net.cfg, self.genome, s, self.index)
            out[i] = self.net.embed_arrays(s.chrom, s.start, s.end, seq)
        return out


def load_set_encoder(index: "Index", params: dict) -> ModelEncoder:
    """The active trained set encoder, from its exported weights (numpy only: no torch import)."""
    from .errors import IndexStateError

    path = index.path / params["weights"]
    if not path.exists():
        raise IndexStateError(f"model #{params.get('model_id')}: weights {path} are missing")
    net = NumpyDeepSets.load(path)
    return ModelEncoder(net, params, index.genome if net.cfg.use_seq else None,
                        index if net.cfg.use_seq and net.cfg.sequence == "memo" else None)


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
            parts = set(cfg.learn.split(",")) if cfg.learn else set()
            # position stage: the fixed sketch, with learned per-level weights and power exponent
            self.level_gain = nn.Parameter(torch.ones(len(cfg.resolutions)), requires_grad="levels" in parts)
            self.power = nn.Parameter(torch.ones(max(cfg.pos_blocks, 1)), requires_grad="power" in parts)
            if cfg.use_seq:
                self.seq = nn.Linear(cfg.seq_in, cfg.seq_dim)
                self.mlp1 = nn.Linear(cfg.seq_dim, cfg.hidden)
                self.mlp2 = nn.Linear(cfg.hidden, cfg.seq_dim)
                with torch.no_grad():
                    self.seq.weight.copy_(torch.randn(self.seq.weight.shape, generator=g) / cfg.seq_in ** 0.5)
                    self.seq.bias.zero_()
                    self.mlp1.weight.copy_(torch.randn(self.mlp1.weight.shape, generator=g) / cfg.seq_dim ** 0.5)
                    self.mlp1.bias.zero_()
                    self.mlp2.weight.zero_()  # phi starts as the identity
                    self.mlp2.bias.zero_()
                for mod in (self.seq, self.mlp1, self.mlp2):
                    for p in mod.parameters():
                        p.requires_grad_("mlp" in parts)
            self.gain = nn.Parameter(torch.full((len(cfg.blocks),), 1.0 / len(cfg.blocks) ** 0.5),
                                     requires_grad="gains" in parts)
            self.act = nn.GELU(approximate="tanh")

        def _seq_sum(self, seq):
            z = self.seq(seq)
            return (z + self.mlp2(self.act(self.mlp1(z)))).sum(dim=0)

        def forward_set(self, chrom, start, end, seq: np.ndarray | None, checkpointed: bool = True):
            """Embedding of one set (unit vector). Position: per-level bucket sums V (numpy, over chunks of
            intervals, no grad) then the learned level weights in torch, so autograd keeps only V
            (levels x buckets) whatever the set size; sequence: phi over checkpointed chunks, running sum only."""
            n = len(start)
            parts = []
            if self.cfg.use_pos:
                V = torch.from_numpy(level_bucket_sums(self.cfg, chrom, start, end))
                parts.append(apply_level_gain(self.cfg, self.level_gain.double(), V))
            if self.cfg.use_seq:
                total = torch.zeros(self.cfg.seq_dim)
                for lo in range(0, n, self.cfg.chunk):
                    sq = torch.from_numpy(np.ascontiguousarray(seq[lo : lo + self.cfg.chunk]))
                    if checkpointed and torch.is_grad_enabled():
                        # non-reentrant: correct parameter gradients and DDP-compatible
                        total = total + checkpoint(self._seq_sum, sq, use_reentrant=False)
                    else:
                        total = total + self._seq_sum(sq)
                parts.append(total.double())
            return self.rho(torch.cat(parts) / max(n, 1))

        def rho(self, m):
            out, off = [], 0
            for j, d in enumerate(self.cfg.blocks):
                b = m[off : off + d]
                if j < self.cfg.pos_blocks:  # power normalisation sign(b)|b|^a (a learned, 1 at start)
                    a = self.power[j].double().clamp(*POWER_RANGE)
                    mag = b.abs()
                    nz = mag > 0
                    b = torch.where(nz, torch.sign(b) * torch.where(nz, mag, torch.ones_like(mag)) ** a,
                                    torch.zeros_like(b))
                out.append(b / b.norm().clamp_min(1e-12) * self.gain[j].double())
                off += d
            v = torch.cat(out)
            return (v / v.norm().clamp_min(1e-12)).float()

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
