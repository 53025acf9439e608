"""The tile memo (content address, lazy fill, resume, chunk-aligned writes, verify) and
interval embeddings composed from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from gidx.bed import read_bed
from gidx.embed import interval_embeddings
from gidx.encoders import load_encoder
from gidx.errors import GidxError, InputError
from gidx.genome import Genome
from gidx.intervals import IntervalSet
from gidx.memo import TileMemo, memo_address, open_index_memo
from gidx.tiling import TileKeys, Tiling

DATA = Path(__file__).resolve().parents[1] / "gidx" / "data" / "sacCer3"
# small settings keep fills of chrI (230 kbp) quick yet many chunks long
SMALL_TILING = Tiling(128, 2, 2)
SMALL_CHUNK_BP = 8192  # 64 tiles of 128 bp per chunk: chrI has 58 chunks per layer


@pytest.fixture(scope="module")
def yeast(tmp_path_factory) -> Genome:
    return Genome.from_fasta(DATA / "S_cerevisiae.fasta.gz", cache_dir=tmp_path_factory.mktemp("fai"))


@pytest.fixture(scope="module")
def kmer16():
    return load_encoder("kmer:dim=16")


def small_memo(root, genome, encoder, **kwargs) -> TileMemo:
    return TileMemo(root, genome, SMALL_TILING, encoder, chunk_bp=SMALL_CHUNK_BP, **kwargs)


def memo_arrays(memo: TileMemo) -> dict[str, bytes]:
    group = zarr.open_group(memo.path, mode="r")
    return {name: array[:].tobytes() for name, array in sorted(group.arrays())}


def keys_of(tiling: Tiling, genome: Genome, intervals: IntervalSet) -> TileKeys:
    return tiling.compose(intervals.chrom, intervals.start, intervals.end, genome.lengths).unique_tiles()[0]


def yeast_bed(genome: Genome, relative: str) -> IntervalSet:
    return read_bed(DATA / "bed" / relative, genome, aliases={"chrM": "chrmt"}).intervals


# ---- content address -------------------------------------------------------------


def test_address_changes_with_every_input(yeast, tmp_path):
    base = TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer"))
    assert TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer")).address == base.address
    sizes = tmp_path / "g.sizes"
    sizes.write_text("".join(f"{n}\t{l}\n" for n, l in zip(yeast.names, yeast.lengths_list)))
    synthetic = Genome.from_chrom_sizes(sizes)
    variants = [
        TileMemo(tmp_path, yeast, Tiling(offsets=2), load_encoder("kmer")),
        TileMemo(tmp_path, yeast, Tiling(base=64), load_encoder("kmer")),
        TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer:k=11")),
        TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer:dim=128")),
        TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer"), dtype="float16"),
        TileMemo(tmp_path, synthetic, Tiling(), load_encoder("kmer")),  # same names and lengths, other sequence
        TileMemo(tmp_path, Genome.from_chrom_sizes(sizes, seed=1), Tiling(), load_encoder("kmer")),
    ]
    addresses = {m.address for m in variants} | {base.address}
    assert len(addresses) == len(variants) + 1
    assert base.address == memo_address(base.inputs)


def test_group_records_inputs_and_is_created_lazily(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path / "tiles.zarr", yeast, kmer16)
    assert not memo.path.exists() and memo.info()["exists"] is False
    memo.get(keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 1000, 1500)], tuple(yeast.names))))
    attrs = json.loads((memo.path / "zarr.json").read_text())["attributes"]
    assert attrs["inputs"] == json.loads(json.dumps(memo.inputs))
    assert attrs["chunk_bp"] == SMALL_CHUNK_BP
    assert sorted(zarr.open_group(tmp_path / "tiles.zarr", mode="r").group_keys()) == [memo.address]


def test_rejects_tiles_longer_than_the_encoder_takes(yeast, tmp_path):
    class ShortEncoder:
        name, dim, max_len = "short", 4, 500

        def identity(self):
            return {"name": self.name}

    with pytest.raises(GidxError, match="1024 bp"):
        TileMemo(tmp_path, yeast, Tiling(), ShortEncoder())
    with pytest.raises(GidxError):
        TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer"), dtype="int8")


# ---- lookups ----------------------------------------------------------------------


def test_get_returns_encoder_output_of_each_tile(yeast, tmp_path):
    tiling, encoder = Tiling(128, 3, 2), load_encoder("kmer:dim=32")
    memo = TileMemo(tmp_path, yeast, tiling, encoder, chunk_bp=32768)
    rng = np.random.default_rng(0)
    chrom = rng.integers(0, len(yeast.names), 60).astype(np.int32)
    start = (rng.random(60) * (yeast.lengths[chrom] - 1500)).astype(np.int64)
    tiles = tiling.compose(chrom, start, start + rng.integers(1, 1500, 60), yeast.lengths)
    keys, _ = tiles.unique_tiles()
    got = memo.get(keys)
    starts, ends = tiling.tile_bounds(keys.layer, keys.offset, keys.index)
    expected = encoder.embed(yeast.fetch(keys.chrom, starts, ends))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.float32


def test_second_get_computes_nothing(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    tata = yeast_bed(yeast, "winston_annotations/rhee2012-TATAboxes-cleaned.bed")
    keys = keys_of(SMALL_TILING, yeast, IntervalSet(tata.chroms, tata.chrom[:100], tata.start[:100], tata.end[:100]))
    first = memo.get(keys)
    assert memo.stats.tiles_computed > 0 and memo.stats.tiles_read == 0
    memo.stats.reset()
    np.testing.assert_array_equal(memo.get(keys), first)
    assert memo.stats.tiles_computed == 0 and memo.stats.tiles_read == len(keys)
    assert memo.stats.chunks_cached > 0 and memo.stats.chunks_read == 0
    # a new process (new memo object) reads the same from disk
    reopened = small_memo(tmp_path, yeast, kmer16)
    np.testing.assert_array_equal(reopened.get(keys), first)
    assert reopened.stats.tiles_computed == 0 and reopened.stats.chunks_read > 0


def test_cache_smaller_than_a_lookup_gives_the_same_embeddings(yeast, kmer16, tmp_path):
    iv = yeast_bed(yeast, "winston_annotations/rhee2012-TATAboxes-cleaned.bed")
    keys = keys_of(SMALL_TILING, yeast, IntervalSet(iv.chroms, iv.chrom[:200], iv.start[:200], iv.end[:200]))
    roomy = small_memo(tmp_path, yeast, kmer16)
    expected = roomy.get(keys)
    tiny = small_memo(tmp_path, yeast, kmer16, cache_bytes=0)  # one chunk per layer at a time
    assert tiny._cache.n_slots == 1
    for _ in range(2):
        np.testing.assert_array_equal(tiny.get(keys), expected)
    assert tiny.stats.tiles_computed == 0


def test_missing_tiles_fill_whole_chunks_and_masks_follow_data(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    one = IntervalSet.from_tuples([("chrII", 100_000, 100_128)], tuple(yeast.names))
    keys = keys_of(SMALL_TILING, yeast, one)
    assert len(keys) == 1
    memo.get(keys)
    chunk_tiles = SMALL_CHUNK_BP // 128
    assert memo.stats.chunks_computed == 1 and memo.stats.tiles_computed == chunk_tiles
    group = zarr.open_group(memo.path, mode="r")
    for name, filled in group.arrays():
        if not name.startswith("filled."):
            continue
        mask, data = filled[:], group["emb." + name[len("filled."):]][:]
        # filled exactly where data is, whole chunks only
        np.testing.assert_array_equal(mask, ~np.isnan(data).any(axis=1))
        assert mask.sum() in (0, chunk_tiles)
        runs = np.flatnonzero(mask)
        if len(runs):
            assert runs[0] % chunk_tiles == 0 and runs[-1] - runs[0] + 1 == chunk_tiles


def test_unsorted_or_invalid_keys_rejected(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    bad_index = TileKeys(np.array([0], np.int32), np.array([0], np.int8), np.array([0], np.int16),
                         np.array([10**7]))
    with pytest.raises(GidxError):
        memo.get(bad_index)
    unsorted = TileKeys(np.array([0, 1, 0], np.int32), np.zeros(3, np.int8), np.zeros(3, np.int16),
                        np.array([0, 0, 1]))
    with pytest.raises(GidxError, match="sorted"):
        memo.get(unsorted)


# ---- fill, crash, resume -------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_fill(yeast, kmer16, tmp_path_factory) -> dict[str, bytes]:
    """chrI filled in one uninterrupted run."""
    memo = small_memo(tmp_path_factory.mktemp("ref"), yeast, kmer16)
    report = memo.fill(["chrI"])
    assert report.computed == report.chunks == 4 * 29
    return memo_arrays(memo)


def test_fill_arguments(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    with pytest.raises(GidxError, match="all=True"):
        memo.fill()
    with pytest.raises(GidxError, match="chrZZ"):
        memo.fill(["chrZZ"])


def test_fill_resumes_after_an_exception(yeast, kmer16, tmp_path, reference_fill):
    memo = small_memo(tmp_path, yeast, kmer16)

    def stop_after_10(done, total, label):
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        memo.fill(["chrI"], progress=stop_after_10)
    resumed = small_memo(tmp_path, yeast, kmer16)
    report = resumed.fill(["chrI"])
    assert report.skipped == 10 and report.computed == report.chunks - 10
    assert memo_arrays(resumed) == reference_fill
    assert resumed.fill(["chrI"]).computed == 0


class CrashOnMask:
    """A grid's mask array that dies on write: the process 'crashes' after writing data."""

    def __init__(self, filled):
        self.filled = filled

    def __setitem__(self, key, value):
        raise SystemExit("killed")

    def __getitem__(self, key):
        return self.filled[key]


