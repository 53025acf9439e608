"""Sequence embeddings of intervals: composed from memoised tiles, or direct.

``interval_embeddings(intervals, genome, tiling, memo, mode)`` -> ``(n, dim)`` float32,
rows in interval order.

``mode="tiles"`` (the index's path)
    The interval's tiles (``Tiling.compose``) are looked up in the tile memo and
    averaged, weighted by the bases of the interval each tile covers
    (``weighting="bases"``, DESIGN.md; exact for encoders that mean-pool over positions,
    like HyenaDNA). ``weighting="sqrt"`` weights by the square root instead: a kmer tile
    vector is an L2-normalised count vector whose norm grows like the square root of
    its k-mer count, so sqrt weights make the mean approximate the normalised *sum* of
    the tiles' counts, i.e. the direct embedding of the covered bases (measured on yeast:
    mean cosine to the direct path 0.913 -> 0.937). The mean is not
    re-normalised (its norm says how much the tiles agree; callers that need unit rows
    normalise). An interval that gets no tile -- zero length, on a chromosome shorter
    than the base tile, or in a chromosome's last ``base / offsets`` bases -- gets the
    **zero vector**. With a warm memo this is lookups and arithmetic only: the memo
    resolves every tile of the assignment to the address of its row in a (memory-mapped)
    chunk -- no sort, no gather -- and one compiled loop sums the weighted rows straight
    from there (``_means_at``; same float32 operations in the same order as the
    reference ``_weighted_means`` over ``memo.get``, so bit-identical).

``mode="direct"`` (the reference the tile path is measured against)
    The encoder embeds the interval's own sequence. An interval longer than the
    encoder's ``max_len`` is cut into ``ceil(length / max_len)`` consecutive windows of
    near-equal length (each <= max_len) and gets the **unweighted mean of the windows'
    embeddings** (windows differ in length by at most one base). kmer has no length
    limit, so it always embeds the whole interval. Zero-length intervals get the zero
    vector. Runs through :class:`gidx.pipeline.Pipeline` (item = a batch of intervals,
    part = one window), so ``workers`` parallelises it like a memo fill.

Intervals are matched to the genome by chromosome *name*; an IntervalSet coded against
another chromosome table is re-coded, and names the genome lacks raise InputError.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from .errors import GidxError, InputError
from .genome import Genome
from .intervals import IntervalSet
from .memo import GenomeReader, TileMemo, TileRows
from .pipeline import Pipeline
from .tiling import Tiling

# Intervals per memo lookup in tiles mode: bounds the (tiles x dim) temporaries to
# ~10^5 rows while keeping per-call overhead negligible.
TILES_BATCH = 32768
# Intervals per pipeline item in direct mode (one sorted genome.fetch each).
DIRECT_BATCH = 1024
WEIGHTINGS = ("bases", "sqrt")


def genome_codes(intervals: IntervalSet, genome: Genome) -> np.ndarray:
    """Chromosome codes of the intervals in ``genome``'s table (re-coded by name if the
    set was read against another table)."""
    if tuple(intervals.chroms) == tuple(genome.names[: len(intervals.chroms)]):
        return intervals.chrom
    code_of = genome.code_of
    unknown = sorted({intervals.chroms[c] for c in np.unique(intervals.chrom)} - set(code_of))
    if unknown:
        raise InputError([f"chromosome(s) not in genome {genome.name}: {', '.join(unknown)}"])
    remap = np.array([code_of.get(name, -1) for name in intervals.chroms], dtype=np.int32)
    return remap[intervals.chrom]


def interval_embeddings(intervals: IntervalSet, genome: Genome, tiling: Tiling, memo: TileMemo | None,
                        mode: str = "tiles", *, weighting: str = "bases", encoder=None, workers: int = 0,
                        batch_size: int | None = None) -> np.ndarray:
    """See the module docstring. ``encoder`` (direct mode) defaults to the memo's."""
    chrom = genome_codes(intervals, genome)
    if mode == "tiles":
        if memo is None:
            raise GidxError("tiles mode needs a tile memo")
        if memo.genome.digest != genome.digest or memo.tiling != tiling:
            raise GidxError("the tile memo was built for another genome or tiling")
        if weighting not in WEIGHTINGS:
            raise GidxError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        return _from_tiles(chrom, intervals.start, intervals.end, genome, tiling, memo, weighting)
    if mode == "direct":
        encoder = encoder or (memo.encoder if memo is not None else None)
        if encoder is None:
            raise GidxError("direct mode needs an encoder (or a memo to take it from)")
        return _direct(chrom, intervals.start, intervals.end, genome, encoder, workers,
                       batch_size or int(getattr(encoder, "batch_size", 1024)))
    raise GidxError(f"mode must be 'tiles' or 'direct', got {mode!r}")


