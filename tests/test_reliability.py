"""Crash consistency and concurrency, on real processes.

* SIGKILL during `gidx ingest` / `gidx truth` at random moments: the index still
  opens, `gidx check` finds no problem, the rerun completes and the result equals an
  uninterrupted run (a fast version of benchmarks/crash_consistency.py).
* `gidx query` / `gidx sql` answer correctly while `gidx ingest` runs in another
  process (DuckDB allows one writer: writers hold it briefly, others retry).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, YEAST_BEDS, YEAST_FASTA, bed_files, yeast_family

from gidx.bed import read_bed
from gidx.index import Index

_spec = importlib.util.spec_from_file_location("crash_consistency", REPO / "benchmarks" / "crash_consistency.py")
crash = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crash)


@pytest.mark.parametrize("command,trials", [("ingest", 3), ("truth", 2)])
def test_sigkill_at_random_moments_leaves_a_usable_resumable_index(command, trials):
    tally = crash.run_trials(command, trials, seed=7, log=lambda *a: None)
    assert tally["failures"] == []
    assert tally["survived"] == trials


def test_queries_and_sql_answer_while_another_process_ingests(tmp_path):
    idx_path = tmp_path / "idx"
    idx = Index.create(idx_path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    idx.ingest([YEAST_BEDS])
    family = yeast_family(tmp_path, 40)
    before = idx.sql("select count(*) as n from records")["n"][0].as_py()
    proc = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", "ingest", str(family), "-i", str(idx_path), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    queries = bed_files(YEAST_BEDS)
    answered = sql_answered = 0
    counts = []
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        q = queries[answered % len(queries)]
        res = Index.open(idx_path).query(q, k=3, rerank=None)  # a fresh Index: like a new `gidx query`
        assert res["score"].to_numpy()[0] == pytest.approx(1.0, abs=1e-5)
        answered += 1
        counts.append(Index.open(idx_path).sql("select count(*) as n from records")["n"][0].as_py())
        sql_answered += 1
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert answered >= 2 and sql_answered >= 2
    # readers saw the record count only grow, never a half-written batch
    assert counts == sorted(counts) and counts[0] >= before
    final = Index.open(idx_path)
    assert final.sql("select count(*) as n from records")["n"][0].as_py() == before + 40
    from gidx.check import check_index

    assert check_index(final).ok


def test_two_concurrent_ingests_serialise(tmp_path):
    idx_path = tmp_path / "idx"
    Index.create(idx_path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    cmd = [sys.executable, "-m", "gidx.cli.main", "ingest", str(YEAST_BEDS), "-i", str(idx_path), "-q"]
    a = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert a.wait(timeout=180) == 0, a.stderr.read()
    assert b.wait(timeout=180) == 0, b.stderr.read()
    idx = Index.open(idx_path)
    rows = idx.sql("select count(*) n, count(distinct content_hash) h, count(distinct name) m from records").to_pylist()[0]
    assert rows["n"] == rows["h"] == rows["m"] == len({read_bed(p, idx.genome, aliases={"chrM": "chrmt"})
                                                      .intervals.content_hash() for p in bed_files(YEAST_BEDS)})
    from gidx.check import check_index

    rep = check_index(idx)
    assert rep.ok, rep.problems
    eid, enc = idx.set_encoder()
    ids = idx.vectors.record_ids(idx.vector_table(eid, enc))
    live = idx.record_ids()
    assert len([i for i in ids if int(i) in live]) == len(live)  # one vector per record; the loser's are orphans
    assert np.all(np.isin(list(live), ids))


def test_full_disk_during_ingest_is_a_clean_error(yeast_noalias_copy, gidx_cli, monkeypatch):
    """ENOSPC while writing vectors: one-line error, exit 2, catalog untouched, index checks out."""
    import errno

    from conftest import YEAST_BEDS, catalog_snapshot

    from gidx.check import check_index
    from gidx.vectors import VectorStore

    before = catalog_snapshot(yeast_noalias_copy)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(yeast_noalias_copy / "vectors.lance"))

    monkeypatch.setattr(VectorStore, "add", full)
    r = gidx_cli("ingest", YEAST_BEDS / "winston_annotations" / "SSA4.bed", "-i", yeast_noalias_copy)
    assert r.code == 2
    assert len(r.error_lines) == 1 and "No space left on device" in r.error_lines[0]
    assert catalog_snapshot(yeast_noalias_copy)["records"] == before["records"]
    monkeypatch.undo()
    assert check_index(Index.open(yeast_noalias_copy)).ok
    assert gidx_cli("ingest", YEAST_BEDS / "winston_annotations" / "SSA4.bed", "-i", yeast_noalias_copy).code == 0


def test_record_names_never_become_paths(yeast_noalias_copy, tmp_path):
    """A record named like a path ('../../x') is only a catalog value: nothing is written outside the index."""
    import os

    src = YEAST_BEDS / "winston_annotations" / "SSA4.bed"
    outside = sorted(os.listdir(yeast_noalias_copy.parent))
    idx = Index.open(yeast_noalias_copy)
    rep = idx.ingest([src], name="../../escape")
    assert rep.added == ["../../escape"]
    assert sorted(os.listdir(yeast_noalias_copy.parent)) == outside
    assert idx.query(src, k=1, rerank=None)["record"][0].as_py() == "../../escape"