def test_crash_between_data_and_mask_recomputes_the_chunk(yeast, kmer16, tmp_path, reference_fill):
    memo = small_memo(tmp_path, yeast, kmer16)
    grid = (0, 0, 0)
    emb, filled = memo._grid_arrays(grid, create=True)

    memo._arrays[grid] = (emb, CrashOnMask(filled))
    with pytest.raises(SystemExit):
        memo.fill(["chrI"])
    assert not np.isnan(emb[:64]).any() and not filled[:64].any()  # data without mask
    resumed = small_memo(tmp_path, yeast, kmer16)
    report = resumed.fill(["chrI"])
    assert report.skipped == 0 and report.computed == report.chunks
    assert memo_arrays(resumed) == reference_fill


def test_fill_resumes_after_sigkill(yeast, kmer16, tmp_path, reference_fill):
    root = tmp_path / "memo"
    script = textwrap.dedent(f"""
        import sys
        from gidx.encoders import load_encoder
        from gidx.genome import Genome
        from gidx.memo import TileMemo
        from gidx.tiling import Tiling
        g = Genome.from_fasta({str(DATA / "S_cerevisiae.fasta.gz")!r}, cache_dir={str(tmp_path / "fai")!r})
        memo = TileMemo({str(root)!r}, g, Tiling(128, 2, 2), load_encoder("kmer:dim=16"), chunk_bp={SMALL_CHUNK_BP})
        memo.fill(["chrI"], progress=lambda done, total, label: print(done, total, flush=True))
        print("finished", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("finished") or int(line.split()[0]) >= 20:
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert line.strip() != "finished", "the fill ended before it was killed"
    resumed = small_memo(root, yeast, kmer16)
    report = resumed.fill(["chrI"])
    assert 20 <= report.skipped < report.chunks and report.skipped + report.computed == report.chunks
    assert memo_arrays(resumed) == reference_fill


def test_concurrent_writers_of_the_same_chunks_lose_nothing(yeast, kmer16, tmp_path, reference_fill):
    """Two processes look up different tiles of the same chunks at once. Each computes
    and writes whole chunks, so whichever write lands last is complete: every chunk
    either of them touched ends up fully filled and equal to an uninterrupted fill."""
    root = tmp_path / "memo"
    script = textwrap.dedent(f"""
        import sys
        from gidx.encoders import load_encoder
        from gidx.genome import Genome
        from gidx.intervals import IntervalSet
        from gidx.memo import TileMemo
        from gidx.tiling import Tiling
        g = Genome.from_fasta({str(DATA / "S_cerevisiae.fasta.gz")!r}, cache_dir={str(tmp_path / "fai")!r})
        tiling = Tiling(128, 2, 2)
        memo = TileMemo({str(root)!r}, g, tiling, load_encoder("kmer:dim=16"), chunk_bp={SMALL_CHUNK_BP})
        first = int(sys.argv[1])
        rows = [("chrI", s, s + 300) for s in range(first, 200_000, 2000)]  # interleaved between the processes
        iv = IntervalSet.from_tuples(rows, tuple(g.names))
        memo.get(tiling.compose(iv.chrom, iv.start, iv.end, g.lengths).unique_tiles()[0])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(first)]) for first in (0, 1000)]
    assert [p.wait() for p in procs] == [0, 0]
    memo = small_memo(root, yeast, kmer16)
    stored = memo_arrays(memo)
    grids = [name[len("emb."):] for name in stored if name.startswith("emb.")]
    assert len(grids) == 4
    # every tile either process asked for is filled
    asked = IntervalSet.from_tuples([("chrI", s, s + 300) for s in range(0, 200_000, 1000)], tuple(yeast.names))
    keys = keys_of(SMALL_TILING, yeast, asked)
    for c, layer, offset, index in zip(keys.chrom, keys.layer, keys.offset, keys.index):
        assert np.frombuffer(stored[f"filled.c{c}.l{layer}.o{offset}"], dtype=bool)[index]
    for grid in grids:
        mask = np.frombuffer(stored["filled." + grid], dtype=bool)
        rows = np.frombuffer(stored["emb." + grid], dtype=np.float32).reshape(len(mask), -1)
        reference = np.frombuffer(reference_fill["emb." + grid], dtype=np.float32).reshape(len(mask), -1)
        np.testing.assert_array_equal(rows[mask], reference[mask])
        assert np.isnan(rows[~mask]).all()


