"""Fixed genome tilings and the greedy interval -> tiles composition.

gidx embeds a fixed set of genome tiles once (memoized) and describes every
interval by the tiles that cover it. This module defines the tiles and which
tiles an interval gets; it does no embedding.

Conventions (all coordinates 0-based, half-open ``[start, end)``, as in BED):

Grid
    ``Tiling(base, layers, offsets)``. Layer ``K`` (``0 <= K < layers``) has tile
    size ``size_K = base * 2**K``. Each layer has ``offsets`` grids; grid
    ``j`` (``0 <= j < offsets``) is shifted by ``j * size_K / offsets``, so tile
    ``i`` of (layer ``K``, offset ``j``) covers::

        [j * size_K // offsets + i * size_K,  j * size_K // offsets + (i + 1) * size_K)

    ``base`` must be divisible by ``offsets`` so that every shift is a whole
    number of bases. Tiles exist only inside the chromosome ``[0, chrom_len)``:
    index 0 is the first tile at or after the grid's shift (bases before the
    shift belong to no tile of that grid) and a last partial tile does not
    exist. So grid (K, j) has ``max(0, (chrom_len - shift) // size_K)`` tiles.
    Taken together, the starts of layer ``K`` over all its offsets are exactly
    the multiples of ``step_K = size_K / offsets``; the tile starting at
    ``m * step_K`` is (offset ``m % offsets``, index ``m // offsets``).

Greedy composition (``Tiling.compose``)
    Work on one uncovered *segment* at a time, starting with the whole interval:

    1. If some tile lies inside the segment, take the largest such tile (highest
       layer), and among that layer's tiles (all offsets) the most centred one:
       smallest ``|tile centre - segment centre|``; on a tie (two starts equally
       far, one each side) the one further left. Recurse on the uncovered parts
       left and right of it.
    2. Otherwise (the segment is shorter than a layer-0 tile, or too short to
       hold one on the ``base / offsets`` grid) consider the layer-0 tiles that
       overlap it and pick the one covering most of the segment (the most
       centred one again: coverage falls off symmetrically around the centre;
       ties to the left). Take it only if it adds less noise than coverage:
       bases of the tile inside the segment > bases outside the segment. Bases
       outside the segment count as noise whether they lie outside the interval
       or on a neighbouring tile already taken (such sequence would be counted
       twice in the mean). Recurse on what remains of the segment. If the tile
       is refused, the segment stays uncovered.
    Only layer 0 is considered in step 2: a larger tile can cover at most a few
    more bases of a segment that holds no whole layer-0 tile, for much more noise.

Weights
    Each tile's weight is the number of bases of its segment it covers. Segments
    are disjoint, so the weights of one interval are disjoint coverage: their sum
    is the number of covered bases (<= interval length), and every tile has
    ``weight > size / 2`` (a tile inside its segment has ``weight == size``),
    except the tiny-interval fallback below.
    Tiles may overlap each other: a step-2 tile can reach onto a neighbouring
    tile (those bases count as its noise); its weight still counts only its own
    segment's bases.

Tiny intervals
    If the greedy gives an interval no tile at all, it gets the tile refused in
    its first step instead: the layer-0 tile with the largest overlap with the
    interval (most centred among equals), weight = that overlap. Without it an
    interval of <= base/2 bp (e.g. a 1 bp site, a 20 bp motif) would have no
    embedding and drop out of its set, although seqpare counts it like any other
    interval; the tile's sequence is the interval's own surrounding context, a
    meaningful stand-in. This is the only case where a tile breaks the noise
    rule. With ``offsets >= 2`` it happens only for intervals of at most
    ``base / 2`` bp, or slightly longer ones in the last tile's worth of a
    chromosome. Intervals that overlap no tile at all get no tile: zero-length
    intervals, intervals on a chromosome shorter than ``base``, and intervals
    lying wholly in a chromosome's last ``< base / offsets`` bases (past the
    last layer-0 tile). Callers must handle intervals without tiles.

Output order
    ``TileAssignment`` rows are sorted by input interval, and within an interval
    by the start of the covered part (left to right). The result for an interval
    depends only on that interval and its chromosome's length, never on the
    other intervals in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Sizes up to 2**40 bp (> 10**12, beyond any chromosome) keep every intermediate
# of the tile arithmetic (sums of two coordinates, times two) exact in int64.
MAX_COORDINATE = 2**40

# Bumped whenever the grid/index convention or the greedy rules change, so that
# params() -- and with it the tile memo's content address -- changes too.
SCHEME = "gidx-tiling-1"


# Sorting on several int64 columns is ~20x faster when they are packed into one
# key; packing is exact while the product of the columns' spans stays below this.
PACKED_KEY_LIMIT = 2**62


def _ceil_div(numerator: np.ndarray, denominator: np.ndarray | int) -> np.ndarray:
    return -((-numerator) // denominator)


def _lexsort(columns: list[np.ndarray]) -> np.ndarray:
    """Stable order by ``columns`` (most significant first) of non-negative ints."""
    spans = [int(c.max()) + 1 if len(c) else 1 for c in columns]
    if np.prod(spans, dtype=object) >= PACKED_KEY_LIMIT:
        return np.lexsort(columns[::-1])
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column, span in zip(columns, spans):
        key = key * span + column
    # Stable: equal keys keep input order; timsort also merges presorted runs fast.
    return np.argsort(key, kind="stable")


@dataclass(frozen=True, eq=False)
class TileKeys:
    """Distinct tiles, sorted by (chrom, layer, offset, index): one memo array
    per (chrom, layer, offset), so each array's lookups come out contiguous."""

    chrom: np.ndarray  # int32
    layer: np.ndarray  # int8
    offset: np.ndarray  # int16
    index: np.ndarray  # int64

    def __len__(self) -> int:
        return int(len(self.index))


