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

    def embed(self, sets: list[IntervalSet], chrom_lengths: np.ndarray | None = None) -> np.ndarray:
        """(n, dim) float32 unit rows; ``chrom_lengths``: the genome's, for encoders that use it."""
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

    def embed(self, sets: list[IntervalSet], chrom_lengths: np.ndarray | None = None) -> np.ndarray:
        """One unit vector per set. ``chrom_lengths`` (the genome's) enables the
        dense path for sets of long intervals; results are the same either way."""
        if len(sets) <= 1:
            return np.stack([self.embed_one(s, chrom_lengths) for s in sets]) if sets else np.zeros((0, self.dim), np.float32)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:  # numpy releases the GIL in the heavy parts
            return np.stack(list(pool.map(lambda s: self.embed_one(s, chrom_lengths), sets)))

    def embed_one(self, s: IntervalSet, chrom_lengths: np.ndarray | None = None) -> np.ndarray:
        from . import _sketch

        chrom = np.ascontiguousarray(s.chrom, dtype=np.int32)
        start = np.ascontiguousarray(s.start, dtype=np.int64)
        end = np.ascontiguousarray(s.end, dtype=np.int64)
        lengths = None if chrom_lengths is None else np.ascontiguousarray(chrom_lengths, dtype=np.int64)
        blocks = []
        for level, res in enumerate(self.resolutions):
            v = np.zeros(self.dims)
            _sketch.sketch_level(chrom, start, end, res, self.dims, self._salt(level), lengths, v)
            blocks.append(v)
        return self._combine(blocks)

    def _combine(self, blocks: list[np.ndarray]) -> np.ndarray:
        """Each resolution's bucket sums L2-normalised, concatenated, scaled to unit norm."""
        unit = [v / n if (n := np.linalg.norm(v)) > 0 else v for v in blocks]
        return (np.concatenate(unit) / np.sqrt(len(self.resolutions))).astype(np.float32)

    def _salt(self, level: int) -> int:
        return int(np.uint64((self.seed * 1_000_003 + level + 1) * 0x9E3779B1))

    def embed_one_numpy(self, s: IntervalSet, chrom_lengths: np.ndarray | None = None) -> np.ndarray:
        """The same vector with numpy only: the formulation the compiled kernel
        (gidx/_sketch.c) reproduces bit for bit; tests compare the two."""
        blocks = []
        for level, res in enumerate(self.resolutions):
            keys, mass = self._bin_masses(s, res, chrom_lengths)
            h = splitmix64(keys ^ np.uint64(self._salt(level)))
            bucket = (h % np.uint64(self.dims)).astype(np.int64)
            sign = np.where(h >> np.uint64(63), -1.0, 1.0)
            blocks.append(np.bincount(bucket, weights=sign * mass, minlength=self.dims))
        return self._combine(blocks)

    @staticmethod
    def _bin_masses(s: IntervalSet, res: int, chrom_lengths: np.ndarray | None):
        """(bin key, mass) of every bin the set touches at resolution ``res``.

        Key = chromosome code << 36 ^ bin index. Each interval's mass 1 is split
        over its bins by bases (a zero-length interval puts 1 in its start's bin).
        Short intervals are expanded bin by bin; when that would be many entries
        (genes, chromatin states at 1 kb), a dense per-bin array with a
        difference array for the fully covered interior bins gives the same
        masses in time linear in the genome's bin count.
        """
        length = np.maximum(s.end - s.start, 1).astype(np.float64)
        last = np.maximum(s.end - 1, s.start)  # a zero-length interval sits in its start's bin
        b0, b1 = s.start // res, last // res
        nb = (b1 - b0 + 1).astype(np.int64)
        total = int(nb.sum())
        genome_bins = int(np.sum(chrom_lengths)) // res + len(chrom_lengths) if chrom_lengths is not None else 0
        if chrom_lengths is None or total <= max(4 * len(s), genome_bins // 2):
            owner = np.repeat(np.arange(len(s)), nb)
            b = np.repeat(b0, nb) + (np.arange(total) - np.repeat(np.cumsum(nb) - nb, nb))
            lo = np.maximum(b * res, s.start[owner])
            hi = np.minimum((b + 1) * res, s.end[owner])
            mass = np.where(s.end[owner] > s.start[owner], (hi - lo) / length[owner], 1.0)
            keys = (s.chrom[owner].astype(np.uint64) << np.uint64(36)) ^ b.astype(np.uint64)
            return keys, mass
        n_bins = (np.asarray(chrom_lengths, dtype=np.int64) + res - 1) // res + 1
        offset = np.concatenate(([0], np.cumsum(n_bins)))
        g0, g1 = offset[s.chrom] + b0, offset[s.chrom] + b1
        zero = s.end <= s.start
        one_bin = b0 == b1
        first = np.where(zero, 1.0, (np.minimum(s.end, (b0 + 1) * res) - s.start) / length)
        dense = np.bincount(g0, weights=first, minlength=offset[-1])
        tail = ~one_bin
        dense += np.bincount(g1[tail], weights=(s.end[tail] - b1[tail] * res) / length[tail], minlength=offset[-1])
        inner = b1 > b0 + 1
        step = res / length[inner]
        diff = np.bincount(g0[inner] + 1, weights=step, minlength=offset[-1] + 1)
        diff -= np.bincount(g1[inner], weights=step, minlength=offset[-1] + 1)
        dense += np.cumsum(diff)[: offset[-1]]
        nz = np.flatnonzero(np.abs(dense) > 1e-15)
        chrom = np.searchsorted(offset, nz, side="right") - 1
        keys = (chrom.astype(np.uint64) << np.uint64(36)) ^ (nz - offset[chrom]).astype(np.uint64)
        return keys, dense[nz]