# ---- info, verify, corruption ------------------------------------------------------


def test_info_reports_fill_and_size(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    memo.fill(["chrI"])
    info = memo.info()
    n_chrI = sum(SMALL_TILING.n_tiles(yeast.lengths_list[0], layer, offset)
                 for layer in range(2) for offset in range(2))
    assert info["filled"] == n_chrI and info["tiles"] > n_chrI
    assert [layer["tile_size"] for layer in info["layers"]] == [128, 256]
    assert info["bytes_on_disk"] > 0 and info["address"] == memo.address


def test_verify_finds_and_repairs_corruption(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    memo.fill(["chrI"])
    assert memo.verify(sample=100)["ok"]
    emb = zarr.open_array(memo.path / "emb.c0.l0.o1", mode="r+")
    emb[64:128] = emb[64:128] * -1  # wrong values in one whole chunk, mask still set
    chunk_file = memo.path / "emb.c0.l1.o0" / "c" / "2" / "0"
    chunk_file.write_bytes(b"not zstd at all")  # an unreadable chunk
    report = memo.verify(sample=10**6, repair=True)  # sample everything
    assert not report["ok"] and report["bad_chunks"] == 2 and report["repaired"] == 2
    reasons = {(b["layer"], b["offset"]): b["reason"] for b in report["bad_tiles"]}
    assert reasons[(0, 1)].startswith("differs") and reasons[(1, 0)].startswith("unreadable")
    again = small_memo(tmp_path, yeast, kmer16)
    assert again.verify(sample=10**6)["ok"]
    assert again.fill(["chrI"]).computed == 0


def test_verify_index_memos_for_gidx_check(tmp_path):
    from gidx.index import Index
    from gidx.memo import verify_index_memos

    index = Index.create(tmp_path / "idx", fasta=DATA / "S_cerevisiae.fasta.gz")
    assert verify_index_memos(index) == []  # no memo yet
    memo = open_index_memo(index.path, index.genome, SMALL_TILING, load_encoder("kmer:dim=16"),
                           chunk_bp=SMALL_CHUNK_BP)
    memo.fill(["chrI"])
    assert verify_index_memos(index, samples=50) == []
    emb = zarr.open_array(memo.path / "emb.c0.l1.o1", mode="r+")
    emb[:] = 0.5  # every tile of a grid wrong
    problems = verify_index_memos(index, samples=10**6)
    assert problems and all(line.startswith(f"tile memo {memo.address[:12]}") for line in problems)
    lines = verify_index_memos(index, samples=10**6, repair=True)
    assert lines[-1].startswith("refilled")
    assert verify_index_memos(index, samples=10**6) == []


def test_get_recomputes_unreadable_chunks(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    keys = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 2000)], tuple(yeast.names)))
    expected = memo.get(keys)
    for f in memo.path.glob("emb.*/c/**/*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    fresh = small_memo(tmp_path, yeast, kmer16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(fresh.get(keys), expected)
    assert any("unreadable" in str(w.message) for w in caught)
    assert fresh.stats.chunks_computed >= 1


def test_float16_memo(yeast, tmp_path):
    keys = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 2000)], tuple(yeast.names)))
    enc = load_encoder("kmer:dim=64")
    half = small_memo(tmp_path, yeast, enc, dtype="float16").get(keys)
    assert half.dtype == np.float32
    np.testing.assert_allclose(half, small_memo(tmp_path, yeast, enc).get(keys), atol=2e-3)