@dataclass(frozen=True, eq=False)
class TileAssignment:
    """Tiles of a batch of intervals: parallel arrays, one row per (interval, tile),
    sorted by ``interval`` and, within it, left to right."""

    interval: np.ndarray  # int64 index into the input of compose()
    chrom: np.ndarray  # int32 chromosome code
    layer: np.ndarray  # int8
    offset: np.ndarray  # int16
    index: np.ndarray  # int64 tile index within its (chrom, layer, offset) grid
    weight: np.ndarray  # int64 bases of the interval credited to this tile

    def __len__(self) -> int:
        return int(len(self.interval))

    def unique_tiles(self) -> tuple[TileKeys, np.ndarray]:
        """Distinct tiles and ``inverse`` with ``keys.<field>[inverse] == self.<field>``,
        so each tile is looked up in the memo once."""
        order = _lexsort([self.chrom, self.layer, self.offset, self.index])
        fields = [f[order] for f in (self.chrom, self.layer, self.offset, self.index)]
        is_new = np.ones(len(order), dtype=bool)
        if len(order):
            is_new[1:] = np.any([f[1:] != f[:-1] for f in fields], axis=0)
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.cumsum(is_new) - 1
        keys = TileKeys(*(f[is_new] for f in fields))
        return keys, inverse