def _from_tiles(chrom, start, end, genome: Genome, tiling: Tiling, memo: TileMemo, weighting: str) -> np.ndarray:
    n = len(chrom)
    out = np.zeros((n, memo.dim), dtype=np.float32)
    for a in range(0, n, TILES_BATCH):
        b = min(a + TILES_BATCH, n)
        tiles = tiling.compose(chrom[a:b], start[a:b], end[a:b], genome.lengths)
        if not len(tiles):
            continue
        weight = tiles.weight if weighting == "bases" else np.sqrt(tiles.weight)
        # every tile of the assignment looked up as it is (no unique_tiles sort: the memo
        # finds the distinct chunks without sorting, and a repeated tile costs one address)
        _weighted_means_of_rows(memo.rows(tiles), tiles.interval, weight, out[a:b])
    return out


def _weighted_means_of_rows(rows: TileRows, interval: np.ndarray, weight: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = _weighted_means(gather_rows(rows), arange, interval, weight, len(out))``
    for a zeroed ``out``: the same sums in the same order, hence bit-identical, but each
    row is read where the memo holds it (no ``(tiles x dim)`` gather first) and summed
    straight into ``out``."""
    totals = np.zeros(len(out), dtype=np.float64)
    weight = weight.astype(np.float32)
    if rows.dtype == "float32":
        _means_at(rows.address, interval, weight, out, totals)
    else:
        _means_at_half(rows.address, half_to_float32(), interval, weight, out, totals)


def _weighted_means(emb: np.ndarray, inverse: np.ndarray, interval: np.ndarray, weight: np.ndarray,
                    n: int) -> np.ndarray:
    """(The reference that ``_weighted_means_of_rows`` must match bit for bit; tests.)
    Per interval, the weighted mean of its rows ``emb[inverse[r]]``; zero for intervals
    without rows. One pass, no ``(tiles x dim)`` temporary (numpy's gather + reduceat
    spent most of a warm lookup moving that temporary through memory)."""
    sums = np.zeros((n, emb.shape[1]), dtype=np.float32)
    totals = np.zeros(n, dtype=np.float64)
    _accumulate(emb, inverse, interval, weight.astype(np.float32), sums, totals)
    np.divide(sums, totals[:, None].astype(np.float32), out=sums, where=totals[:, None] > 0)
    return sums


@numba.njit(cache=True, nogil=True)
def _accumulate(emb, inverse, interval, weight, sums, totals):
    for r in range(len(inverse)):
        i, src, w = interval[r], inverse[r], weight[r]
        totals[i] += w
        for d in range(emb.shape[1]):
            sums[i, d] += w * emb[src, d]


# ---- compiled access to memo rows by address (TileRows) ------------------------------------------


@intrinsic
def _float32_at(typingctx, address):
    """A float32 pointer to ``address`` (an int64); read through it only while the memory
    it points to is kept alive."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return types.CPointer(types.float32)(types.int64), codegen


@intrinsic
def _uint16_at(typingctx, address):
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return types.CPointer(types.uint16)(types.int64), codegen


@numba.njit(cache=True, nogil=True)
def _gather_float32(address, out):
    for r in range(len(address)):
        row = _float32_at(address[r])
        for d in range(out.shape[1]):
            out[r, d] = row[d]


@numba.njit(cache=True, nogil=True)
def _gather_float16(address, half, out):
    for r in range(len(address)):
        row = _uint16_at(address[r])
        for d in range(out.shape[1]):
            out[r, d] = half[row[d]]


_HALF: list[np.ndarray] = []


def half_to_float32() -> np.ndarray:
    """float32 value of each of the 65536 float16 bit patterns (numpy's exact conversion)."""
    if not _HALF:
        _HALF.append(np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32))
    return _HALF[0]