def test_open_index_memo_lives_in_the_index(yeast, kmer16, tmp_path):
    memo = open_index_memo(tmp_path, yeast, Tiling(), kmer16)
    assert memo.path.parent == tmp_path / "tiles.zarr"


# ---- interval embeddings --------------------------------------------------------------


@pytest.mark.parametrize("weighting", ["bases", "sqrt"])
def test_tiles_mode_is_the_weighted_mean_of_tiles(yeast, tmp_path, weighting):
    tiling, enc = Tiling(), load_encoder("kmer:dim=64")
    memo = TileMemo(tmp_path, yeast, tiling, enc, chunk_bp=16384)
    iv = IntervalSet.from_tuples([("chrI", 1000, 3100), ("chrII", 500, 520), ("chrI", 50, 50), ("chrIV", 7, 900)],
                                 tuple(yeast.names))
    out = interval_embeddings(iv, yeast, tiling, memo, weighting=weighting)
    tiles = tiling.compose(iv.chrom, iv.start, iv.end, yeast.lengths)
    starts, ends = tiling.tile_bounds(tiles.layer, tiles.offset, tiles.index)
    tile_emb = enc.embed(yeast.fetch(tiles.chrom, starts, ends))
    for i in range(len(iv)):
        rows = tiles.interval == i
        if rows.any():
            w = tiles.weight[rows].astype(np.float64)
            w = w if weighting == "bases" else np.sqrt(w)
            np.testing.assert_allclose(out[i], (tile_emb[rows] * w[:, None]).sum(0) / w.sum(), atol=1e-6)
    np.testing.assert_array_equal(out[2], 0)  # zero-length: no tile, zero vector
    with pytest.raises(GidxError, match="weighting"):
        interval_embeddings(iv, yeast, tiling, memo, weighting="coverage")


