"""The ``kmer`` sequence encoder: hashed canonical k-mer counts, no weights.

Conventions (all part of :meth:`KmerEncoder.identity`, hence of the tile memo's address):

* **Case-insensitive**: ``acgt`` count as ``ACGT`` (soft-masked repeats are bases).
* **Skipped k-mers**: every k-mer that contains a character other than A/C/G/T
  (N, IUPAC codes, anything else) is skipped; the rest of the sequence still counts.
* **Canonical** (default): a k-mer and its reverse complement are the same feature,
  ``min(code(kmer), code(revcomp(kmer)))`` with 2-bit codes A=0 C=1 G=2 T=3, so a
  sequence and its reverse complement get the same vector. Genomic intervals carry no
  strand in seqpare (strand is ignored), so strand must not change the embedding
  either. ``canonical=False`` counts k-mers as read.
* **Hashing**: each (canonical) k-mer code goes through splitmix64 keyed by ``seed``;
  the hash picks one of ``dim`` buckets (low bits, modulo) and a sign (top bit), and
  the signed counts are summed per bucket (a count sketch: inner products of the
  sketches estimate inner products of the k-mer count vectors without bias).
* **Normalisation**: each row is scaled to unit L2 norm. A sequence with no valid
  k-mer (shorter than k, or all N) gets the zero vector.

Speed: the batch is encoded as one concatenated byte array (sequences separated by an
``N``, so a window across a boundary contains a non-base and is skipped like any other
N window, no per-sequence bookkeeping). The array is processed in blocks of 64 k
windows (cache-sized; whole-array passes are memory-bound): the k-mer codes of a
block come from ``log2(k)`` shift-or passes (uint32 for k <= 16), and one integer
``np.bincount`` over ``row * 2 dim + 2 bucket + sign`` counts the block. No Python loop
over sequences.
"""

from __future__ import annotations

import numpy as np

from ..errors import GidxError
from ..sketch import splitmix64

# Longer than any chromosome (gidx.tiling.MAX_COORDINATE): the encoder has no length limit.
UNLIMITED_LENGTH = 2**40

# Non-base characters map to this code; 2-bit codes of bases are 0..3.
_INVALID = 4
_CODE = np.full(256, _INVALID, dtype=np.uint8)
for _code, _bases in enumerate(("Aa", "Cc", "Gg", "Tt")):
    for _b in _bases:
        _CODE[ord(_b)] = _code

def _window_codes(base_codes: np.ndarray, k: int, dtype) -> np.ndarray:
    """2-bit packed code of every length-``k`` window (first base in the high bits).

    Built by doubling: codes of length-``2w`` windows are ``code_w[i] << 2w | code_w[i + w]``,
    so ``k`` costs about ``log2(k)`` passes over the array instead of ``k``.
    """
    n_windows = len(base_codes) - k + 1
    codes = {1: base_codes.astype(dtype)}
    width = 1
    while 2 * width <= k:
        c = codes[width]
        codes[2 * width] = (c[: len(c) - width] << dtype(2 * width)) | c[width:]
        width *= 2
    # k = sum of the powers of two in its binary expansion, largest first
    out, pos = None, 0
    for w in sorted(codes, reverse=True):
        if k & w:
            part = codes[w][pos : pos + n_windows]
            out = part if out is None else (out << dtype(2 * w)) | part
            pos += w
    return out


