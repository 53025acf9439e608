"""What keeps a big ingest fast and bounded: parsing in worker processes gives the same
index as parsing in threads, and a long ingest keeps its overlap segments few (size-tiered
compaction as it goes) without changing a search."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import YEAST_BEDS, YEAST_FASTA, bed_files, yeast_family

from gidx.check import check_index
from gidx.index import Index


def _yeast(path):
    return Index.create(path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})


def _state(idx: Index) -> dict:
    rec = idx.sql("select * exclude (ingested_at) from records order by id").to_pylist()
    iv = idx.sql("select * from intervals order by record_id, i").to_pylist()
    eid, enc = idx.set_encoder()
    ids, vecs = idx.vectors.vectors(idx.vector_table(eid, enc))
    order = np.argsort(ids)
    return {"records": rec, "intervals": iv, "vector_ids": ids[order].tolist(), "vectors": vecs[order].tobytes()}


def test_parsing_in_processes_equals_parsing_in_threads(tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for p in bed_files(YEAST_BEDS):
        (src / p.name).write_bytes(p.read_bytes())
    (src / "bad.bed").write_text("chrI\t10\t50\nchrI\t90\t80\n")  # end before start: rejected
    (src / "empty.bed").write_text("# nothing\n")  # a 0-interval record, with a warning
    reports = {}
    for procs in ("0", "2"):
        monkeypatch.setenv("GIDX_PARSE_PROCESSES", procs)
        idx = _yeast(tmp_path / f"p{procs}")
        reports[procs] = (idx.ingest([src], batch_records=5), _state(idx))
    (r0, s0), (r2, s2) = reports["0"], reports["2"]
    assert s2 == s0 and len(s0["records"]) == len(bed_files(YEAST_BEDS)) + 1
    assert (r2.added, r2.skipped, r2.warnings, r2.intervals) == (r0.added, r0.skipped, r0.warnings, r0.intervals)
    assert [(p, e.problems) for p, e in r2.rejected] == [(p, e.problems) for p, e in r0.rejected]
    assert r0.rejected and "bad.bed" in r0.rejected[0][0]


def test_long_ingest_compacts_as_it_goes(tmp_path, monkeypatch):
    import gidx.index
    import gidx.seqpare

    family = yeast_family(tmp_path, 48)
    monkeypatch.setattr(gidx.index, "MAINTAIN_EVERY", 3)
    seen = []
    real = Index.maintain

    def counting(self, *a, **kw):
        real(self, *a, **kw)
        seen.append(len([p for p in (self.path / "segments").iterdir() if p.name.startswith("seg-")]))

    monkeypatch.setattr(Index, "maintain", counting)
    idx = _yeast(tmp_path / "idx")
    rep = idx.ingest([family], batch_records=2)  # 24 batches, one segment each
    assert len(rep.added) == 48
    # compacted during the ingest (every 3 batches) and at its end: never 24 segments
    assert len(seen) == 24 // 3 + 1 and max(seen) < gidx.seqpare.MERGE_FACTOR * 3
    one = _yeast(tmp_path / "one")
    one.ingest([family])
    queries = bed_files(family)[::12]
    for q in queries:
        a, b = idx.overlap().search(idx.read(q).intervals), one.overlap().search(one.read(q).intervals)
        assert a.teo.tobytes() == b.teo.tobytes() and a.n_t.tolist() == b.n_t.tolist()
    assert check_index(idx).ok