def test_direct_mode_windows_long_intervals(yeast):
    class Windowed:
        """kmer with a length limit, to exercise the windowing rule."""

        name, max_len = "windowed", 100
        inner = load_encoder("kmer:k=5,dim=32")
        dim = inner.dim

        def identity(self):
            return {"name": self.name}

        def embed(self, seqs):
            assert max(map(len, seqs)) <= self.max_len
            return self.inner.embed(seqs)

        collate, forward = (lambda self, s: s), (lambda self, b: self.embed(b))
        decollate = lambda self, h, b: h  # noqa: E731

    enc = Windowed()
    iv = IntervalSet.from_tuples([("chrI", 1000, 1250), ("chrI", 0, 100), ("chrI", 5, 5)], tuple(yeast.names))
    out = interval_embeddings(iv, yeast, Tiling(), None, mode="direct", encoder=enc)
    windows = [yeast.sequence("chrI", a, b) for a, b in [(1000, 1083), (1083, 1166), (1166, 1250)]]
    np.testing.assert_allclose(out[0], enc.inner.embed(windows).mean(0), atol=1e-6)
    np.testing.assert_array_equal(out[1], enc.inner.embed([yeast.sequence("chrI", 0, 100)])[0])
    np.testing.assert_array_equal(out[2], 0)


def test_tile_path_close_to_direct_on_real_intervals(yeast, tmp_path):
    """A sanity bound; benchmarks/bench_memo.py measures fidelity properly."""
    tiling = Tiling()
    memo = TileMemo(tmp_path, yeast, tiling, load_encoder("kmer:dim=128"), chunk_bp=16384)
    # accessible regions (ATAC), 50 bp to 2 kbp, on chrIV
    iv = yeast_bed(yeast, "macs3_hmmratac/hmmratac_yeast500k_accessible_regions.narrowPeak.gz")
    keep = np.flatnonzero((iv.chrom == yeast.code_of["chrIV"]) & (iv.end - iv.start >= 300))[:150]
    iv = IntervalSet(iv.chroms, iv.chrom[keep], iv.start[keep], iv.end[keep])
    tiles = interval_embeddings(iv, yeast, tiling, memo)
    direct = interval_embeddings(iv, yeast, tiling, memo, mode="direct")
    cos = (tiles * direct).sum(1) / np.linalg.norm(tiles, axis=1) / np.linalg.norm(direct, axis=1)
    assert cos.mean() > 0.9 and np.percentile(cos, 5) > 0.8


def test_intervals_recoded_by_chromosome_name(yeast, tmp_path):
    memo = TileMemo(tmp_path, yeast, Tiling(), load_encoder("kmer:dim=16"))
    own = IntervalSet.from_tuples([("chrII", 1000, 2000), ("chrI", 10, 900)])  # codes in order of appearance
    canonical = IntervalSet.from_tuples([("chrII", 1000, 2000), ("chrI", 10, 900)], tuple(yeast.names))
    np.testing.assert_array_equal(interval_embeddings(own, yeast, Tiling(), memo),
                                  interval_embeddings(canonical, yeast, Tiling(), memo))
    with pytest.raises(InputError, match="chrZ"):
        interval_embeddings(IntervalSet.from_tuples([("chrZ", 1, 5)]), yeast, Tiling(), memo)
    with pytest.raises(GidxError):
        interval_embeddings(canonical, yeast, Tiling(offsets=2), memo)


def test_hyenadna_encoder_plugs_in(yeast, tmp_path):
    """The model-backed encoder goes through the same memo and pipeline unchanged."""
    pytest.importorskip("torch")
    checkpoint = Path(__file__).parent / "data" / "hyenadna" / "micro-random"
    if not (checkpoint / "model.safetensors").is_file():
        pytest.skip("no HyenaDNA test checkpoint")
    encoder = load_encoder(f"hyenadna:{checkpoint}")
    tiling = Tiling(128, 2, 2)
    memo = TileMemo(tmp_path, yeast, tiling, encoder, chunk_bp=2048)
    iv = IntervalSet.from_tuples([("chrI", 1000, 1700)], tuple(yeast.names))
    keys = keys_of(tiling, yeast, iv)
    starts, ends = tiling.tile_bounds(keys.layer, keys.offset, keys.index)
    expected = encoder.embed(yeast.fetch(keys.chrom, starts, ends))
    np.testing.assert_allclose(memo.get(keys), expected, atol=1e-5)  # batches differ: float noise only
    assert memo.verify(sample=20)["ok"]
    assert interval_embeddings(iv, yeast, tiling, memo).shape == (1, encoder.dim)