def _reverse_complement_codes(forward: np.ndarray, k: int) -> np.ndarray:
    """Code of the reverse complement of each k-mer code: complement = ``b ^ 3`` on 2-bit
    codes, then reverse the order of the 2-bit groups of the word (swap halves, bytes,
    nibbles, pairs) and drop the empty groups."""
    t = forward.dtype.type
    bits = 8 * forward.dtype.itemsize
    x = forward ^ t((1 << (2 * k)) - 1)
    ones = (1 << bits) - 1
    shift = bits // 2
    while shift >= 2:
        mask = t(ones // ((1 << shift) + 1))  # 0x0000FFFF..., 0x00FF00FF..., ..., 0x3333...
        x = ((x >> t(shift)) & mask) | ((x & mask) << t(shift))
        shift //= 2
    return x >> t(bits - 2 * k)


def _rows_of_positions(seq_start: np.ndarray, p0: int, p1: int) -> np.ndarray:
    """Sequence number of each position in ``[p0, p1)`` of the joined array, given each
    sequence's start (``seq_start``, ascending, with the total length appended)."""
    first = int(np.searchsorted(seq_start, p0, side="right")) - 1
    last = int(np.searchsorted(seq_start, p1 - 1, side="right")) - 1
    bounds = np.clip(seq_start[first : last + 2], p0, p1)
    return np.repeat(np.arange(first, last + 1, dtype=np.int64), np.diff(bounds))


class KmerEncoder:
    """Hashed k-mer count sketch of a DNA sequence; see the module docstring.

    Also exposes the pipeline stages of a model-backed encoder (``collate`` /
    ``forward`` / ``decollate``) so the embedding pipeline treats both alike; here
    ``collate`` is the identity and ``forward`` does all the work in numpy.
    """

    name = "kmer"
    version = 1  # bump when the vectors for the same parameters change
    # Pure numpy, no device: the pipeline runs forward() in its worker processes too,
    # so precomputing tiles scales over cores instead of queueing on the main process.
    forward_in_workers = True
    BLOCK = 1 << 16  # windows per block (cache-sized)
    ROWS = 4096  # sequences per pass: bounds the (rows x 2 dim) count table

    def __init__(self, k: int = 12, dim: int = 256, seed: int = 0, canonical: bool = True):
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= 31:
            raise GidxError(f"kmer encoder: k must be an integer in 1..31, got {k!r}")
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise GidxError(f"kmer encoder: dim must be a positive integer, got {dim!r}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise GidxError(f"kmer encoder: seed must be a non-negative integer, got {seed!r}")
        self.k, self.dim, self.seed, self.canonical = int(k), int(dim), int(seed), bool(canonical)
        self._hash_key = splitmix64(np.array([self.seed], dtype=np.uint64))[0]

    @property
    def max_len(self) -> int:
        """No limit (counting k-mers works at any length)."""
        return UNLIMITED_LENGTH

    def identity(self) -> dict:
        return {"name": self.name, "version": self.version, "k": self.k, "dim": self.dim, "seed": self.seed,
                "canonical": self.canonical, "hash": "splitmix64", "case": "insensitive",
                "skip": "k-mers with non-ACGT", "norm": "l2"}

    def __repr__(self) -> str:
        return f"KmerEncoder(k={self.k}, dim={self.dim}, seed={self.seed}, canonical={self.canonical})"

    # ---- pipeline stages --------------------------------------------------

    def collate(self, seqs: list[str]) -> list[str]:
        return list(seqs)

    def forward(self, batch: list[str]) -> np.ndarray:
        return self.embed(batch)

    def decollate(self, hidden: np.ndarray, batch: list[str]) -> np.ndarray:
        return hidden

    # ---- embedding --------------------------------------------------------

    def embed(self, seqs: list[str]) -> np.ndarray:
        """(len(seqs), dim) float32, unit rows (zero rows for sequences without a valid k-mer)."""
        if len(seqs) > self.ROWS:
            return np.concatenate([self._embed(seqs[i : i + self.ROWS]) for i in range(0, len(seqs), self.ROWS)])
        return self._embed(seqs)

    def _embed(self, seqs: list[str]) -> np.ndarray:
        n, k, dim = len(seqs), self.k, self.dim
        counts = np.zeros((n, 2 * dim), dtype=np.int64)  # per bucket: [+1 hits, -1 hits]
        # 'replace' keeps one byte per character ('?' -> invalid) for non-ASCII input
        base_codes = _CODE[np.frombuffer("N".join(seqs).encode("ascii", "replace"), dtype=np.uint8)]
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=n)
        # sequence i starts at seq_start[i] in the joined array (one separator after each)
        seq_start = np.concatenate(([0], np.cumsum(lengths + 1)))
        n_windows = len(base_codes) - k + 1
        # blocks of windows small enough to stay in cache: numpy's passes over
        # millions of uint64 are memory-bound otherwise
        for w0 in range(0, max(n_windows, 0), self.BLOCK):
            w1 = min(w0 + self.BLOCK, n_windows)
            self._count_block(base_codes[w0 : w1 + k - 1], _rows_of_positions(seq_start, w0, w1), counts)
        signed = (counts[:, 0::2] - counts[:, 1::2]).astype(np.float64)
        norm = np.linalg.norm(signed, axis=1, keepdims=True)
        return (signed / np.where(norm > 0, norm, 1.0)).astype(np.float32)

    def _count_block(self, base_codes: np.ndarray, window_row: np.ndarray, counts: np.ndarray) -> None:
        k, dim = self.k, self.dim
        # a window is valid iff it holds no invalid code: count invalids with a cumulative sum
        invalid_before = np.zeros(len(base_codes) + 1, dtype=np.int32)
        np.cumsum(base_codes == _INVALID, out=invalid_before[1:])
        valid = invalid_before[k:] == invalid_before[: len(invalid_before) - k]
        code_type = np.uint32 if 2 * k <= 32 else np.uint64
        forward = _window_codes(np.minimum(base_codes, 3), k, code_type)[valid]
        kmers = np.minimum(forward, _reverse_complement_codes(forward, k)) if self.canonical else forward
        h = splitmix64(kmers.astype(np.uint64) ^ self._hash_key)
        # slot 2 * bucket + sign bit: an unweighted bincount (integer counting is faster)
        slot = (h % np.uint64(dim)).astype(np.int64) * 2 + (h >> np.uint64(63)).astype(np.int64)
        rows = window_row[valid]
        if not len(rows):
            return
        first, last = rows[0], rows[-1]
        flat = np.bincount((rows - first) * (2 * dim) + slot, minlength=(last - first + 1) * 2 * dim)
        counts[first : last + 1] += flat.reshape(-1, 2 * dim)