@dataclass(frozen=True)
class Tiling:
    """``layers`` tile sizes ``base * 2**K``, each on ``offsets`` shifted grids.

    Defaults: sizes 128, 256, 512, 1024 bp on grids shifted in quarter-tile steps
    (32 bp for the 128 bp layer). The largest tile fits the 1 kbp context of
    HyenaDNA tiny-1k (callers check an encoder with ``require_max_size``); a
    typical peak of 200-2000 bp gets one to a few large tiles plus 128 bp tiles
    at its edges. The noise rule leaves remainders of up to ``base / 2`` = 64 bp
    uncovered: a 200 bp peak gets its central 128 bp (64%), 1 kbp peaks ~87% and
    2 kbp peaks ~96% on average (benchmarks/bench_tiling.py prints coverage by
    length). A smaller base covers more but doubles the memo. The genome-wide memo
    holds ``offsets * sum(genome / size)`` ~ 1.8e8 tiles for hg38.
    """

    base: int = 128
    layers: int = 4
    offsets: int = 4

    def __post_init__(self) -> None:
        for name in ("base", "layers", "offsets"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Tiling.{name} must be a positive integer, got {value!r}")
        if self.base % self.offsets:
            raise ValueError(
                f"Tiling.base ({self.base}) must be divisible by Tiling.offsets ({self.offsets}) "
                "so that every grid shift is a whole number of bases"
            )
        if self.offsets > np.iinfo(np.int16).max:
            raise ValueError(f"Tiling.offsets must be <= {np.iinfo(np.int16).max}, got {self.offsets}")
        # (layers > 41 already exceeds it for any base; checked first to skip a huge power)
        if self.layers > 41 or self.base * 2 ** (self.layers - 1) > MAX_COORDINATE:
            raise ValueError(f"largest tile base * 2**(layers - 1) must be <= 2**40 bp, got {self!r}")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Tile size of each layer, bp."""
        return tuple(int(self.base) << k for k in range(self.layers))

    @property
    def max_size(self) -> int:
        return self.sizes[-1]

    def params(self) -> dict:
        """Everything that defines the tiles and the composition, JSON-ready; stored in
        the catalog table ``tilings`` and hashed into the tile memo's address."""
        return {"scheme": SCHEME, "base": int(self.base), "layers": int(self.layers), "offsets": int(self.offsets)}

    def require_max_size(self, encoder_max_bases: int) -> None:
        """Raise if the largest tile is longer than an encoder can take."""
        if self.max_size > encoder_max_bases:
            raise ValueError(
                f"largest tile is {self.max_size} bp but the encoder takes at most "
                f"{encoder_max_bases} bp; use fewer layers or a smaller base"
            )

    def _shift(self, layer, offset):
        sizes = np.asarray(self.sizes, dtype=np.int64)[layer]
        return sizes, np.asarray(offset, dtype=np.int64) * (sizes // self.offsets)

    def _check_grid(self, layer, offset) -> None:
        layer, offset = np.asarray(layer), np.asarray(offset)
        if np.any((layer < 0) | (layer >= self.layers)):
            raise ValueError(f"layer must be in [0, {self.layers})")
        if np.any((offset < 0) | (offset >= self.offsets)):
            raise ValueError(f"offset must be in [0, {self.offsets})")

    def n_tiles(self, chrom_len: int, layer: int, offset: int) -> int:
        """Number of tiles of grid (layer, offset) on a chromosome of ``chrom_len`` bp."""
        self._check_grid(layer, offset)
        size, shift = self._shift(layer, offset)
        return max(0, (int(chrom_len) - int(shift)) // int(size))

    def tile_bounds(self, layer, offset, index) -> tuple[np.ndarray, np.ndarray]:
        """``(start, end)`` of tiles, int64; arguments broadcast like numpy arrays."""
        self._check_grid(layer, offset)
        size, shift = self._shift(layer, offset)
        start = shift + np.asarray(index, dtype=np.int64) * size
        return start, start + size

    def compose(self, chrom, start, end, chrom_sizes) -> TileAssignment:
        """Tiles of each interval ``[start[n], end[n])`` on chromosome ``chrom[n]``
        (a code into ``chrom_sizes``), by the greedy rule in the module docstring.

        Intervals must lie inside their chromosome. Vectorised: all intervals'
        pending segments advance one greedy step per round.
        """
        chrom = np.asarray(chrom)
        start = np.asarray(start, dtype=np.int64)
        end = np.asarray(end, dtype=np.int64)
        chrom_sizes = np.asarray(chrom_sizes, dtype=np.int64)
        self._check_intervals(chrom, start, end, chrom_sizes)
        chrom = chrom.astype(np.int32, copy=False)

        sizes = np.asarray(self.sizes, dtype=np.int64)
        steps = sizes // self.offsets  # distance between starts of one layer's tiles

        # Pending segments; kept sorted by (interval, position) every round, so
        # each round's tiles come out in that order too.
        seg_interval = np.flatnonzero(end > start)
        seg_a, seg_b = start[seg_interval], end[seg_interval]
        seg_chrom_len = chrom_sizes[chrom[seg_interval]]
        rounds = []
        first_round = True
        while len(seg_interval):
            # Largest layer with a tile inside [a, b): a multiple of the step in [a, b - size].
            layer = np.zeros(len(seg_interval), dtype=np.int8)
            for k in range(1, self.layers):
                fits = _ceil_div(seg_a, steps[k]) * steps[k] <= seg_b - sizes[k]
                layer[fits] = k
            size, step = sizes[layer], steps[layer]
            # Most centred start: the multiple of step nearest (a + b - size) / 2, ties
            # down. Inside tiles need no clamping (the nearest multiple to the middle of
            # [a, b - size] lies in it when any does); a layer-0 tile for step 2 is
            # clamped to the tiles that exist on the chromosome.
            m = _ceil_div(seg_a + seg_b - size - step, 2 * step)
            last_m = (seg_chrom_len - size) // step  # < 0: chromosome shorter than size
            m = np.minimum(np.maximum(m, 0), last_m)
            tile_start = m * step
            covered_a = np.maximum(seg_a, tile_start)
            covered_b = np.minimum(seg_b, tile_start + size)
            weight = covered_b - covered_a
            # inside > outside, i.e. weight > size - weight; the first round also takes
            # the tiny-interval fallback (any overlap) for intervals that would get no tile.
            take = (2 * weight > size) | (first_round & (weight > 0))
            take &= last_m >= 0
            taken = np.flatnonzero(take)
            seg_interval, seg_chrom_len = seg_interval[taken], seg_chrom_len[taken]
            seg_a, seg_b, covered_a, covered_b = seg_a[taken], seg_b[taken], covered_a[taken], covered_b[taken]
            rounds.append((seg_interval, layer[taken], m[taken], weight[taken], covered_a - start[seg_interval]))
            # The uncovered parts left and right of each tile become the next segments,
            # interleaved (left, right) per tile so that they stay in positional order.
            child_a = np.column_stack([seg_a, covered_b]).ravel()
            child_b = np.column_stack([covered_a, seg_b]).ravel()
            kept = np.flatnonzero(child_b > child_a)
            parent = kept // 2
            seg_interval, seg_chrom_len = seg_interval[parent], seg_chrom_len[parent]
            seg_a, seg_b = child_a[kept], child_b[kept]
            first_round = False
        return self._assemble(rounds, chrom)

    def _check_intervals(self, chrom, start, end, chrom_sizes) -> None:
        if not (chrom.ndim == start.ndim == end.ndim == 1 and len(chrom) == len(start) == len(end)):
            raise ValueError("chrom, start and end must be 1-D arrays of the same length")
        if chrom_sizes.ndim != 1 or np.any(chrom_sizes < 0) or np.any(chrom_sizes > MAX_COORDINATE):
            raise ValueError("chrom_sizes must be a 1-D array of lengths in [0, 2**40]")
        if not np.issubdtype(chrom.dtype, np.integer) and len(chrom):
            raise ValueError("chrom must hold integer chromosome codes")
        if len(chrom) == 0:
            return
        if chrom.min() < 0 or chrom.max() >= len(chrom_sizes):
            raise ValueError(f"chrom codes must be in [0, {len(chrom_sizes)})")
        bad = (start < 0) | (end < start) | (end > chrom_sizes[chrom])
        if np.any(bad):
            n = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"interval {n} [{start[n]}, {end[n]}) on chromosome code {chrom[n]} is not "
                f"inside [0, {chrom_sizes[chrom[n]]}) or has end < start"
            )

    def _assemble(self, rounds, chrom) -> TileAssignment:
        if not rounds:  # no interval of positive length
            empty = np.empty(0, dtype=np.int64)
            rounds = [(empty, empty.astype(np.int8), empty, empty, empty)]
        interval, layer, m, weight, covered_from = (np.concatenate(parts) for parts in zip(*rounds))
        # Each round is sorted by (interval, covered_from); one sort merges the rounds.
        order = _lexsort([interval, covered_from])
        interval, layer, m, weight = interval[order], layer[order], m[order], weight[order]
        return TileAssignment(
            interval=interval,
            chrom=chrom[interval],
            layer=layer,
            offset=(m % self.offsets).astype(np.int16),
            index=m // self.offsets,
            weight=weight,
        )