# ---- read path: memory-mapped chunks, formats --------------------------------------------


def composed_the_old_way(memo: TileMemo, genome: Genome, tiling: Tiling, iv: IntervalSet, weighting="bases"):
    """interval embeddings as gidx composed them before the address-based read path:
    unique keys -> memo.get -> numpy-free weighted mean kernel (the reference)."""
    from gidx.embed import _weighted_means

    tiles = tiling.compose(iv.chrom, iv.start, iv.end, genome.lengths)
    keys, inverse = tiles.unique_tiles()
    weight = tiles.weight if weighting == "bases" else np.sqrt(tiles.weight)
    return _weighted_means(memo.get(keys), inverse, tiles.interval, weight, len(iv))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("weighting", ["bases", "sqrt"])
def test_tiles_mode_bit_identical_to_the_gather_path(yeast, tmp_path, dtype, weighting):
    tiling = Tiling(128, 3, 2)
    memo = TileMemo(tmp_path, yeast, tiling, load_encoder("kmer:dim=48"), dtype, chunk_bp=16384)
    iv = yeast_bed(yeast, "winston_annotations/rhee2012-TATAboxes-cleaned.bed")
    iv = IntervalSet(iv.chroms, iv.chrom[:400], iv.start[:400], np.minimum(iv.end[:400] + 1500,
                                                                            yeast.lengths[iv.chrom[:400]]))
    got = interval_embeddings(iv, yeast, tiling, memo, weighting=weighting)  # cold: computed on the way
    assert memo.stats.tiles_computed > 0
    reference = composed_the_old_way(memo, yeast, tiling, iv, weighting)
    assert got.tobytes() == reference.tobytes()
    reopened = TileMemo(tmp_path, yeast, tiling, load_encoder("kmer:dim=48"), dtype)
    assert interval_embeddings(iv, yeast, tiling, reopened, weighting=weighting).tobytes() == reference.tobytes()
    assert reopened.stats.tiles_computed == 0 and reopened.stats.chunks_read > 0


