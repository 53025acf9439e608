"""The library API on real BED files: ingest, query, idempotence, rm, schema revisions."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import gidx
from gidx.errors import GidxError, IndexStateError
from gidx.index import Index

from conftest import (
    HG19_BEDS,
    HG19_SIZES,
    YEAST_BEDS,
    YEAST_CHRM_BED,
    bed_files,
    catalog_snapshot,
    count_data_lines,
    record_name,
    sql1,
)

COLLECTIONS = [pytest.param("hg19_index", HG19_BEDS, id="hg19"), pytest.param("yeast_index", YEAST_BEDS, id="sacCer3")]


# ---- ingest of real collections -----------------------------------------------------------


@pytest.mark.parametrize("fixture, folder", COLLECTIONS)
def test_collection_ingested_with_every_line(request, fixture, folder):
    """One record per file, named by its path under the folder, N = every data line."""
    index = request.getfixturevalue(fixture)
    got = dict(sql1(index, "select name, n_intervals from records"))
    want = {record_name(p, folder): count_data_lines(p) for p in bed_files(folder)}
    assert got == want
    # and the intervals table holds exactly those rows
    per_record = dict(sql1(index, "select r.name, count(*) from intervals i join records r on r.id = i.record_id group by 1"))
    assert per_record == want


def test_intervals_stored_as_in_the_file(hg19_index):
    """CRLF real file (chipseeker 0M): first and last lines, coordinates exact, file order kept."""
    path = HG19_BEDS / "GSM1174480_ARmo_0M_peaks.bed.gz"
    import gzip

    lines = [line.rstrip("\r").split("\t") for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    rows = sql1(hg19_index, "select chrom, chrom_start, chrom_end from intervals i join records r on r.id = i.record_id "
                             "where r.name = 'GSM1174480_ARmo_0M_peaks' order by i")
    assert rows == [(c, int(s), int(e)) for c, s, e in lines]


def ranked_by(table: pa.Table) -> str:
    """The column a result is ranked by: exact seqpare S after a re-rank, else the vector score."""
    mode = (table.schema.metadata or {}).get(b"gidx.mode", b"vector").decode()
    return "score" if mode == "vector" else "exact_score"


@pytest.mark.parametrize("rerank", [200, None], ids=["rerank", "vector"])
@pytest.mark.parametrize("fixture, folder", COLLECTIONS)
def test_every_file_finds_itself_first(request, fixture, folder, rerank):
    idx = Index.open(request.getfixturevalue(fixture))
    files = bed_files(folder)
    for path in files:
        res = idx.query(path, k=len(files), rerank=rerank, save=False)
        assert res.num_rows == len(files)
        assert res.column("record")[0].as_py() == record_name(path, folder), path
        assert res.column("score")[0].as_py() == pytest.approx(1.0, abs=1e-5)
        key = ranked_by(res)
        assert key == ("score" if rerank is None else "exact_score")
        if key == "exact_score":
            assert res.column("exact_score")[0].as_py() == pytest.approx(1.0, abs=1e-9)
        scores = res.column(key).to_pylist()
        assert scores == sorted(scores, reverse=True)
        assert res.column("rank").to_pylist() == list(range(1, len(files) + 1))
        assert sorted(res.column("record").to_pylist()) == sorted(record_name(p, folder) for p in files)
        # nothing else is a perfect match: the files differ
        assert scores[1] < 1 - 1e-4


COPIES = [pytest.param("hg19_copy", HG19_BEDS, id="hg19"), pytest.param("yeast_copy", YEAST_BEDS, id="sacCer3")]


@pytest.mark.parametrize("fixture, folder", COPIES)
def test_reingest_adds_nothing(request, fixture, folder):
    index = request.getfixturevalue(fixture)
    idx = Index.open(index)
    before = catalog_snapshot(index)
    rep = idx.ingest([folder])
    assert rep.added == [] and rep.rejected == []
    assert sorted(p for p, _ in rep.skipped) == sorted(str(p) for p in bed_files(folder))
    assert all("already indexed" in why for _, why in rep.skipped)
    assert catalog_snapshot(index) == before


def test_same_intervals_other_file_is_another_record(hg19_copy, tmp_path):
    """One record per file: a re-sorted, uncompressed copy under another name is a second
    record (idempotence is by name; identical contents are stored twice)."""
    import gzip

    src = HG19_BEDS / "GSM1295076_CBX6_BF_ChipSeq_mergedReps_peaks.bed.gz"
    lines = gzip.decompress(src.read_bytes()).decode().splitlines(keepends=True)
    copy = tmp_path / "resorted.bed"
    copy.write_text("".join(sorted(lines)))
    idx = Index.open(hg19_copy)
    rep = idx.ingest([copy])
    assert rep.added == ["resorted"] and not rep.skipped
    (h1,), (h2,) = (sql1(hg19_copy, f"select content_hash from records where name = '{n}'")[0]
                    for n in ("resorted", "GSM1295076_CBX6_BF_ChipSeq_mergedReps_peaks"))
    assert h1 == h2
    res = idx.query(copy, k=2, save=False)
    assert sorted(res["record"].to_pylist()) == ["GSM1295076_CBX6_BF_ChipSeq_mergedReps_peaks", "resorted"]
    assert res["exact_score"].to_pylist() == pytest.approx([1.0, 1.0])
    before = catalog_snapshot(hg19_copy)
    assert idx.ingest([copy]).added == []  # and a re-ingest under the same name is a no-op
    assert catalog_snapshot(hg19_copy) == before


def ranking_full(table: pa.Table) -> list[tuple]:
    ex = table.column("exact_score").to_pylist() if "exact_score" in table.column_names else [None] * table.num_rows
    return list(zip(table.column("record").to_pylist(), table.column("score").to_pylist(), ex))


@pytest.mark.parametrize("fixture, folder", COPIES)
def test_rm_then_reingest_restores_results(request, fixture, folder):
    index = request.getfixturevalue(fixture)
    idx = Index.open(index)
    files = bed_files(folder)
    q = files[1]
    before = ranking_full(idx.query(q, k=len(files)))
    assert len(before) == len(files)
    gone = [record_name(files[1], folder), record_name(files[2], folder)]
    assert sorted(idx.rm(gone)) == sorted(gone)
    names = {r[0] for r in sql1(index, "select name from records")}
    assert names.isdisjoint(gone) and len(names) == len(files) - 2
    assert sql1(index, "select count(*) from intervals i left join records r on r.id = i.record_id where r.id is null") == [(0,)]
    during = ranking_full(idx.query(q, k=len(files)))
    assert [n for n, *_ in during] == [n for n, *_ in before if n not in gone]
    rep = idx.ingest([folder])
    assert sorted(rep.added) == sorted(gone) and len(rep.skipped) == len(files) - 2
    after = ranking_full(idx.query(q, k=len(files)))
    assert [n for n, *_ in after] == [n for n, *_ in before]
    for (_, s1, e1), (_, s2, e2) in zip(after, before):
        assert s1 == pytest.approx(s2, abs=1e-6)
        assert (e1 is None and e2 is None) or e1 == pytest.approx(e2, abs=1e-12)


def test_rm_unknown_name_changes_nothing(hg19_copy):
    before = catalog_snapshot(hg19_copy)
    with pytest.raises(GidxError, match="no such record: nope"):
        Index.open(hg19_copy).rm(["GSM1174480_ARmo_0M_peaks", "nope"])
    assert catalog_snapshot(hg19_copy) == before


# ---- the API -----------------------------------------------------------------------------


def test_create_open_ingest_query_roundtrip(tmp_path):
    path = tmp_path / "api_idx"
    idx = gidx.Index.create(path, chrom_sizes=HG19_SIZES)
    files = bed_files(HG19_BEDS)[:3]
    rep = idx.ingest(files)
    assert len(rep.added) == 3 and rep.intervals == sum(count_data_lines(p) for p in files)
    again = gidx.Index.open(path)
    res = again.query(files[0], k=2)
    assert isinstance(res, pa.Table)
    assert {"rank", "record_id", "record", "score", "n_intervals"} <= set(res.column_names)
    assert res.num_rows == 2
    qid = int(res.schema.metadata[b"gidx.query_id"])
    stored = sql1(path, f"select rank, record_id, score from query_results where query_id = {qid} order by rank")
    assert [(r, i) for r, i, _ in stored] == list(zip(res.column("rank").to_pylist(), res.column("record_id").to_pylist()))
    assert [s for *_, s in stored] == pytest.approx(res.column("score").to_pylist())
    (q,) = sql1(path, f"select k, n_intervals from queries where id = {qid}")
    assert q == (2, count_data_lines(files[0]))
    # save=False stores nothing
    n = sql1(path, "select count(*) from queries")[0][0]
    again.query(files[0], k=2, save=False)
    assert sql1(path, "select count(*) from queries")[0][0] == n


def test_create_refuses_bad_arguments(tmp_path, hg19_index):
    with pytest.raises(GidxError, match="exactly one"):
        Index.create(tmp_path / "x", chrom_sizes=HG19_SIZES, fasta=HG19_SIZES)
    with pytest.raises(GidxError, match="exactly one"):
        Index.create(tmp_path / "y")
    with pytest.raises(GidxError, match="already exists"):
        Index.create(hg19_index, chrom_sizes=HG19_SIZES)


def test_open_missing_index(tmp_path):
    with pytest.raises(IndexStateError, match="no gidx index here"):
        Index.open(tmp_path / "nothing")


def test_query_k_and_bad_query(hg19_index, tmp_path):
    idx = Index.open(hg19_index)
    with pytest.raises(GidxError, match="k must be at least 1"):
        idx.query(bed_files(HG19_BEDS)[0], k=0)
    bad = tmp_path / "q.bed"
    bad.write_text("chr1\t10\t5\n")
    with pytest.raises(gidx.InputError, match=r"q\.bed:1: start 10 is after end 5"):
        idx.query(bad)


def test_ingest_reports_bad_file_and_goes_on(hg19_copy, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.bed").write_text("chr1\t100\t200\nchr2\t300\t400\n")
    (folder / "b.bed").write_text("chr1\t100\t200\nchr1\t5\n")
    (folder / "c.bed").write_text("chr3\t1\t2\n")
    rep = Index.open(hg19_copy).ingest([folder])
    assert sorted(rep.added) == ["a", "c"]
    ((path, err),) = rep.rejected
    assert path == str(folder / "b.bed") and err.problems == [f"{folder / 'b.bed'}:2: too few columns: 2 tab-separated fields, BED needs chrom, start, end"]
    assert rep.intervals == 3


def test_skip_unknown_chroms_api(yeast_noalias_copy):
    idx = Index.open(yeast_noalias_copy)
    with pytest.raises(gidx.InputError, match="--chrom-alias chrM=chrmt"):
        idx.read(YEAST_CHRM_BED)
    rep = idx.ingest([YEAST_CHRM_BED], skip_unknown_chroms=True)
    assert len(rep.added) == 1
    n_chrm = sum(1 for line in __import__("gzip").decompress(YEAST_CHRM_BED.read_bytes()).decode().splitlines()
                 if line.startswith("chrM\t"))
    assert n_chrm > 0
    assert any(f"skipped {n_chrm} intervals" in w and "'chrM'" in w for w in rep.warnings)
    ((n, extra),) = sql1(yeast_noalias_copy, "select n_intervals, extra from records")
    assert n == count_data_lines(YEAST_CHRM_BED) - n_chrm
    assert json.loads(extra)["skipped_chroms"] == {"chrM": n_chrm}


def test_alias_api(yeast_noalias_copy):
    idx = Index.open(yeast_noalias_copy)
    idx.add_aliases({"chrM": "chrmt"})
    rep = idx.ingest([YEAST_CHRM_BED])
    assert len(rep.added) == 1 and not rep.warnings
    ((n, chroms),) = sql1(yeast_noalias_copy, "select n_intervals, chromosomes from records")
    assert n == count_data_lines(YEAST_CHRM_BED) and "chrmt" in chroms.split(",")
    with pytest.raises(GidxError, match="not in genome"):
        idx.add_aliases({"chrX": "chrNope"})


# ---- schema revisions ---------------------------------------------------------------------------


def _alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(gidx.migrations_path()))
    return cfg, ScriptDirectory.from_config(cfg)


def test_schema_head_matches_migrations():
    from gidx import catalog

    _, script = _alembic()
    assert script.get_heads() == [catalog.SCHEMA_HEAD]
    assert set(catalog.KNOWN_REVISIONS) == {r.revision for r in script.walk_revisions()}


def test_unknown_revision_refused(hg19_copy):
    import duckdb

    with duckdb.connect(str(hg19_copy / "catalog.duckdb")) as c:
        c.execute("update alembic_version set version_num = '9999'")
    with pytest.raises(IndexStateError, match="'9999'.*newer"):
        Index.open(hg19_copy)
    assert sql1(hg19_copy, "select version_num from alembic_version") == [("9999",)]  # left alone


def test_older_revisions_upgraded_on_open(hg19_index, tmp_path, capsys):
    """Every older schema revision (made by alembic downgrade of a populated index) is
    upgraded in place on open, to exactly the head schema, keeping the data."""
    import shutil

    from alembic import command

    from gidx.catalog import Catalog

    cfg, script = _alembic()
    revs = [r.revision for r in script.walk_revisions()]  # head first
    if len(revs) < 2:
        pytest.skip("only one Alembic revision exists: no older schema to upgrade from")
    head = script.get_current_head()
    columns = "select table_name, column_name, data_type from information_schema.columns order by 1, 2"
    # 0004 changes constraints only (content_hash no longer unique): compare those too
    constraints = ("select table_name, constraint_type, constraint_text from duckdb_constraints() "
                   "where constraint_type in ('UNIQUE', 'PRIMARY KEY') order by all")

    def schema(index):
        return sql1(index, columns), sql1(index, constraints)

    at_head = schema(hg19_index)
    records = sql1(hg19_index, "select * from records order by id")
    for older in revs[1:]:
        index = shutil.copytree(hg19_index, tmp_path / f"at_{older}")
        with Catalog(index / "catalog.duckdb").connect(write=True) as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, older)
        assert sql1(index, "select version_num from alembic_version") == [(older,)]
        assert schema(index) != at_head  # the downgrade did change the schema
        capsys.readouterr()
        idx = Index.open(index)
        assert f"upgrading catalog schema {older} -> {head}" in capsys.readouterr().err
        assert sql1(index, "select version_num from alembic_version") == [(head,)]
        assert schema(index) == at_head
        assert sql1(index, "select * from records order by id") == records
        res = idx.query(HG19_BEDS / "GSM1174480_ARmo_0M_peaks.bed.gz", k=1)
        assert res.column("record")[0].as_py() == "GSM1174480_ARmo_0M_peaks"


def test_info(hg19_index):
    info = Index.open(hg19_index).info()
    files = bed_files(HG19_BEDS)
    assert info["records"] == len(files)
    assert info["intervals"] == sum(count_data_lines(p) for p in files)
    assert "hg19" in info["genome"] and "93 chromosomes" in info["genome"]
    from gidx.catalog import SCHEMA_HEAD

    assert info["schema_revision"] == SCHEMA_HEAD
