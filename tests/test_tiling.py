"""Tests for gidx.tiling: grid, greedy composition, weights, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gidx.tiling as tiling_module
from gidx.tiling import Tiling, TileAssignment


def compose_one(tiling: Tiling, start: int, end: int, chrom_len: int) -> list[tuple[int, int, int, int]]:
    """(layer, offset, index, weight) of one interval, in output order."""
    result = tiling.compose(np.array([0]), np.array([start]), np.array([end]), np.array([chrom_len]))
    return rows_of(result, 0)


def rows_of(result: TileAssignment, interval: int) -> list[tuple[int, int, int, int]]:
    mine = result.interval == interval
    return list(
        zip(
            result.layer[mine].tolist(),
            result.offset[mine].tolist(),
            result.index[mine].tolist(),
            result.weight[mine].tolist(),
        )
    )


def reference_compose(tiling: Tiling, start: int, end: int, chrom_len: int) -> list[tuple[int, int, int, int]]:
    """The greedy rule written out directly: enumerate candidate tiles, no closed forms."""
    largest = tiling.max_size

    def tiles_near(a: int, b: int, layers):
        for layer in layers:
            size = tiling.sizes[layer]
            for offset in range(tiling.offsets):
                shift = offset * size // tiling.offsets
                first = max(0, (a - largest - shift) // size)
                for index in range(first, tiling.n_tiles(chrom_len, layer, offset)):
                    tile_start = shift + index * size
                    if tile_start > b + largest:
                        break
                    yield layer, offset, index, tile_start, tile_start + size

    found = []  # (covered start, layer, offset, index, weight)

    def cover(a: int, b: int, first_step: bool) -> None:
        if b <= a:
            return
        inside = [t for t in tiles_near(a, b, range(tiling.layers)) if a <= t[3] and t[4] <= b]
        if inside:
            top = max(t[0] for t in inside)
            # most centred: |tile centre - segment centre| (doubled to stay integral), then leftmost
            best = min((t for t in inside if t[0] == top), key=lambda t: (abs(t[3] + t[4] - a - b), t[3]))
        else:
            def covered(t):
                return min(b, t[4]) - max(a, t[3])

            overlapping = [t for t in tiles_near(a, b, [0]) if covered(t) > 0]
            if not overlapping:
                return
            best = min(overlapping, key=lambda t: (-covered(t), abs(t[3] + t[4] - a - b), t[3]))
            inside_bases = covered(best)
            outside_bases = tiling.base - inside_bases
            if not (inside_bases > outside_bases or first_step):
                return
        covered_a, covered_b = max(a, best[3]), min(b, best[4])
        found.append((covered_a, best[0], best[1], best[2], covered_b - covered_a))
        cover(a, covered_a, False)
        cover(covered_b, b, False)

    cover(start, end, True)
    return [row[1:] for row in sorted(found)]


@st.composite
def tilings(draw) -> Tiling:
    offsets = draw(st.integers(1, 4))
    return Tiling(base=offsets * draw(st.integers(1, 6)), layers=draw(st.integers(1, 4)), offsets=offsets)


@st.composite
def batches(draw):
    """A tiling, chromosome sizes, and intervals on them (some zero-length, some tiny)."""
    tiling = draw(tilings())
    chrom_sizes = draw(st.lists(st.integers(0, 400), min_size=1, max_size=3))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        chrom = draw(st.integers(0, len(chrom_sizes) - 1))
        start = draw(st.integers(0, chrom_sizes[chrom]))
        end = draw(st.integers(start, min(chrom_sizes[chrom], start + draw(st.sampled_from([3, 20, 80, 400])))))
        rows.append((chrom, start, end))
    chrom = np.array([r[0] for r in rows], dtype=np.int32)
    start = np.array([r[1] for r in rows], dtype=np.int64)
    end = np.array([r[2] for r in rows], dtype=np.int64)
    return tiling, np.array(chrom_sizes, dtype=np.int64), chrom, start, end


# ---------------------------------------------------------------- hand-checked examples
# Tiling(base=100, layers=3, offsets=4): sizes 100/200/400, starts on multiples of the
# steps 25/50/100; the tile starting at m * step is (offset m % 4, index m // 4).
HAND = Tiling(base=100, layers=3, offsets=4)


def test_interval_equal_to_a_tile():
    # [250, 450) is 200 bp starting at 5 * 50: layer 1, offset 5 % 4 = 1, index 5 // 4 = 1,
    # i.e. [50 + 1 * 200, 50 + 2 * 200). No 400 bp tile fits.
    assert compose_one(HAND, 250, 450, 10_000) == [(1, 1, 1, 200)]


def test_thousand_bp_interval():
    # [0, 1000): largest fitting tile is 400 bp; centred start (1000 - 400) / 2 = 300
    # = 3 * 100 -> [300, 700) (layer 2, offset 3, index 0).
    # Left [0, 300): 200 bp tile centred at start (300 - 200) / 2 = 50 -> [50, 250)
    # (m = 1: offset 1, index 0). Right [700, 1000): start 750 -> m = 15: offset 3, index 3.
    # The four 50 bp leftovers: the best 100 bp tile covers 50 and has 50 outside ->
    # refused (inside must exceed outside). Coverage 800 / 1000.
    assert compose_one(HAND, 0, 1000, 10_000) == [(1, 1, 0, 200), (2, 3, 0, 400), (1, 3, 3, 200)]


def test_overhanging_tile_taken_when_inside_exceeds_outside():
    # [0, 370): 200 bp tile centred at 85 -> nearest multiple of 50 is 100 -> [100, 300)
    # (m = 2: offset 2, index 0). Left [0, 100) is exactly tile (0, 0, 0).
    # Right [300, 370) holds no tile; centred 100 bp start 285 -> nearest multiple of 25
    # is 275 -> [275, 375): 70 bp inside, 25 on the neighbour + 5 past the end outside;
    # 70 > 30, taken with weight 70 (m = 11: offset 3, index 2). Full coverage.
    assert compose_one(HAND, 0, 370, 10_000) == [(0, 0, 0, 100), (1, 2, 0, 200), (0, 3, 2, 70)]


def test_sixty_bp_interval_gets_a_tile():
    # [1010, 1070): centred 100 bp start 990 -> nearest multiple of 25 is 1000 ->
    # [1000, 1100): 60 inside > 40 outside (m = 40: offset 0, index 10).
    assert compose_one(HAND, 1010, 1070, 10_000) == [(0, 0, 10, 60)]


def test_tie_goes_left():
    # [0, 175): centred start 37.5 is equally far from 25 and 50 -> 25, [25, 125)
    # (m = 1: offset 1, index 0). Leftovers [0, 25) and [125, 175) cover <= half a tile.
    assert compose_one(HAND, 0, 175, 10_000) == [(0, 1, 0, 100)]


def test_tiny_interval_fallback_and_chromosome_end():
    # [1030, 1040), 10 bp: no tile passes the noise rule, so the fallback takes the most
    # overlapping, most centred 100 bp tile: centred start 985 -> 975 (m = 39: offset 3,
    # index 9), weight 10.
    assert compose_one(HAND, 1030, 1040, 10_000) == [(0, 3, 9, 10)]
    # Chromosome of 1010 bp: the last 100 bp tile is [900, 1000) (m = 36). [990, 1010)
    # overlaps it by 10 (fallback, weight 10); [1000, 1010) overlaps no tile at all.
    assert compose_one(HAND, 990, 1010, 1010) == [(0, 0, 9, 10)]
    assert compose_one(HAND, 1000, 1010, 1010) == []
    # Zero-length intervals and chromosomes shorter than the smallest tile: no tiles.
    assert compose_one(HAND, 500, 500, 10_000) == []
    assert compose_one(HAND, 0, 99, 99) == []


# ---------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None)
@given(batches())
def test_matches_direct_greedy(batch):
    tiling, chrom_sizes, chrom, start, end = batch
    result = tiling.compose(chrom, start, end, chrom_sizes)
    for n in range(len(start)):
        assert rows_of(result, n) == reference_compose(tiling, int(start[n]), int(end[n]), int(chrom_sizes[chrom[n]]))


@settings(max_examples=300, deadline=None)
@given(batches())
def test_tiles_on_grid_inside_chromosome_with_disjoint_weights(batch):
    tiling, chrom_sizes, chrom, start, end = batch
    result = tiling.compose(chrom, start, end, chrom_sizes)
    assert result.interval.dtype == np.int64 and result.chrom.dtype == np.int32
    assert result.layer.dtype == np.int8 and result.offset.dtype == np.int16
    assert result.index.dtype == np.int64 and result.weight.dtype == np.int64
    assert np.all(np.diff(result.interval) >= 0)
    np.testing.assert_array_equal(result.chrom, chrom[result.interval])

    size = np.array(tiling.sizes)[result.layer]
    tile_start, tile_end = tiling.tile_bounds(result.layer, result.offset, result.index)
    assert np.all((result.offset >= 0) & (result.offset < tiling.offsets) & (result.index >= 0))
    assert np.all((tile_start - result.offset * size // tiling.offsets) % size == 0)
    assert np.all(tile_end - tile_start == size)
    assert np.all((tile_start >= 0) & (tile_end <= chrom_sizes[result.chrom]))

    for n in range(len(start)):
        mine = result.interval == n
        a, b = int(start[n]), int(end[n])
        weights = result.weight[mine]
        assert np.all(weights > 0) and weights.sum() <= b - a
        # Weights are disjoint pieces of each tile's overlap with the interval, so they
        # cannot add up to more than the union of those overlaps.
        covered = np.zeros(b - a, dtype=bool)
        for s, e, w in zip(tile_start[mine], tile_end[mine], weights):
            assert w <= min(b, e) - max(a, s)
            covered[max(a, s) - a : min(b, e) - a] = True
        assert weights.sum() <= covered.sum()


@settings(max_examples=300, deadline=None)
@given(batches())
def test_noise_rule_except_tiny_interval_fallback(batch):
    tiling, chrom_sizes, chrom, start, end = batch
    result = tiling.compose(chrom, start, end, chrom_sizes)
    size = np.array(tiling.sizes)[result.layer]
    for n in np.unique(result.interval[2 * result.weight <= size]):
        # Breaking the rule: only as the single layer-0 tile of an interval that
        # overlaps nothing better.
        (layer, offset, index, weight), *rest = rows_of(result, n)
        assert rest == [] and layer == 0
        chrom_len = int(chrom_sizes[chrom[n]])
        best_overlap = max(
            min(int(end[n]), s + tiling.base) - max(int(start[n]), s)
            for o in range(tiling.offsets)
            for s in tiling.tile_bounds(0, o, np.arange(tiling.n_tiles(chrom_len, 0, o)))[0].tolist()
        )
        assert weight == best_overlap
        if tiling.offsets >= 2:
            assert 2 * (end[n] - start[n]) <= tiling.base or end[n] > chrom_len - tiling.base
    # Every interval that overlaps a tile gets one.
    for n in range(len(start)):
        if n not in result.interval:
            chrom_len = int(chrom_sizes[chrom[n]])
            tile_ends = [
                tiling.tile_bounds(0, o, tiling.n_tiles(chrom_len, 0, o) - 1)[1]
                for o in range(tiling.offsets)
                if tiling.n_tiles(chrom_len, 0, o)
            ]
            assert end[n] == start[n] or start[n] >= max(tile_ends, default=0)


@settings(max_examples=200, deadline=None)
@given(tilings(), st.data())
def test_interval_equal_to_tile_maps_to_it(tiling, data):
    layer = data.draw(st.integers(0, tiling.layers - 1))
    offset = data.draw(st.integers(0, tiling.offsets - 1))
    index = data.draw(st.integers(0, 50))
    tile_start, tile_end = (int(x) for x in tiling.tile_bounds(layer, offset, index))
    chrom_len = tile_end + data.draw(st.integers(0, 3 * tiling.max_size))
    assert compose_one(tiling, tile_start, tile_end, chrom_len) == [(layer, offset, index, tiling.sizes[layer])]


@settings(max_examples=100, deadline=None)
@given(batches(), st.randoms(use_true_random=False))
def test_independent_of_order_and_batching(batch, rng):
    tiling, chrom_sizes, chrom, start, end = batch
    result = tiling.compose(chrom, start, end, chrom_sizes)
    again = tiling.compose(chrom, start, end, chrom_sizes)
    for field in ("interval", "chrom", "layer", "offset", "index", "weight"):
        np.testing.assert_array_equal(getattr(result, field), getattr(again, field))
    permutation = list(range(len(start)))
    rng.shuffle(permutation)
    permuted = tiling.compose(chrom[permutation], start[permutation], end[permutation], chrom_sizes)
    for new, old in enumerate(permutation):
        assert rows_of(permuted, new) == rows_of(result, old)
        single = tiling.compose(chrom[old : old + 1], start[old : old + 1], end[old : old + 1], chrom_sizes)
        assert rows_of(single, 0) == rows_of(result, old)


@settings(max_examples=100, deadline=None)
@given(batches())
def test_unique_tiles_round_trip(batch):
    tiling, chrom_sizes, chrom, start, end = batch
    result = tiling.compose(chrom, start, end, chrom_sizes)
    keys, inverse = result.unique_tiles()
    for field in ("chrom", "layer", "offset", "index"):
        np.testing.assert_array_equal(getattr(keys, field)[inverse], getattr(result, field))
    as_tuples = list(zip(keys.chrom.tolist(), keys.layer.tolist(), keys.offset.tolist(), keys.index.tolist()))
    assert as_tuples == sorted(set(as_tuples))


def test_unpacked_sort_path_gives_same_result(monkeypatch):
    # Packed sort keys are used unless they could overflow; force the other path.
    rng = np.random.default_rng(0)
    start = rng.integers(0, 90_000, 500)
    end = start + rng.integers(0, 3_000, 500)
    chrom = rng.integers(0, 2, 500)
    sizes = np.array([100_000, 95_000])
    packed = Tiling().compose(chrom, start, end, sizes)
    packed_keys, packed_inverse = packed.unique_tiles()
    monkeypatch.setattr(tiling_module, "PACKED_KEY_LIMIT", 1)
    unpacked = Tiling().compose(chrom, start, end, sizes)
    unpacked_keys, unpacked_inverse = unpacked.unique_tiles()
    for field in ("interval", "chrom", "layer", "offset", "index", "weight"):
        np.testing.assert_array_equal(getattr(packed, field), getattr(unpacked, field))
    for field in ("chrom", "layer", "offset", "index"):
        np.testing.assert_array_equal(getattr(packed_keys, field), getattr(unpacked_keys, field))
    np.testing.assert_array_equal(packed_inverse, unpacked_inverse)


# ---------------------------------------------------------------- grid API
def test_sizes_n_tiles_and_bounds():
    tiling = Tiling()
    assert tiling.sizes == (128, 256, 512, 1024) and tiling.max_size == 1024
    # offset 3 of layer 1 starts at 3 * 256 / 4 = 192; tiles [192, 448), [448, 704), ...
    assert tiling.n_tiles(1000, 1, 3) == 3  # the 4th would end at 1216 > 1000
    assert tiling.n_tiles(191, 1, 3) == 0 and tiling.n_tiles(0, 0, 0) == 0
    start, end = tiling.tile_bounds(1, 3, np.array([0, 2]))
    assert start.tolist() == [192, 704] and end.tolist() == [448, 960]
    start, end = tiling.tile_bounds(np.array([0, 3]), np.array([1, 0]), 5)
    assert start.tolist() == [32 + 5 * 128, 5 * 1024] and end.tolist() == [32 + 6 * 128, 6 * 1024]


@settings(max_examples=100, deadline=None)
@given(tilings(), st.integers(0, 2000), st.data())
def test_n_tiles_counts_tiles_inside_chromosome(tiling, chrom_len, data):
    layer = data.draw(st.integers(0, tiling.layers - 1))
    offset = data.draw(st.integers(0, tiling.offsets - 1))
    n = tiling.n_tiles(chrom_len, layer, offset)
    _, ends = tiling.tile_bounds(layer, offset, np.arange(n + 1))
    assert np.all(ends[:n] <= chrom_len) and ends[n] > chrom_len


def test_params_complete_and_distinct():
    default = Tiling()
    assert default.params() == Tiling(128, 4, 4).params()
    assert json.loads(json.dumps(default.params())) == default.params()
    variants = [Tiling(256, 4, 4), Tiling(128, 3, 4), Tiling(128, 4, 2)]
    assert len({json.dumps(t.params(), sort_keys=True) for t in [default, *variants]}) == 4
    assert set(default.params()) >= {"base", "layers", "offsets"}


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base=0),
        dict(base=-128),
        dict(base=128.0),
        dict(base=True),
        dict(layers=0),
        dict(offsets=0),
        dict(base=100, offsets=3),  # shifts of 100/3 bp are not whole bases
        dict(base=2**17, offsets=2**16),  # offset codes are int16
        dict(base=2**20, layers=22),  # largest tile 2**41 bp
        dict(layers=10**9),
    ],
)
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        Tiling(**kwargs)


def test_require_max_size():
    Tiling().require_max_size(1024)
    with pytest.raises(ValueError, match="1024 bp"):
        Tiling().require_max_size(1000)


@pytest.mark.parametrize(
    "chrom, start, end, sizes",
    [
        ([0], [10], [5], [100]),  # end < start
        ([0], [-1], [5], [100]),  # before the chromosome
        ([0], [90], [101], [100]),  # past the chromosome end
        ([1], [0], [5], [100]),  # unknown chromosome code
        ([0, 0], [0], [5], [100]),  # ragged columns
        ([0.0], [0], [5], [100]),  # chromosome codes must be integers
        ([0], [0], [5], [-1]),  # negative chromosome size
    ],
)
def test_invalid_intervals(chrom, start, end, sizes):
    with pytest.raises(ValueError):
        Tiling().compose(np.array(chrom), np.array(start), np.array(end), np.array(sizes))


def test_invalid_grid_arguments():
    with pytest.raises(ValueError):
        Tiling().tile_bounds(4, 0, 0)
    with pytest.raises(ValueError):
        Tiling().n_tiles(1000, 0, 4)


def test_empty_input():
    result = Tiling().compose(np.array([], np.int32), np.array([], np.int64), np.array([], np.int64), np.array([10]))
    assert len(result) == 0 and result.layer.dtype == np.int8
    keys, inverse = result.unique_tiles()
    assert len(keys) == 0 and len(inverse) == 0