def test_cold_process_reads_equal_warm_ones(yeast, kmer16, tmp_path):
    """A new process (empty chunk table, chunk files memory-mapped) composes exactly what
    the process that computed the memo composed, and computes nothing."""
    root = tmp_path / "memo"
    iv = yeast_bed(yeast, "winston_annotations/rhee2012-TATAboxes-cleaned.bed")
    memo = small_memo(root, yeast, kmer16)
    warm = interval_embeddings(iv, yeast, SMALL_TILING, memo)
    assert np.array_equal(interval_embeddings(iv, yeast, SMALL_TILING, memo), warm)  # in-process cache
    np.save(tmp_path / "iv.npy", np.stack([iv.chrom.astype(np.int64), iv.start, iv.end]))
    script = textwrap.dedent(f"""
        import numpy as np
        from gidx.embed import interval_embeddings
        from gidx.encoders import load_encoder
        from gidx.genome import Genome
        from gidx.intervals import IntervalSet
        from gidx.memo import TileMemo
        from gidx.tiling import Tiling
        g = Genome.from_fasta({str(DATA / "S_cerevisiae.fasta.gz")!r}, cache_dir={str(tmp_path / "fai")!r})
        chrom, start, end = np.load({str(tmp_path / "iv.npy")!r})
        iv = IntervalSet(tuple(g.names), chrom.astype(np.int32), start, end)
        memo = TileMemo({str(root)!r}, g, Tiling(128, 2, 2), load_encoder("kmer:dim=16"), chunk_bp={SMALL_CHUNK_BP})
        np.save({str(tmp_path / "cold.npy")!r}, interval_embeddings(iv, g, Tiling(128, 2, 2), memo))
        assert memo.stats.tiles_computed == 0 and memo.stats.chunks_read > 0, memo.stats
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert np.load(tmp_path / "cold.npy").tobytes() == warm.tobytes()


def test_new_memos_store_raw_chunks_that_zarr_reads(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    keys = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 5000)], tuple(yeast.names)))
    expected = memo.get(keys)
    attrs = json.loads((memo.path / "zarr.json").read_text())["attributes"]
    assert attrs["gidx_tile_memo"] == 2 and attrs["chunk_codec"] == "raw"
    meta = json.loads((memo.path / "emb.c0.l0.o0" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes"]
    # the chunk file is the chunk's rows, little-endian C order, whole chunk (Zarr pads edges)
    rows = np.fromfile(memo.path / "emb.c0.l0.o0" / "c" / "0" / "0", dtype="<f4").reshape(64, 16)
    np.testing.assert_array_equal(rows, zarr.open_array(memo.path / "emb.c0.l0.o0", mode="r")[:64])
    # zarr is the format of record: it reads what the fast path reads
    starts_at = keys.index[(keys.layer == 0) & (keys.offset == 0) & (keys.chrom == 0)]
    np.testing.assert_array_equal(rows[starts_at], expected[(keys.layer == 0) & (keys.offset == 0)])


def test_rows_accepts_any_order_and_repeats(yeast, kmer16, tmp_path):
    from gidx.embed import gather_rows

    memo = small_memo(tmp_path, yeast, kmer16)
    iv = IntervalSet.from_tuples([("chrII", 5000, 9000), ("chrI", 300, 2000), ("chrI", 300, 2000)], tuple(yeast.names))
    tiles = SMALL_TILING.compose(iv.chrom, iv.start, iv.end, yeast.lengths)
    keys, inverse = tiles.unique_tiles()
    np.testing.assert_array_equal(gather_rows(memo.rows(tiles)), memo.get(keys)[inverse])


def test_resolved_rows_outlive_eviction(yeast, kmer16, tmp_path):
    """TileRows keep the chunks they point into, even when the cache has moved on."""
    from gidx.embed import gather_rows

    small_memo(tmp_path, yeast, kmer16).fill(["chrI", "chrII"])
    a = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 90_000)], tuple(yeast.names)))
    b = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrII", 300, 90_000)], tuple(yeast.names)))
    roomy = small_memo(tmp_path, yeast, kmer16)
    expected_a = roomy.get(a)
    tiny = small_memo(tmp_path, yeast, kmer16, cache_bytes=0)
    rows_a = tiny.rows(a)
    tiny.get(b)  # evicts every chunk of a
    assert (tiny._cache.entry_of[tiny._chunk_ids(a)[0]] == -1).all()
    np.testing.assert_array_equal(gather_rows(rows_a), expected_a)


def test_mask_without_data_file_recomputes_on_lookup(yeast, kmer16, tmp_path):
    memo = small_memo(tmp_path, yeast, kmer16)
    keys = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 2000)], tuple(yeast.names)))
    expected = memo.get(keys)
    lost = sorted(memo.path.glob("emb.*/c/0/0"))[0]
    lost.unlink()  # a lost data chunk, its mask still set
    fresh = small_memo(tmp_path, yeast, kmer16)
    with pytest.warns(UserWarning, match="data chunk file is missing"):
        np.testing.assert_array_equal(fresh.get(keys), expected)
    assert fresh.stats.chunks_computed == 1 and lost.is_file()


def test_crash_between_data_and_mask_on_lookup(yeast, kmer16, tmp_path):
    """A lookup that died after writing a chunk's data but before its mask: the next
    process finds the data unmasked, recomputes the chunk and sets the mask."""
    memo = small_memo(tmp_path, yeast, kmer16)
    keys = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 2000)], tuple(yeast.names)))
    grid = (int(keys.chrom[0]), int(keys.layer[0]), int(keys.offset[0]))
    assert keys.index[0] < 64  # chunk 0 of that grid
    emb, filled = memo._grid_arrays(grid, create=True)

    memo._arrays[grid] = (emb, CrashOnMask(filled))
    with pytest.raises(SystemExit):
        memo.get(keys)
    assert not np.isnan(emb[:64]).any() and not filled[:64].any()  # data without mask
    fresh = small_memo(tmp_path, yeast, kmer16)
    got = fresh.get(keys)
    assert fresh.stats.chunks_computed >= 1 and filled[:64].all()
    np.testing.assert_array_equal(got, small_memo(tmp_path / "ref", yeast, kmer16).get(keys))


def make_format_1(memo: TileMemo) -> None:
    """Turn a codec="zstd" memo into what gidx wrote before format 2: the same arrays
    (Zarr's default zstd codecs), group attributes without ``chunk_codec``, format 1."""
    meta_path = memo.path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["attributes"]["chunk_codec"]
    meta["attributes"]["gidx_tile_memo"] = 1
    meta_path.write_text(json.dumps(meta))


def test_format_1_memos_are_read_and_extended_in_their_own_layout(yeast, kmer16, tmp_path):
    old = small_memo(tmp_path, yeast, kmer16, codec="zstd")
    old.fill(["chrI"])
    make_format_1(old)
    before = memo_arrays(old)
    meta = json.loads((old.path / "emb.c0.l0.o0" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd"]
    memo = small_memo(tmp_path, yeast, kmer16)  # default codec raw: the stored layout wins
    assert (memo.format, memo.codec) == (1, "zstd")
    iv = IntervalSet.from_tuples([("chrI", 300, 90_000), ("chrI", 150_000, 151_000)], tuple(yeast.names))
    keys = keys_of(SMALL_TILING, yeast, iv)
    got = memo.get(keys)
    assert memo.stats.tiles_computed == 0 and memo.stats.chunks_read > 0
    np.testing.assert_array_equal(got, small_memo(tmp_path / "raw", yeast, kmer16).get(keys))
    assert interval_embeddings(iv, yeast, SMALL_TILING, memo).tobytes() == \
        composed_the_old_way(memo, yeast, SMALL_TILING, iv).tobytes()
    # new arrays in an old memo stay zstd, the group stays format 1, old arrays untouched
    memo.get(keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrII", 300, 900)], tuple(yeast.names))))
    meta = json.loads((memo.path / "emb.c1.l0.o0" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd"]
    attrs = json.loads((memo.path / "zarr.json").read_text())["attributes"]
    assert attrs["gidx_tile_memo"] == 1 and "chunk_codec" not in attrs
    after = memo_arrays(memo)
    assert all(after[name] == data for name, data in before.items())
    assert memo.verify(sample=200)["ok"]


def test_memo_of_an_unknown_format_is_refused(yeast, kmer16, tmp_path):
    from gidx.index import Index
    from gidx.memo import verify_index_memos

    index = Index.create(tmp_path / "idx", fasta=DATA / "S_cerevisiae.fasta.gz")
    memo = open_index_memo(index.path, index.genome, SMALL_TILING, kmer16, chunk_bp=SMALL_CHUNK_BP)
    memo.fill(["chrI"])
    meta_path = memo.path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["gidx_tile_memo"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GidxError, match="format 99"):
        open_index_memo(index.path, index.genome, SMALL_TILING, kmer16)
    lines = verify_index_memos(index, samples=10)
    assert len(lines) == 1 and "format 99" in lines[0]
    meta["attributes"]["gidx_tile_memo"] = 2
    meta["attributes"]["chunk_codec"] = "lz9"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GidxError, match="lz9"):
        open_index_memo(index.path, index.genome, SMALL_TILING, kmer16)


def test_arrays_in_other_layouts_are_read_through_zarr(yeast, kmer16, tmp_path):
    """An array whose Zarr metadata the fast path does not know (here: gzip) is read by
    zarr itself, never misread."""
    from zarr.codecs import GzipCodec

    memo = small_memo(tmp_path, yeast, kmer16)
    memo.fill(["chrI"])
    keys = keys_of(SMALL_TILING, yeast, IntervalSet.from_tuples([("chrI", 300, 20_000)], tuple(yeast.names)))
    expected = memo.get(keys)
    group = zarr.open_group(memo.path, mode="a")
    for name in ("emb.c0.l0.o0", "filled.c0.l0.o0"):
        old = group[name]
        data, attrs = old[:], dict(old.attrs)
        del group[name]
        new = group.create_array(name, shape=old.shape, chunks=old.chunks, dtype=old.dtype,
                                 fill_value=old.fill_value, compressors=GzipCodec(), attributes=attrs)
        new[:] = data
    fresh = small_memo(tmp_path, yeast, kmer16)
    assert fresh._grid_files((0, 0, 0))[0].kind == "zarr" and fresh._grid_files((0, 0, 1))[0].kind == "raw"
    np.testing.assert_array_equal(fresh.get(keys), expected)
    assert fresh.stats.tiles_computed == 0


def test_processes_opening_a_new_genome_cache_at_once_see_it_whole(tmp_path, yeast):
    """The FASTA's decompressed copy and its .fai are built under temporary names and
    renamed: processes opening the same fresh cache together all read the whole genome
    (pyfaidx writes its index in place; a process reading it meanwhile saw no
    chromosomes: a CI failure of test_concurrent_writers_of_the_same_chunks_lose_nothing)."""
    script = textwrap.dedent(f"""
        from gidx.genome import Genome
        g = Genome.from_fasta({str(DATA / "S_cerevisiae.fasta.gz")!r}, cache_dir={str(tmp_path / "fai")!r})
        print(len(g.names), sum(g.lengths_list), g.digest)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate()[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert all(o == [str(len(yeast.names)), str(sum(yeast.lengths_list)), yeast.digest] for o in outs)
    assert not list((tmp_path / "fai").glob("*.tmp*"))  # no temporary file left
