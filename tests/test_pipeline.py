"""The streaming embedding pipeline: batching across items, order- and worker-independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gidx.bed import read_bed
from gidx.embed import interval_embeddings
from gidx.encoders import load_encoder
from gidx.genome import Genome
from gidx.memo import TileMemo
from gidx.pipeline import Pipeline
from gidx.tiling import Tiling

DATA = Path(__file__).resolve().parents[1] / "gidx" / "data" / "sacCer3"
ITEMS = ["", "a", "hello", "x" * 23, "", "pipeline", "yz" * 40, "q"]


# module-level stages so that worker processes can use them under any start method
def split_chars(item: str) -> list[str]:
    return list(item)


def to_codes(chars: list[str]) -> np.ndarray:
    return np.array([ord(c) for c in chars], dtype=np.float64)


def as_rows(codes: np.ndarray) -> np.ndarray:
    return np.stack([codes, codes * 2], axis=1)


def keep(hidden, batch):
    return hidden


def run_toy(batch_size: int, workers: int, **kwargs):
    out, calls = {}, []
    pipe = Pipeline(preprocess=split_chars, collate=to_codes, forward=as_rows, decollate=keep,
                    postprocess=lambda item, rows: rows[:, 0].tolist() if len(rows) else [],
                    batch_size=batch_size, workers=workers)
    stats = pipe.run(ITEMS, write=lambda item, result: out.setdefault(item, []).append(result),
                     progress=lambda done, total, item: calls.append((done, total)), **kwargs)
    return out, calls, stats


@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("workers", [0, 2])
def test_toy_pipeline_reassembles_items(batch_size, workers):
    out, calls, stats = run_toy(batch_size, workers)
    assert out == {item: [[float(ord(c)) for c in item]] * ITEMS.count(item) for item in ITEMS}
    assert stats.items == len(ITEMS) and stats.parts == sum(map(len, ITEMS))
    assert [d for d, _ in calls] == list(range(1, len(ITEMS) + 1))
    assert {t for _, t in calls} == {len(ITEMS)}


def test_batches_ignore_item_boundaries():
    sizes = []

    def collate(chars):
        sizes.append(len(chars))
        return to_codes(chars)

    Pipeline(split_chars, collate, as_rows, keep, batch_size=7).run(ITEMS, write=lambda item, rows: None)
    total = sum(map(len, ITEMS))
    assert sizes == [7] * (total // 7) + ([total % 7] if total % 7 else [])


def test_skips_done_items_and_counts_progress_over_the_rest():
    done_items = {"hello", "pipeline"}
    out, calls, stats = run_toy(5, 0, is_done=lambda item: item in done_items)
    assert stats.skipped == 2 and set(out) == set(ITEMS) - done_items
    assert calls[-1] == (len(ITEMS) - 2, len(ITEMS) - 2)


def test_exception_in_write_propagates():
    def write(item, rows):
        if item == "pipeline":
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        Pipeline(split_chars, to_codes, as_rows, keep, batch_size=3).run(ITEMS, write=write)


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        Pipeline(split_chars, to_codes, as_rows, keep, batch_size=0)
    with pytest.raises(ValueError):
        Pipeline(split_chars, to_codes, as_rows, keep, workers=-1)


# ---- the real pipelines: memo fill and direct interval embeddings ---------------


@pytest.fixture(scope="module")
def yeast(tmp_path_factory) -> Genome:
    return Genome.from_fasta(DATA / "S_cerevisiae.fasta.gz", cache_dir=tmp_path_factory.mktemp("fai"))


def memo_arrays(memo: TileMemo) -> dict[str, bytes]:
    import zarr

    group = zarr.open_group(memo.path, mode="r")
    return {name: array[:].tobytes() for name, array in sorted(group.arrays())}


def test_memo_fill_independent_of_batch_size_and_workers(yeast, tmp_path):
    tiling, encoder = Tiling(128, 2, 2), load_encoder("kmer:dim=16")
    results = []
    for batch_size, workers in [(64, 0), (1, 0), (7, 0), (64, 2), (7, 2)]:
        memo = TileMemo(tmp_path / f"b{batch_size}w{workers}", yeast, tiling, encoder, chunk_bp=32768,
                        batch_size=batch_size, workers=workers)
        report = memo.fill(["chrI"])
        assert report.computed == report.chunks and report.skipped == 0
        results.append(memo_arrays(memo))
    assert len(results[0]) == 2 * 4  # emb + filled for 2 layers x 2 offsets
    for other in results[1:]:
        assert other == results[0]


def test_direct_embeddings_independent_of_batch_size_and_workers(yeast):
    bed = read_bed(DATA / "bed" / "winston_annotations" / "rhee2012-TATAboxes-cleaned.bed", yeast,
                   aliases={"chrM": "chrmt"})
    encoder = load_encoder("kmer:dim=32")
    ref = interval_embeddings(bed.intervals, yeast, Tiling(), None, mode="direct", encoder=encoder)
    for batch_size, workers in [(1, 0), (7, 0), (64, 2)]:
        out = interval_embeddings(bed.intervals, yeast, Tiling(), None, mode="direct", encoder=encoder,
                                  batch_size=batch_size, workers=workers)
        np.testing.assert_array_equal(out, ref)