def gather_rows(rows: TileRows) -> np.ndarray:
    """The rows as a ``(n, dim)`` float32 array."""
    out = np.empty((len(rows.address), rows.dim), dtype=np.float32)
    if len(rows.address):
        if rows.dtype == "float32":
            _gather_float32(rows.address, out)
        else:
            _gather_float16(rows.address, half_to_float32(), out)
    return out


@numba.njit(cache=True, nogil=True)
def _means_at(address, interval, weight, sums, totals):
    """``_accumulate`` with the row of tile ``r`` read at ``address[r]`` (float32 rows),
    then the division of ``_weighted_means`` (float32 sums / float32(total), where
    total > 0)."""
    for r in range(len(address)):
        i, w = interval[r], weight[r]
        row = _float32_at(address[r])
        totals[i] += w
        for d in range(sums.shape[1]):
            sums[i, d] += w * row[d]
    _divide(sums, totals)


@numba.njit(cache=True, nogil=True)
def _means_at_half(address, half, interval, weight, sums, totals):
    """``_means_at`` for float16 rows (``half``: float32 value of each bit pattern)."""
    for r in range(len(address)):
        i, w = interval[r], weight[r]
        row = _uint16_at(address[r])
        totals[i] += w
        for d in range(sums.shape[1]):
            sums[i, d] += w * half[row[d]]
    _divide(sums, totals)


@numba.njit(cache=True, nogil=True)
def _divide(sums, totals):
    for i in range(sums.shape[0]):
        if totals[i] > 0:
            t = np.float32(totals[i])
            for d in range(sums.shape[1]):
                sums[i, d] = sums[i, d] / t


class _IntervalWindows(GenomeReader):
    """preprocess for direct mode: a batch (item) of intervals -> the sequences of their
    windows, one sorted fetch per batch."""

    def __init__(self, genome: Genome, chrom, start, end, max_len: int):
        self.genome, self.chrom, self.start, self.end, self.max_len = genome, chrom, start, end, max_len

    def windows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(interval row, chrom, start, end) of every window of the given interval rows."""
        length = self.end[rows] - self.start[rows]
        count = np.where(length > 0, -(-length // self.max_len), 0)
        owner = np.repeat(rows, count)
        # window j of m over length L: [start + j*L//m, start + (j+1)*L//m)
        j = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
        m, total = np.repeat(count, count), np.repeat(length, count)
        base = self.start[owner]
        return owner, self.chrom[owner], base + j * total // m, base + (j + 1) * total // m

    def __call__(self, rows: np.ndarray) -> list[str]:
        _, chrom, start, end = self.windows(rows)
        return self.genome.fetch(chrom, start, end) if len(chrom) else []


def _direct(chrom, start, end, genome: Genome, encoder, workers: int, batch_size: int) -> np.ndarray:
    n = len(chrom)
    out = np.zeros((n, int(encoder.dim)), dtype=np.float32)
    source = _IntervalWindows(genome, np.asarray(chrom), np.asarray(start), np.asarray(end), int(encoder.max_len))
    # items: batches of interval rows in position order (fast sorted reads from bgzip FASTA)
    order = np.lexsort((start, chrom))
    items = [order[a : a + DIRECT_BATCH] for a in range(0, n, DIRECT_BATCH)]

    def mean_per_interval(rows: np.ndarray, window_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        owner = source.windows(rows)[0]
        if not len(owner):
            return owner, np.zeros((0, out.shape[1]), dtype=np.float32)
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        counts = np.diff(np.r_[first, len(owner)])
        return owner[first], np.add.reduceat(window_rows, first, axis=0) / counts[:, None]

    def write(rows: np.ndarray, result) -> None:
        owners, means = result
        out[owners] = means

    pipeline = Pipeline(preprocess=source, collate=encoder.collate, forward=encoder.forward,
                        decollate=encoder.decollate, postprocess=mean_per_interval, batch_size=batch_size,
                        workers=workers, forward_in_workers=bool(getattr(encoder, "forward_in_workers", False)),
                        worker_init=source.reopen)
    # items are arrays (unhashable, fine): the pipeline refers to them by number
    pipeline.run(items, write=write)
    return out
