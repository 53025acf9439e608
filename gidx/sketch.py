"""Set encoders, and the untrained one: the position sketch.

A *set encoder* turns one IntervalSet into one unit vector; records and
queries of an index are always embedded by the same encoder with the same
parameters (they are stored in the catalog), and cosine similarity between
vectors stands in for seqpare similarity until exact re-ranking.

The **position sketch** is what seqpare's positional, per-interval overlap
suggests without any training: at each resolution (1, 10, 100 kb genome
bins) every interval adds mass 1, spread over the bins it covers in
proportion to the bases it has in each (so a 5 kb peak and a 50 bp peak
weigh the same, as in seqpare's interval counts). The bin masses are
count-sketched into ``dims`` buckets per resolution with a seeded sign hash
(splitmix64), each resolution's block is L2-normalised, and the blocks are
concatenated and scaled to unit norm. Fully vectorised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np

from .intervals import IntervalSet


class SetEncoder(Protocol):
    """What the index needs from a set embedding."""

    name: str
    dim: int

    def params(self) -> dict: ...

    def embed(self, sets: list[IntervalSet]) -> np.ndarray:  # (n, dim) float32, unit rows
        ...


def encoder_identity(name: str, params: dict) -> str:
    """Stable short id of an encoder and its parameters (names LanceDB tables)."""
    return hashlib.sha256(json.dumps([name, params], sort_keys=True).encode()).hexdigest()[:16]


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a fast, well-mixed 64-bit hash (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class PositionSketch:
    resolutions: tuple[int, ...] = (1_000, 10_000, 100_000)
    dims: int = 512  # per resolution
    seed: int = 0
    name: str = "sketch"

    @property
    def dim(self) -> int:
        return self.dims * len(self.resolutions)

    def params(self) -> dict:
        d = asdict(self)
        d.pop("name")
        d["resolutions"] = list(self.resolutions)
        return d

    @classmethod
    def from_params(cls, params: dict) -> "PositionSketch":
        return cls(resolutions=tuple(params["resolutions"]), dims=params["dims"], seed=params["seed"])

    def embed(self, sets: list[IntervalSet]) -> np.ndarray:
        out = np.zeros((len(sets), self.dim), dtype=np.float32)
        for row, s in enumerate(sets):
            out[row] = self.embed_one(s)
        return out

    def embed_one(self, s: IntervalSet) -> np.ndarray:
        blocks = []
        length = np.maximum(s.end - s.start, 1).astype(np.float64)
        last = np.maximum(s.end - 1, s.start)  # a zero-length interval sits in its start's bin
        for level, res in enumerate(self.resolutions):
            b0, b1 = s.start // res, last // res
            nb = (b1 - b0 + 1).astype(np.int64)
            owner = np.repeat(np.arange(len(s)), nb)
            # bin index of each (interval, bin) entry
            first_of = np.repeat(np.cumsum(nb) - nb, nb)
            b = np.repeat(b0, nb) + (np.arange(len(owner)) - first_of)
            lo = np.maximum(b * res, s.start[owner])
            hi = np.minimum((b + 1) * res, s.end[owner])
            mass = np.where(s.end[owner] > s.start[owner], (hi - lo) / length[owner], 1.0)
            key = (s.chrom[owner].astype(np.uint64) << np.uint64(36)) ^ b.astype(np.uint64)
            h = splitmix64(key ^ np.uint64((self.seed * 1_000_003 + level + 1) * 0x9E3779B1))
            bucket = (h % np.uint64(self.dims)).astype(np.int64)
            sign = np.where(h >> np.uint64(63), -1.0, 1.0)
            v = np.bincount(bucket, weights=sign * mass, minlength=self.dims)
            n = np.linalg.norm(v)
            blocks.append(v / n if n > 0 else v)
        vec = np.concatenate(blocks) / np.sqrt(len(self.resolutions))
        return vec.astype(np.float32)
