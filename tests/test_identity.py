"""Record identity (issue 14): one record per file, names, --replace, empty files,
and the 0003 -> 0004 catalog upgrade of an index made by the previous gidx.

* one record per file: the 22 UCSC tracks (two of them byte-identical) are 22
  records, ranked as the reference's search ranks them; a/x.bed and b/x.bed are
  a/x and b/x; identical files are separate records that live and die alone;
* re-ingest: same name + same intervals is a no-op, changed intervals are refused
  (one FILE: line naming --replace) or, with --replace, swapped atomically: every
  store loses the old record, gains the new one, nothing else changes, a crash
  on either side of the commit leaves exactly one version, truth is recomputed;
* empty sets (seqpare spec rule 6): `gidx seqpare` gives S = 0 / NaN, an empty
  file is a record with 0 intervals that truth, check, eval and train cope with;
* tests/data/index-0003: an index written by the code before this change.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, HG19_SIZES, YEAST_BEDS, YEAST_FASTA, catalog_snapshot, sql1, vector_row_counts

from gidx.bed import read_bed
from gidx.index import Index, ingest_inputs
from gidx.seqpare import pair

UCSC = DATA / "bed" / "hg19" / "seqpare_ucsc"
UCSC_EXPECTED = DATA / "expected" / "seqpare" / "AffyGnf1h_ucsc100_seqpare.tsv"
CASES = DATA / "seqpare" / "cases.jsonl"
OLD_INDEX = DATA / "index-0003"
QUINTILES = YEAST_BEDS / "winston_netseq_quintiles"
Q = "Scer_transcripts_w_verifiedORFs-nonoverlapping-plusone-nucdyad-NETseq-quintile-{}"


def names_of(index: Path) -> dict[str, int]:
    return {n: i for i, n in sql1(index, "select id, name from records")}


# ---- one record per file ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ucsc_index(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ucsc") / "idx"
    idx = Index.create(path, chrom_sizes=HG19_SIZES)
    rep = idx.ingest([UCSC])
    assert not rep.rejected and not rep.skipped
    return path


def test_ucsc_22_files_are_22_records_ranked_as_the_reference(ucsc_index, gidx_cli):
    files = sorted(UCSC.glob("*.bed.gz"))
    assert len(files) == 22
    p9, p10 = UCSC / "altSeqHaplotypesP9.bed.gz", UCSC / "altSeqHaplotypesP10.bed.gz"
    assert gzip.decompress(p9.read_bytes()) == gzip.decompress(p10.read_bytes())  # the identical pair
    names = names_of(ucsc_index)
    assert sorted(names) == sorted(p.name.removesuffix(".bed.gz") for p in files)
    ((h9,), (h10,)) = (sql1(ucsc_index, f"select content_hash from records where name = '{n}'")[0]
                       for n in ("altSeqHaplotypesP9", "altSeqHaplotypesP10"))
    assert h9 == h10
    # the reference's folder search (affyGnf1h against the tracks): every one of the 22 listed
    want = {}
    for line in UCSC_EXPECTED.read_text().splitlines()[1:]:
        n1, n2, teo, tc, sm, path = line.split("\t")
        want[path.rsplit("/", 1)[-1].removesuffix(".bed.gz")] = (int(n1), float(sm))
    res = gidx_cli("query", UCSC / "affyGnf1h.bed.gz", "-i", ucsc_index, "--exact", "-k", "22", "-f", "json", "-q")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    assert len(rows) == 22 and sorted(r["record"] for r in rows) == sorted(names)
    for r in rows:
        n1, sm = want[r["record"]]
        assert r["n_intervals"] == n1 and abs(r["exact_score"] - sm) <= 1e-5, r
    assert [r["exact_score"] for r in rows] == sorted((r["exact_score"] for r in rows), reverse=True)
    by = {r["record"]: r for r in rows}
    assert by["altSeqHaplotypesP9"]["exact_score"] == by["altSeqHaplotypesP10"]["exact_score"] > 0
    # re-ranked query: both too
    res = gidx_cli("query", UCSC / "altSeqHaplotypesP9.bed.gz", "-i", ucsc_index, "-k", "2", "-f", "json", "-q")
    top = json.loads(res.out)
    assert sorted(r["record"] for r in top) == ["altSeqHaplotypesP10", "altSeqHaplotypesP9"]
    assert [r["exact_score"] for r in top] == [1.0, 1.0]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_naming_scheme(tmp_path):
    """One folder: paths under it; one file: its name; several paths: paths under their common parent."""
    a = _write(tmp_path / "in" / "a" / "x.bed", "chr1\t1\t2\n")
    b = _write(tmp_path / "in" / "b" / "sub" / "x.narrowPeak.gz", "chr1\t1\t2\n")
    c = _write(tmp_path / "in" / "a" / "y.bed", "chr1\t1\t2\n")

    def named(*paths):
        return sorted(nm for _, nm in ingest_inputs(paths))

    assert named(tmp_path / "in" / "a") == ["x", "y"]
    assert named(a) == ["x"]
    assert named(a, c) == ["x", "y"]  # files of one folder keep their names
    assert named(tmp_path / "in" / "a", tmp_path / "in" / "b") == ["a/x", "a/y", "b/sub/x"]
    assert named(a, b) == ["a/x", "b/sub/x"]
    # a folder and a file inside it: the file once
    assert named(tmp_path / "in" / "a", a) == ["x", "y"]
    assert named(tmp_path / "in") == ["a/x", "a/y", "b/sub/x"]


def test_two_folders_same_file_name_cli(yeast_noalias_copy, tmp_path, gidx_cli):
    src = sorted(QUINTILES.glob("*quintile-*.bed"))
    _write(tmp_path / "a" / "x.bed", src[0].read_text())
    _write(tmp_path / "b" / "x.bed", src[1].read_text())
    idx = yeast_noalias_copy
    res = gidx_cli("ingest", tmp_path / "a", tmp_path / "b", "-i", idx)
    assert res.code == 0, res.err
    assert "Added 2, skipped 0, rejected 0" in res.err
    ls = [r["name"] for r in json.loads(gidx_cli("ls", "-i", idx, "-f", "json").out)]
    assert sorted(ls) == ["a/x", "b/x"] == sorted(names_of(idx))
    q = json.loads(gidx_cli("query", tmp_path / "b" / "x.bed", "-i", idx, "-f", "json", "-q").out)
    assert [r["record"] for r in q] == ["b/x", "a/x"] and q[0]["exact_score"] == 1.0
    # the same command again: nothing to do; one folder alone: its files are already indexed
    before = catalog_snapshot(idx)
    res = gidx_cli("ingest", tmp_path / "a", tmp_path / "b", "-i", idx)
    assert res.code == 0 and "Added 0, skipped 2" in res.err
    res = gidx_cli("ingest", tmp_path / "a", "-i", idx)
    assert res.code == 0 and "already indexed as 'a/x' (same file, same intervals)" in res.err
    assert catalog_snapshot(idx) == before
    assert gidx_cli("rm", "a/x", "-i", idx).code == 0
    assert sorted(names_of(idx)) == ["b/x"]


def test_same_name_twice_in_one_ingest(hg19_copy, tmp_path):
    folder = tmp_path / "f"
    _write(folder / "x.bed", "chr1\t1\t20\n")
    _write(folder / "x.narrowPeak", "chr2\t1\t20\t.\t0\t.\t1\t1\t1\t5\n")
    _write(folder / "y.bed", "chr3\t1\t20\n")
    (folder / "y.bed.gz").write_bytes(gzip.compress(b"chr3\t1\t20\n"))
    rep = Index.open(hg19_copy).ingest([folder])
    assert sorted(rep.added) == ["x", "y"]
    ((path, err),) = rep.rejected
    assert path == str(folder / "x.narrowPeak")
    assert err.problems == [f"{folder / 'x.narrowPeak'}: record name 'x' is also the name of {folder / 'x.bed'} "
                            "in this ingest (the BED suffix is not part of a name); ingest one of them on its own "
                            "with --name"]
    ((skipped, why),) = rep.skipped
    assert skipped == str(folder / "y.bed.gz") and "same intervals as" in why


def test_identical_files_live_and_die_alone(yeast_copy, tmp_path):
    """A copy of an indexed file under another name: its own record in every store; removing one
    leaves the other whole."""
    idx = Index.open(yeast_copy)
    src = QUINTILES / (Q.format(2) + ".bed")
    copy = shutil.copy(src, tmp_path / "twin.bed")
    rep = idx.ingest([copy])
    assert rep.added == ["twin"]
    names = names_of(yeast_copy)
    orig = "winston_netseq_quintiles/" + Q.format(2)
    res = idx.query(src, k=2, save=False)
    assert sorted(res["record"].to_pylist()) == sorted([orig, "twin"])
    assert res["exact_score"].to_pylist() == [1.0, 1.0]
    idx.truth()
    pairs = dict(((q, t), s) for q, t, s in sql1(yeast_copy, "select query_id, target_id, s from seqpare"))
    assert pairs[(names["twin"], names[orig])] == pairs[(names[orig], names["twin"])] == 1.0
    idx.rm([orig])
    assert "twin" in names_of(yeast_copy)
    res = idx.query(src, k=1, exact=True, save=False)
    assert res["record"].to_pylist() == ["twin"] and res["exact_score"].to_pylist() == [1.0]
    assert sql1(yeast_copy, f"select count(*) from seqpare where query_id = {names['twin']}")[0][0] > 0
    from gidx.check import check_index

    assert check_index(idx).ok


# ---- --replace --------------------------------------------------------------------------------


@pytest.fixture
def replace_setup(tmp_path):
    """A yeast index of 6 copied files (so that one can change), with truth, a saved query and a
    second vector table (as after `gidx train`)."""
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted(QUINTILES.glob("*.bed*")):
        shutil.copy(p, src / p.name)
    path = tmp_path / "idx"
    idx = Index.create(path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    assert len(idx.ingest([src]).added) == 6
    idx.truth()
    idx.query(src / (Q.format(1) + ".bed"), k=6)
    ids = np.array(sorted(names_of(path).values()))
    idx.vectors.add("extra_99", ids, np.ones((len(ids), 4), np.float32))
    target = src / (Q.format(3) + ".bed")
    return idx, path, src, target


def _change(target: Path) -> None:
    """Keep every other line and shift the rest: a new version of the file."""
    raw = target.read_bytes()
    gz = raw[:2] == b"\x1f\x8b"
    lines = (gzip.decompress(raw) if gz else raw).decode().splitlines(keepends=True)
    out = []
    for line in lines[::2]:
        c, s, e, *rest = line.rstrip("\n").split("\t")
        out.append("\t".join([c, str(int(s) + 7), str(int(e) + 7), *rest]) + "\n")
    text = "".join(out).encode()
    target.write_bytes(gzip.compress(text) if gz else text)


def _rows_without(index: Path, rid: int) -> dict:
    """Everything of the catalog that does not belong to record ``rid``."""
    return {
        "records": sql1(index, f"select * from records where id != {rid} order by id"),
        "intervals": sql1(index, f"select * from intervals where record_id != {rid} order by record_id, i"),
        "seqpare": sql1(index, f"select * from seqpare where query_id != {rid} and target_id != {rid} order by all"),
        "progress": sql1(index, f"select record_id, covered_upto, top_k from seqpare_progress "
                                f"where record_id != {rid} order by all"),
        "queries": sql1(index, "select * from queries order by id"),
        "results": sql1(index, f"select * from query_results where record_id != {rid} order by all"),
    }


def test_changed_file_refused_without_replace(replace_setup, gidx_cli):
    idx, path, src, target = replace_setup
    _change(target)
    before = catalog_snapshot(path)
    res = gidx_cli("ingest", src, "-i", path)
    assert res.code == 2
    (err,) = res.error_lines
    assert err == (f"Error: {target}: record '{Q.format(3)}' is already indexed with different intervals; "
                   "rerun with --replace to swap in this version (or pick another name with --name)")
    assert "Added 0, skipped 5, rejected 1" in res.err
    assert catalog_snapshot(path) == before


def test_replace_swaps_the_record_in_every_store(replace_setup, gidx_cli):
    from gidx.check import check_index

    idx, path, src, target = replace_setup
    name = Q.format(3)
    old = names_of(path)[name]
    kept = _rows_without(path, old)
    assert sql1(path, f"select count(*) from seqpare where query_id = {old} or target_id = {old}")[0][0] > 1
    assert sql1(path, f"select count(*) from query_results where record_id = {old}") == [(1,)]
    _change(target)
    res = gidx_cli("ingest", src, "-i", path, "--replace")
    assert res.code == 0, res.err
    assert "Added 1 (1 replacing an older version), skipped 5, rejected 0" in res.err
    new = names_of(path)[name]
    assert new > max(i for n, i in names_of(path).items() if n != name) and new != old
    # the new version is in, the old one gone from every store, nothing else touched
    assert _rows_without(path, new) == kept
    n_new = len(read_bed(target, idx.genome).intervals)
    assert sql1(path, f"select n_intervals from records where id = {new}") == [(n_new,)]
    assert sql1(path, f"select count(*) from intervals where record_id = {new}") == [(n_new,)]
    for tbl, col in (("intervals", "record_id"), ("seqpare", "query_id"), ("seqpare", "target_id"),
                     ("seqpare_progress", "record_id"), ("query_results", "record_id"), ("records", "id")):
        assert sql1(path, f"select count(*) from {tbl} where {col} = {old}") == [(0,)], tbl
    for t in idx.vectors.tables():
        assert old not in set(idx.vectors.record_ids(t).tolist()), t
    eid, enc = idx.set_encoder()
    assert new in set(idx.vectors.record_ids(idx.vector_table(eid, enc)).tolist())
    assert vector_row_counts(path)["extra_99"] == 5  # the others' rows of the other table stay
    ov = Index.open(path).overlap()
    assert old not in set(ov.record_ids.tolist()) and ov.n_t([new]).tolist() == [n_new]
    q = Index.open(path).query(target, k=1, save=False)
    assert q["record"].to_pylist() == [name] and q["record_id"].to_pylist() == [new]
    assert check_index(Index.open(path)).ok
    # truth: the new record against everyone, everyone against it, equal to a fresh computation
    rep = Index.open(path).truth()
    assert rep.queries == 6
    got = stored_by_name(path)
    fresh = shutil.copytree(path, path.parent / "fresh")
    with __import__("duckdb").connect(str(fresh / "catalog.duckdb")) as c:
        c.execute("delete from seqpare; delete from seqpare_progress")
    Index.open(fresh).truth()
    assert got == stored_by_name(fresh)
    assert any(q == name and t != name for q, t in got) and any(t == name and q != name for q, t in got)
    # compaction drops the old version's rows from the segments themselves
    assert check_index(Index.open(path), repair=True).ok
    from gidx.seqpare import OverlapIndex

    assert old not in set(OverlapIndex.open(path / "segments").record_ids.tolist())


def stored_by_name(index: Path) -> dict:
    rows = sql1(index, "select q.name, t.name, s.s from seqpare s join records q on q.id = s.query_id "
                       "join records t on t.id = s.target_id")
    return {(a, b): round(s, 12) for a, b, s in rows}


def test_replace_with_top_k_truth_recomputes_who_lost_a_neighbour(replace_setup):
    idx, path, src, target = replace_setup
    with __import__("duckdb").connect(str(path / "catalog.duckdb")) as c:
        c.execute("delete from seqpare; delete from seqpare_progress")
    idx.truth(top_k=2)
    # a record that another one kept among its best 2
    (old, name), = sql1(path, "select r.id, r.name from seqpare s join records r on r.id = s.target_id "
                              "where s.query_id != s.target_id order by r.id limit 1")
    holders = {q for q, in sql1(path, f"select query_id from seqpare where target_id = {old} and query_id != {old}")}
    assert holders
    (file,) = src.glob(f"{name}.bed*")
    _change(file)
    assert idx.ingest([src], replace=True).replaced == [name]
    progress = {r for r, in sql1(path, "select record_id from seqpare_progress")}
    assert not holders & progress  # reset: they are recomputed against everyone
    idx.truth(top_k=2)
    fresh = shutil.copytree(path, path.parent / "fresh")
    with __import__("duckdb").connect(str(fresh / "catalog.duckdb")) as c:
        c.execute("delete from seqpare; delete from seqpare_progress")
    Index.open(fresh).truth(top_k=2)

    def best(index):  # per query: its kept S values (ties may pick other targets)
        out: dict[str, list] = {}
        for (q, _), s in stored_by_name(index).items():
            out.setdefault(q, []).append(s)
        return {q: sorted(v) for q, v in out.items()}

    assert best(path) == best(fresh)


def test_replace_crash_before_commit_leaves_the_old_version(replace_setup, monkeypatch):
    from gidx.check import check_index

    idx, path, src, target = replace_setup
    name = Q.format(3)
    old = names_of(path)[name]
    before = catalog_snapshot(path)
    rows = _rows_without(path, -1)
    _change(target)

    def killed(raw, ids):
        raise RuntimeError("killed inside the catalog transaction")

    monkeypatch.setattr(Index, "_forget_records", staticmethod(killed))
    with pytest.raises(RuntimeError, match="killed"):
        idx.ingest([src], replace=True)
    monkeypatch.undo()
    assert _rows_without(path, -1) == rows  # the old version, whole; the new one nowhere in the catalog
    assert catalog_snapshot(path)["records"] == before["records"]
    rep = check_index(Index.open(path))
    assert rep.ok and rep.orphans  # the new version's vectors: orphans, harmless
    assert names_of(path)[name] == old
    # rerun: done
    rep = Index.open(path).ingest([src], replace=True)
    assert rep.replaced == [name]
    assert check_index(Index.open(path), repair=True).ok


def test_replace_crash_after_commit_leaves_the_new_version(replace_setup, monkeypatch):
    from gidx.check import check_index
    from gidx.vectors import VectorStore

    idx, path, src, target = replace_setup
    name = Q.format(3)
    old = names_of(path)[name]
    _change(target)

    def killed(self, table, ids):
        raise KeyboardInterrupt  # killed after the commit, before the old vectors went

    monkeypatch.setattr(VectorStore, "delete", killed)
    with pytest.raises(KeyboardInterrupt):
        idx.ingest([src], replace=True)
    monkeypatch.undo()
    new = names_of(path)[name]
    assert new != old and sql1(path, f"select count(*) from records where id = {old}") == [(0,)]
    idx = Index.open(path)
    res = idx.query(target, k=6, save=False)
    assert old not in res["record_id"].to_pylist() and res["record_id"].to_pylist()[0] == new
    rep = check_index(idx)
    assert rep.ok and any("of records not in the catalog" in o for o in rep.orphans)
    rep = check_index(idx, repair=True)
    assert rep.ok
    for t in idx.vectors.tables():
        assert old not in set(idx.vectors.record_ids(t).tolist())
    # and a rerun is a no-op
    assert Index.open(path).ingest([src], replace=True).added == []


def test_concurrent_store_of_the_same_name_is_decided_under_the_lock(replace_setup):
    """Another process stored the name between our look and our commit: without --replace ours
    is dropped (and reported), with --replace ours wins."""
    idx, path, src, target = replace_setup
    name = Q.format(3)
    _change(target)
    bf = read_bed(target, idx.genome, aliases={"chrM": "chrmt"})
    eid, enc = idx.set_encoder()
    lost = idx._commit_batch([(name, bf, bf.intervals.content_hash(), None)], eid, enc)
    assert "concurrent ingest" in lost[name] and "--replace" in lost[name]
    old = names_of(path)[name]
    lost = idx._commit_batch([(name, bf, bf.intervals.content_hash(), old - 1)], eid, enc)
    assert lost == {} and names_of(path)[name] > old
    lost = idx._commit_batch([(name, bf, bf.intervals.content_hash(), None)], eid, enc)
    assert lost[name] == f"already indexed as {name!r} (by a concurrent ingest)"


# ---- empty sets -------------------------------------------------------------------------------


def _bed(path: Path, rows) -> Path:
    path.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))
    return path


def test_seqpare_cli_empty_cases_of_the_spec(tmp_path, gidx_cli):
    """Spec rule 6 on the fixture's cases with an empty side: S = 0; both empty: NaN
    (`nan` in table and TSV, null in JSON)."""
    cases = [json.loads(line) for line in CASES.read_text().splitlines()]
    empty = [c for c in cases if c["n_a"] == 0 or c["n_b"] == 0]
    assert any(c["n_a"] == c["n_b"] == 0 for c in empty) and any(c["n_a"] + c["n_b"] > 0 for c in empty)
    for c in empty:
        a = _bed(tmp_path / "a.bed", c["a"])
        b = _bed(tmp_path / "b.bed", c["b"])
        for t, q, key in ((a, b, "s_ab"), (b, a, "s_ba")):
            res = gidx_cli("seqpare", t, q, "-f", "json")
            assert res.code == 0, (c["name"], res.err)
            (row,) = json.loads(res.out)
            assert row["s"] == c[key], c["name"]  # 0.0, or None for NaN
            assert (row["n_target"], row["n_query"], row["teo"], row["tc"]) == (
                len(t.read_text().splitlines()), len(q.read_text().splitlines()), 0.0, 0)
    both = next(c for c in empty if c["n_a"] == c["n_b"] == 0)
    a, b = _bed(tmp_path / "a.bed", both["a"]), _bed(tmp_path / "b.bed", both["b"])
    tsv = gidx_cli("seqpare", a, b, "-f", "tsv").out.splitlines()
    assert tsv == ["n_target\tn_query\tteo\ttc\ts", "0\t0\t0.0\t0\tnan"]
    table = gidx_cli("seqpare", a, b).out.splitlines()
    assert table[1].split() == ["0", "0", "0", "0", "nan"]


def test_seqpare_cli_header_only_files(tmp_path, gidx_cli):
    hdr = tmp_path / "h.bed.gz"
    hdr.write_bytes(gzip.compress(b"track name=none\n#chrom\tstart\tend\n\n"))
    real = YEAST_BEDS / "winston_annotations" / "SSA4.bed"
    for t, q in ((hdr, real), (real, hdr)):
        (row,) = json.loads(gidx_cli("seqpare", t, q, "-f", "json").out)
        assert row["s"] == 0.0 and {row["n_target"], row["n_query"]} == {0, 1}
    (row,) = json.loads(gidx_cli("seqpare", hdr, hdr, "-f", "json").out)
    assert row["s"] is None
    assert math.isnan(pair(read_bed(hdr, allow_empty=True).intervals, read_bed(hdr, allow_empty=True).intervals).s)
    # the reader's other errors stay errors
    bad = tmp_path / "bin.bed"
    bad.write_bytes(b"\x00\x01garbage")
    res = gidx_cli("seqpare", bad, real)
    assert res.code == 2 and "binary data" in res.error_lines[0]


@pytest.fixture
def empty_index(yeast_copy, tmp_path):
    """The yeast index with three records without intervals: an empty file, a header-only file
    and a file whose only chromosome the genome lacks (ingested with --skip-unknown-chroms)."""
    idx = Index.open(yeast_copy)
    folder = tmp_path / "empties"
    folder.mkdir()
    (folder / "empty.bed").write_bytes(b"")
    (folder / "headers.narrowPeak").write_text("track type=narrowPeak\n# no peaks\n")
    (folder / "foreign.bed").write_text("chrUn_x\t1\t100\nchrUn_x\t5\t50\n")
    rep = idx.ingest([folder], skip_unknown_chroms=True)
    assert sorted(rep.added) == ["empty", "foreign", "headers"] and not rep.rejected
    assert f"{folder / 'foreign.bed'}: skipped 2 intervals on unknown chromosome 'chrUn_x'" in rep.warnings
    assert (f"{folder / 'foreign.bed'}: no intervals left after skipping unknown chromosomes ['chrUn_x']; stored as "
            "record 'foreign' with 0 intervals (seqpare S = 0 against every other set)") in rep.warnings
    assert len(rep.warnings) == 4
    return idx, yeast_copy


def test_empty_records_rank_last_with_zero_scores(empty_index):
    idx, path = empty_index
    empties = {"empty", "foreign", "headers"}
    n = len(names_of(path))
    q = QUINTILES / (Q.format(4) + ".bed")
    for kw in ({}, {"rerank": None}, {"exact": True}):
        res = idx.query(q, k=n, save=False, **kw)
        recs = res["record"].to_pylist()
        assert empties <= set(recs), kw
        scores = res["score"].to_numpy()
        assert not np.isnan(scores).any(), kw
        assert all(s == 0.0 for r, s in zip(recs, scores) if r in empties)
        if "rerank" not in kw:
            exact = dict(zip(recs, res["exact_score"].to_pylist()))
            assert all(exact[r] == 0.0 for r in empties)
            first_empty = min(recs.index(r) for r in empties)
            assert all(exact[r] == 0.0 for r in recs[first_empty:])  # after every record with S > 0


def test_empty_records_truth_check_eval(empty_index, gidx_cli):
    from gidx.check import check_index
    from gidx.evaluate import eval_index

    idx, path = empty_index
    rep = idx.truth()
    assert rep.queries == len(names_of(path))
    ids = [names_of(path)[n] for n in ("empty", "foreign", "headers")]
    inl = ",".join(map(str, ids))
    assert sql1(path, f"select count(*) from seqpare where query_id in ({inl}) or target_id in ({inl})") == [(0,)]
    assert sql1(path, f"select count(*) from seqpare_progress where record_id in ({inl})") == [(3,)]
    assert sql1(path, "select count(*) from seqpare where isnan(s) or s <= 0") == [(0,)]
    assert idx.truth().queries == 0
    assert check_index(idx).ok
    # the overlap structure rebuilt from the catalog keeps the empty records
    for seg in (path / "segments").iterdir():
        shutil.rmtree(seg)
    res = gidx_cli("check", "-i", path, "--repair")
    assert res.code == 0, res.out
    assert f"checked overlap_records  {len(names_of(path))}" in res.out
    rows, _ = eval_index(Index.open(path), ks=(1, 5), rerank=10, queries=sorted(names_of(path).values()))
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("recall@1", "recall@5", "tau@5")), r


def test_empty_records_train(tmp_path):
    """Training, activation (re-embedding every record with the model) and queries with an
    empty record in the index."""
    pytest.importorskip("torch")
    from gidx.corpus import CorpusConfig, make_corpus
    from gidx.model import ModelConfig
    from gidx.train import TrainConfig, train

    from conftest import HG19_BEDS

    idx = Index.create(tmp_path / "idx", chrom_sizes=HG19_SIZES)
    make_corpus([HG19_BEDS], idx.genome, tmp_path / "bed", CorpusConfig(records=24, family_size=6,
                                                                        max_intervals=150, seed=1))
    (tmp_path / "bed" / "zz_empty.bed").write_text("track name=empty\n")
    rep = idx.ingest([tmp_path / "bed"])
    assert "zz_empty" in rep.added and len(rep.added) == 25
    idx.truth()
    res = train(idx, ModelConfig(features="position", buckets=1024, hidden=32, chunk=64),
                TrainConfig(epochs=2, steps_per_epoch=4, seeds_per_batch=6, pos_per_seed=2, max_intervals=128,
                            patience=3, val_fraction=0.25, val_k=5, lr=3e-3, pos_threshold=0.2))
    assert all(math.isfinite(v) for v in res.metrics.values() if isinstance(v, float))
    from gidx.train import activate

    activate(idx, res.model_id)
    eid, enc = Index.open(tmp_path / "idx").set_encoder()
    assert enc.name == "model"
    ids, vecs = idx.vectors.vectors(idx.vector_table(eid, enc))
    empty_id = names_of(tmp_path / "idx")["zz_empty"]
    assert np.isfinite(vecs).all() and not vecs[list(ids).index(empty_id)].any()
    q = next(p for p in sorted((tmp_path / "bed").rglob("*.bed")) if p.name != "zz_empty.bed")
    out = Index.open(tmp_path / "idx").query(q, k=25, save=False)
    assert not np.isnan(out["score"].to_numpy()).any()
    assert dict(zip(out["record"].to_pylist(), out["exact_score"].to_pylist()))["zz_empty"] == 0.0


# ---- an index written by the previous gidx (schema 0003) ---------------------------------------


def test_index_0003_upgraded_on_open(tmp_path, capsys):
    from gidx.catalog import SCHEMA_HEAD
    from gidx.check import check_index

    with tarfile.open(OLD_INDEX / "index.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    path = tmp_path / "idx"
    want = json.loads((OLD_INDEX / "expected.json").read_text())
    unique = ("select constraint_text from duckdb_constraints() where table_name = 'records' "
              "and constraint_type = 'UNIQUE' order by 1")
    assert sql1(path, "select version_num from alembic_version") == [("0003",)]
    assert sql1(path, unique) == [('UNIQUE("name")',), ("UNIQUE(content_hash)",)]
    before = {t: sql1(path, f"select * from {t} order by all") for t in
              ("records", "intervals", "queries", "query_results", "seqpare", "seqpare_progress", "encoders")}

    capsys.readouterr()
    idx = Index.open(path)
    assert f"upgrading catalog schema 0003 -> {SCHEMA_HEAD}" in capsys.readouterr().err
    assert sql1(path, "select version_num from alembic_version") == [(SCHEMA_HEAD,)]
    assert sql1(path, unique) == [('UNIQUE("name")',)]
    for t, rows in before.items():
        # 0005 adds two columns to seqpare_progress (0, true: old rows were exhaustive)
        cols = "* exclude (candidates, certified)" if t == "seqpare_progress" else "*"
        assert sql1(path, f"select {cols} from {t} order by all") == rows, t
    assert sql1(path, "select distinct candidates, certified from seqpare_progress") in ([], [(0, True)])
    assert [list(r) for r in sql1(path, "select id, name, n_intervals, content_hash from records order by id")] \
        == want["records"]
    assert sql1(path, "select count(*) from intervals") == [(want["intervals"],)]
    assert [list(r) for r in sql1(path, "select query_id, target_id, n_q, n_t, teo, s from seqpare order by 1, 2")] \
        == want["seqpare"]
    assert check_index(idx).ok

    # the stored queries and a rerun of them give the answers of the old code
    for key in ("quintile1_rerank", "hmmratac_exact"):
        q = want[key]
        stored = sql1(path, f"select rank, record_id, score, exact_score from query_results "
                            f"where query_id = {q['query_id']} order by rank")
        assert [(r["rank"], r["record_id"]) for r in q["rows"]] == [(r, i) for r, i, _, _ in stored]
        kw = {k: v for k, v in q["query"].items() if k != "path"}
        res = idx.query(YEAST_BEDS / q["query"]["path"], save=False, **kw).to_pylist()
        old = q["rows"]
        assert [r["record"] for r in res[: len(old)]] == [r["record"] for r in old]
        for a, b in zip(res, old):
            assert a["score"] == pytest.approx(b["score"], abs=1e-6)
            assert a["exact_score"] == pytest.approx(b["exact_score"], abs=1e-12)
            assert a["n_intervals"] == b["n_intervals"]
        assert all(r["exact_score"] == 0.0 for r in res[len(old):])  # --exact may now list S = 0 records too

    # identical files under two names: refused by 0003 (unique content_hash), two records now
    src = YEAST_BEDS / "winston_netseq_quintiles" / (Q.format(1) + ".bed")
    twin = shutil.copy(src, tmp_path / "quintile1_twin.bed")
    rep = idx.ingest([twin])
    assert rep.added == ["quintile1_twin"]
    assert names_of(path)["quintile1_twin"] == max(r[0] for r in want["records"]) + 1  # the id sequence goes on
    hashes = [h for h, in sql1(path, "select content_hash from records where name in "
                                     f"('quintile1_twin', '{Q.format(1)}')")]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    res = idx.query(src, k=2, save=False)
    assert sorted(res["record"].to_pylist()) == sorted(["quintile1_twin", Q.format(1)])
    rep = idx.truth()
    assert rep.queries == len(want["records"]) + 1
    assert check_index(idx).ok


def test_index_0003_fixture_is_small():
    files = [p for p in OLD_INDEX.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2_000_000
    with tarfile.open(OLD_INDEX / "index.tar.gz") as tar:
        assert not any("/cache/" in m.name or m.name.endswith("/cache") for m in tar.getmembers())
