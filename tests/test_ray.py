"""gidx ingest --ray / gidx truth --ray on a real local Ray cluster (one per module).

* Without --ray nothing imports Ray.
* Ingest and truth on Ray workers give an index identical to a single-process run:
  catalog rows, intervals, vectors bit for bit, overlap search results, truth rows.
* A worker killed mid-task (test hook: the first task kills its own worker) is
  retried by Ray: same result, `gidx check` clean.
* SIGKILL of the driver running `gidx ingest --ray ADDRESS` leaves a usable index;
  the rerun completes it to the state of a clean single-process run.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import HG19_BEDS, HG19_SIZES, REPO, YEAST_BEDS, YEAST_FASTA, bed_files, yeast_family

from gidx.check import check_index
from gidx.index import Index

ray = pytest.importorskip("ray")

_spec = importlib.util.spec_from_file_location("crash_consistency", REPO / "benchmarks" / "crash_consistency.py")
crash = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crash)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs; yields its address (for subprocess drivers)."""
    import logging

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _yeast(path: Path) -> Index:
    return Index.create(path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})


def _hg19(path: Path) -> Index:
    return Index.create(path, chrom_sizes=HG19_SIZES)


def _state(idx: Index) -> dict:
    """Everything an ingest (and truth) writes, ids included (both runs start from an empty index)."""
    rec = idx.sql("select * exclude (ingested_at) from records order by id").to_pylist()
    iv = idx.sql("select * from intervals order by record_id, i").to_pylist()
    truth = idx.sql("select * exclude (computed_at) from seqpare_progress order by record_id").to_pylist()
    pairs = idx.sql("select * from seqpare order by query_id, target_id").to_pylist()
    eid, enc = idx.set_encoder()
    ids, vecs = idx.vectors.vectors(idx.vector_table(eid, enc))
    order = np.argsort(ids)
    return {"records": rec, "intervals": iv, "truth_progress": truth, "seqpare": pairs,
            "vector_ids": ids[order].tolist(), "vectors": vecs[order].tobytes()}


def _searches(idx: Index, queries: list[Path]) -> list:
    """Exact overlap searches of every query against the overlap segments."""
    ov = idx.overlap()
    out = []
    for q in queries:
        r = ov.search(idx.read(q).intervals)
        out.append((r.n_q, r.record_id.tolist(), r.n_t.tolist(), r.teo.tobytes(), r.s.tobytes(), r.tc.tolist()))
    return out


