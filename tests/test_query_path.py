"""The serving path: batch queries, stored queries written after (or beside) the
answer, the memory-mapped vector mirror, thread safety, and what a one-shot
``gidx query`` imports."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import HG19_BEDS, HG19_SIZES, REPO, bed_files, sql1

QUERIES = bed_files(HG19_BEDS)


def _ranked(table) -> list[tuple]:
    return list(zip(table.column("record").to_pylist(), table.column("exact_score").to_pylist(),
                    table.column("score").to_pylist()))


def _tsv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def test_query_many_equals_single_queries(hg19_copy):
    from gidx.index import Index

    idx = Index.open(hg19_copy)
    single = {str(q): _ranked(idx.query(q, k=4, save=False)) for q in QUERIES}
    n_before = sql1(hg19_copy, "select count(*) from queries")[0][0]
    batch = idx.query_many(QUERIES, k=4, threads=2)
    assert batch.column_names == ["query", "rank", "record_id", "record", "score", "exact_score", "n_intervals",
                                  "query_id"]
    for q in QUERIES:
        rows = batch.filter(np.array([x == str(q) for x in batch.column("query").to_pylist()]))
        assert _ranked(rows) == single[str(q)]
    # every query stored once, with its own results
    qids = sorted(set(batch.column("query_id").to_pylist()))
    assert len(qids) == len(QUERIES)
    assert sql1(hg19_copy, "select count(*) from queries")[0][0] == n_before + len(QUERIES)
    for qid in qids:
        stored = sql1(hg19_copy, f"select r.rank, rec.name, r.exact_score from query_results r "
                                 f"join records rec on rec.id = r.record_id where r.query_id = {qid} order by r.rank")
        mine = batch.filter(np.array([x == qid for x in batch.column("query_id").to_pylist()]))
        assert [(r, n) for r, n, _ in stored] == list(zip(mine.column("rank").to_pylist(),
                                                             mine.column("record").to_pylist()))


def test_query_many_collects_bad_files_and_goes_on(hg19_copy, tmp_path):
    from gidx.errors import InputError
    from gidx.index import Index

    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t10\t20\nchr1\tten\t30\n")
    idx = Index.open(hg19_copy)
    errors: list = []
    table = idx.query_many([QUERIES[0], bad, QUERIES[1]], k=3, errors=errors)
    assert sorted(set(table.column("query").to_pylist())) == sorted([str(QUERIES[0]), str(QUERIES[1])])
    assert len(errors) == 1 and errors[0][0] == str(bad)
    assert str(errors[0][1]).startswith(f"{bad}:2:")
    with pytest.raises(InputError):
        idx.query_many([QUERIES[0], bad], k=3)


def test_cli_batch_query(hg19_copy, gidx_cli, tmp_path):
    single = {}
    for q in QUERIES[:3]:
        res = gidx_cli("query", q, "-i", hg19_copy, "-k", "5", "--format", "tsv", "--no-save")
        assert res.code == 0, res.err
        single[str(q)] = [(r["record"], r["exact_score"]) for r in _tsv(res.out)]
    res = gidx_cli("query", *QUERIES[:3], "-i", hg19_copy, "-k", "5", "--format", "tsv")
    assert res.code == 0, res.err
    rows = _tsv(res.out)
    got = {q: [(r["record"], r["exact_score"]) for r in rows if r["query"] == q] for q in single}
    assert got == single
    assert "3 queries answered, 0 failed" in res.err
    # a list file (relative entries are relative to the list) and a folder give the same
    lst = tmp_path / "list.txt"
    lst.write_text("# queries\n" + "\n".join(str(Path("..") / Path(q).relative_to(q.parents[1])) for q in QUERIES[:3]))
    (tmp_path / "sub").mkdir()
    shutil.copy(lst, tmp_path / "sub" / "list.txt")
    for q in QUERIES[:3]:
        (tmp_path / Path(q).relative_to(q.parents[1])).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(q, tmp_path / Path(q).relative_to(q.parents[1]))
    res = gidx_cli("query", "--from-list", tmp_path / "sub" / "list.txt", "-i", hg19_copy, "-k", "5",
                   "--format", "json", "--no-save")
    assert res.code == 0, res.err
    from_list = json.loads(res.out)
    assert {(Path(r["query"]).name, r["record"], r["exact_score"]) for r in from_list} == \
        {(Path(q).name, rec, float(s)) for q, v in single.items() for rec, s in v}


def test_cli_batch_bad_file_exit_2_others_printed(hg19_copy, gidx_cli, tmp_path):
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t10\t20\nchr1\t30\n")
    n_before = sql1(hg19_copy, "select count(*) from queries")[0][0]
    res = gidx_cli("query", QUERIES[0], bad, QUERIES[1], "-i", hg19_copy, "-k", "2", "--format", "tsv")
    assert res.code == 2
    assert len(res.error_lines) == 1 and res.error_lines[0].startswith(f"Error: {bad}:2:")
    assert {r["query"] for r in _tsv(res.out)} == {str(QUERIES[0]), str(QUERIES[1])}
    assert sql1(hg19_copy, "select count(*) from queries")[0][0] == n_before + 2


def test_no_save_stores_nothing_and_save_is_after_answer(hg19_copy, gidx_cli):
    n_before = sql1(hg19_copy, "select count(*) from queries")[0][0]
    res = gidx_cli("query", QUERIES[0], "-i", hg19_copy, "-k", "3", "--no-save")
    assert res.code == 0 and "not stored" in res.err
    assert sql1(hg19_copy, "select count(*) from queries")[0][0] == n_before
    res = gidx_cli("query", QUERIES[0], "-i", hg19_copy, "-k", "3")
    qid = sql1(hg19_copy, "select max(id) from queries")[0][0]
    assert f"query id {qid}" in res.err
    assert sql1(hg19_copy, f"select count(*) from query_results where query_id = {qid}")[0][0] == 3


def test_vector_mirror_rebuilt_from_lancedb(hg19_copy, gidx_cli):
    from gidx.index import Index

    before = _ranked(Index.open(hg19_copy).query(QUERIES[0], k=6, rerank=None, save=False))
    shutil.rmtree(hg19_copy / "vectors.mirror")
    idx = Index.open(hg19_copy)
    assert _ranked(idx.query(QUERIES[0], k=6, rerank=None, save=False)) == before
    assert (hg19_copy / "vectors.mirror").is_dir()  # written back by that search
    # a damaged mirror row is found by check and rewritten by --repair
    table = next((hg19_copy / "vectors.mirror").iterdir())
    seg = sorted(table.glob("*.vec.npy"))[0]
    rows = np.load(seg)
    rows[0] = -rows[0]
    np.save(seg, rows)
    res = gidx_cli("check", "-i", hg19_copy)
    assert res.code == 1 and "vector mirror differs from LanceDB for 1 record" in res.out
    assert gidx_cli("check", "-i", hg19_copy, "--repair").code == 0
    assert gidx_cli("check", "-i", hg19_copy).code == 0
    assert _ranked(Index.open(hg19_copy).query(QUERIES[0], k=6, rerank=None, save=False)) == before
    # so is a damaged code (the bits a big table's search scans)
    seg = sorted(table.glob("*.hi.npy"))[0]
    codes = np.load(seg)
    codes[0] ^= 0xFF
    np.save(seg, codes)
    res = gidx_cli("check", "-i", hg19_copy)
    assert res.code == 1 and "vector mirror differs from LanceDB for 1 record" in res.out
    assert gidx_cli("check", "-i", hg19_copy, "--repair").code == 0
    assert gidx_cli("check", "-i", hg19_copy).code == 0


def test_concurrent_queries_equal_serial(hg19_copy):
    from gidx.index import Index

    idx = Index.open(hg19_copy)
    want = {str(q): _ranked(idx.query(q, k=5, save=False)) for q in QUERIES}
    fresh = Index.open(hg19_copy)  # nothing cached: the threads race to build it
    got, failures = {}, []

    def worker(qs):
        try:
            for q in qs:
                got[(threading.get_ident(), str(q))] = _ranked(fresh.query(q, k=5, save=False))
        except Exception as e:  # pragma: no cover - reported below
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(QUERIES[i::2] * 3,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert got and all(v == want[q] for (_, q), v in got.items())


def test_background_query_log_stores_each_query_once(hg19_copy):
    from gidx.index import Index

    idx = Index.open(hg19_copy)
    idx.serve_mode()
    n_before = sql1(hg19_copy, "select count(*) from queries")[0][0]
    ids, lock = [], threading.Lock()

    def worker():
        for q in QUERIES * 2:
            t = idx.query(q, k=3)
            with lock:
                ids.append(int(t.schema.metadata[b"gidx.query_id"]))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the process's own SQL sees its queued queries
    assert idx.sql("select count(*) n from queries").column("n")[0].as_py() == n_before + len(ids)
    idx.close()
    assert len(ids) == len(set(ids)) == 4 * 2 * len(QUERIES)
    stored = sql1(hg19_copy, f"select id, count(*) from queries where id in ({','.join(map(str, ids))}) group by id")
    assert len(stored) == len(ids) and all(c == 1 for _, c in stored)
    n_results = sql1(hg19_copy, f"select count(*) from query_results where query_id in ({','.join(map(str, ids))})")
    assert n_results[0][0] == 3 * len(ids)


def test_snapshot_sees_other_writers_and_survives_own_saves(tmp_path):
    from gidx.index import Index

    path = tmp_path / "idx"
    Index.create(path, chrom_sizes=HG19_SIZES)
    reader, writer = Index.open(path), Index.open(path)
    writer.ingest([QUERIES[0]])
    assert reader.query(QUERIES[0], k=5).column("record").to_pylist() == [QUERIES[0].name.split(".")[0]]
    generation = reader._snapshot()["generation"]
    reader.query(QUERIES[0], k=5)  # its own save changes the file, not the records
    assert reader._snapshot()["generation"] == generation
    writer.ingest([QUERIES[1]])  # another writer: the next query sees the new record
    assert len(reader.query(QUERIES[1], k=5)) == 2
    assert reader._snapshot()["generation"] > generation


@pytest.mark.parametrize("mode", [[], ["--exact"], ["--no-rerank"]])
def test_one_shot_query_imports_no_heavy_library(hg19_index, mode):
    """`gidx query` answers without SQLAlchemy, LanceDB, numba, torch or transformers."""
    code = (
        "import sys\n"
        "from gidx.cli.main import main\n"
        f"sys.argv = ['gidx', 'query', {str(QUERIES[0])!r}, '-i', {str(hg19_index)!r}, '-q', '--no-save', *{mode!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sqlalchemy', 'duckdb_engine', 'alembic', 'lancedb', 'numba', 'torch', 'transformers', 'rich'})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr, out.stderr
