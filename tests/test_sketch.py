"""The position sketch's compiled kernel (gidx/_sketch.c) gives, bit for bit, the vectors
of its numpy formulation, on real files (sparse and dense paths) and on edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from gidx.bed import read_bed
from gidx.genome import Genome
from gidx.intervals import IntervalSet
from gidx.sketch import PositionSketch

from conftest import DATA, HG19_SIZES, bed_files

HG19 = DATA / "bed" / "hg19"


@pytest.fixture(scope="module")
def genome():
    return Genome.from_chrom_sizes(HG19_SIZES)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("sketch", [PositionSketch(), PositionSketch(resolutions=(300, 7_000), dims=96, seed=5)])
def test_kernel_equals_numpy_on_real_files(genome, sketch):
    files = bed_files(HG19)
    assert len(files) >= 20
    dense = 0
    for path in files:
        s = read_bed(path, genome, skip_unknown_chroms=True).intervals
        for lengths in (genome.lengths, None):
            assert _same(sketch.embed_one(s, lengths), sketch.embed_one_numpy(s, lengths)), path
        # the dense path runs where a file's bins outnumber 4 per interval and half the genome's
        total = int(np.sum((np.maximum(s.end - 1, s.start) // 1000) - s.start // 1000 + 1))
        dense += total > max(4 * len(s), (int(np.sum(genome.lengths)) // 1000 + len(genome.lengths)) // 2)
    assert dense, "no file took the dense path: the comparison would not cover it"


def test_kernel_edge_cases(genome):
    sk = PositionSketch(dims=64)
    names = genome.names
    cases = [
        IntervalSet(names, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)),
        IntervalSet.from_tuples([("chr1", 5, 5), ("chr1", 999, 1001), ("chr2", 0, 1)], names),
        IntervalSet.from_tuples([("chr1", 0, 249_250_621), ("chrM", 0, 16_571), ("chr1", 0, 249_250_621)], names),
    ]
    for s in cases:
        for lengths in (genome.lengths, None):
            assert _same(sk.embed_one(s, lengths), sk.embed_one_numpy(s, lengths))
    assert not np.any(sk.embed_one(cases[0], genome.lengths))
    from gidx import _sketch

    out = np.zeros(64)
    with pytest.raises(ValueError, match="start <= end"):
        _sketch.sketch_level(np.zeros(1, np.int32), np.array([5]), np.array([4]), 1000, 64, 1, None, out)
    with pytest.raises(ValueError):
        _sketch.sketch_level(np.zeros(1, np.int32), np.array([5]), np.array([6]), 1000, 32, 1, None, out)