def test_without_ray_nothing_imports_ray(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import gidx.index, gidx.truth, gidx.cli.main
        from gidx.index import Index
        assert "ray" not in sys.modules, "import"
        idx = Index.create({str(tmp_path / 'idx')!r}, chrom_sizes={str(HG19_SIZES)!r})
        rep = idx.ingest([{str(HG19_BEDS)!r}])
        assert rep.added and not rep.rejected
        idx.truth()
        assert "ray" not in sys.modules, "ingest/truth"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("collection", ["yeast", "hg19"])
def test_ingest_and_truth_on_ray_equal_a_single_process_run(cluster, tmp_path, collection):
    make, beds = (_yeast, YEAST_BEDS) if collection == "yeast" else (_hg19, HG19_BEDS)
    one, many = make(tmp_path / "one"), make(tmp_path / "ray")
    rep1 = one.ingest([beds])
    repr_ = many.ingest([beds], ray="auto")
    assert not rep1.rejected and len(rep1.added) == len(bed_files(beds))
    assert (repr_.added, repr_.skipped, repr_.warnings, repr_.intervals) == \
        (rep1.added, rep1.skipped, rep1.warnings, rep1.intervals)
    from gidx import distributed

    assert distributed.LAST_TIMINGS and all(t["kind"] == "ingest" for t in distributed.LAST_TIMINGS)
    assert _state(many) == _state(one)
    queries = bed_files(beds)[:6]
    assert _searches(many, queries) == _searches(one, queries)
    # truth: all pairs, then --top 3 (which starts over)
    for top in (0, 3):
        t1 = one.truth(top_k=top)
        tr = many.truth(top_k=top, ray="auto")
        assert (tr.queries, tr.pairs) == (t1.queries, t1.pairs)
        assert _state(many) == _state(one)
    # a second ingest of the same files: everything skipped, as without Ray
    again = many.ingest([beds], ray="auto")
    assert not again.added and len(again.skipped) == len(rep1.added)
    assert check_index(many).ok


def test_rejected_files_and_messages_match(cluster, tmp_path):
    """A bad file is rejected with the same message (its path as given) on Ray as without."""
    bad = tmp_path / "in" / "bad.bed"
    bad.parent.mkdir()
    bad.write_text("chrI\t10\t5\n")
    (tmp_path / "in" / "good.bed").write_text("chrI\t10\t50\nchrII\t100\t200\n")
    one, many = _yeast(tmp_path / "one"), _yeast(tmp_path / "ray")
    old = os.getcwd()
    os.chdir(tmp_path)  # relative paths: workers get absolute ones, messages keep the user's
    try:
        r1, r2 = one.ingest(["in"]), many.ingest(["in"], ray="auto")
    finally:
        os.chdir(old)
    assert [(p, e.problems) for p, e in r2.rejected] == [(p, e.problems) for p, e in r1.rejected]
    assert r1.rejected and r2.added == r1.added == ["good"]
    assert _state(many) == _state(one)


def test_a_killed_worker_is_retried_and_changes_nothing(cluster, tmp_path, monkeypatch):
    one, many = _yeast(tmp_path / "one"), _yeast(tmp_path / "ray")
    one.ingest([YEAST_BEDS])
    one.truth()
    marker = tmp_path / "crashed-ingest"
    monkeypatch.setenv("GIDX_RAY_CRASH_ONCE", str(marker))
    many.ingest([YEAST_BEDS], ray="auto")
    assert marker.exists()  # a worker did die (os._exit in its first task)
    assert check_index(many).ok
    marker = tmp_path / "crashed-truth"
    monkeypatch.setenv("GIDX_RAY_CRASH_ONCE", str(marker))
    many.truth(ray="auto")
    assert marker.exists()
    assert check_index(many).ok
    assert _state(many) == _state(one)


def test_sigkill_of_the_driver_leaves_a_usable_resumable_index(cluster, tmp_path):
    yeast_family(tmp_path, 30)
    clean, idx = tmp_path / "clean", tmp_path / "idx"
    for p in (clean, idx):
        _yeast(p).ingest([YEAST_BEDS])
    Index.open(clean).ingest([tmp_path / "family"])
    Index.open(clean).truth()
    want = crash.state(clean)

    def driver(*args, env=None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "gidx.cli.main", *args, "-i", "idx", "-q", "--ray", cluster],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env={**os.environ, **(env or {})})

    seg = idx / "segments"
    before = len(list(seg.iterdir()))
    proc = driver("ingest", "family")
    deadline = time.time() + 120
    # kill as soon as the batch's derived data (its overlap segment) is on disk: before,
    # during or just after the catalog commit
    while proc.poll() is None and len(list(seg.iterdir())) == before and time.time() < deadline:
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    print(f"driver killed mid-ingest: {killed}")
    assert check_index(Index.open(idx)).ok
    Index.open(idx).ls()  # usable
    p = driver("ingest", "family")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    # truth: the first task kills its worker (marker file); once that happened, kill the driver too
    marker = tmp_path / "crashed"
    proc = driver("truth", env={"GIDX_RAY_CRASH_ONCE": str(marker)})
    deadline = time.time() + 120
    while proc.poll() is None and not marker.exists() and time.time() < deadline:
        time.sleep(0.005)
    assert marker.exists()
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert check_index(Index.open(idx)).ok
    p = driver("truth")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert crash.state(idx) == want
    assert check_index(Index.open(idx)).ok


def test_an_address_where_no_head_listens_is_one_error_line(tmp_path):
    _yeast(tmp_path / "idx")
    out = subprocess.run([sys.executable, "-m", "gidx.cli.main", "ingest", str(YEAST_BEDS / "genomepy"), "-i",
                          str(tmp_path / "idx"), "--ray", "127.0.0.1:1"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("Error: --ray 127.0.0.1:1: no Ray head answers there")
    assert Index.open(tmp_path / "idx").sql("select count(*) as n from records")["n"][0].as_py() == 0


def test_cli_ray_flag(cluster, tmp_path, gidx_cli):
    _yeast(tmp_path / "idx")
    r = gidx_cli("ingest", str(YEAST_BEDS / "genomepy"), "-i", str(tmp_path / "idx"), "-q", "--ray", "auto")
    assert r.code == 0, r.err
    r = gidx_cli("truth", "-i", str(tmp_path / "idx"), "-q", "--ray", "auto", "--top", "2")
    assert r.code == 0, r.err
    assert Index.open(tmp_path / "idx").sql("select max(c) as m from (select count(*) c from seqpare "
                                            "group by query_id)")["m"][0].as_py() <= 2


def test_the_driver_holds_a_bounded_number_of_tasks():
    """_ordered submits at most in_flight tasks ahead of the one consumed, reads its
    arguments lazily, and yields results in order (a stand-in for ray: no cluster)."""
    from gidx import distributed

    log: list[str] = []

    class FakeRemote:
        def remote(self, i):
            log.append(f"submit {i}")
            return i

    class FakeRay:
        class exceptions:
            RayError = RuntimeError

        @staticmethod
        def get(ref):
            log.append(f"get {ref}")
            return ref * 10

    def args():
        for i in range(6):
            log.append(f"arg {i}")
            yield (i,)

    out = []
    for r in distributed._ordered(FakeRay, FakeRemote(), args(), in_flight=2):
        out.append(r)
        submitted = sum(e.startswith("submit") for e in log)
        assert submitted - len(out) <= 2
    assert out == [0, 10, 20, 30, 40, 50]
    assert log[:5] == ["arg 0", "submit 0", "arg 1", "submit 1", "arg 2"]
