"""The ``gidx`` command line: real collections, every bad-input case, schema refusals,
SQL and output formats, help text.

Most tests run ``cli.main.main()`` in-process (``gidx_cli``), which is the console-script
entry point itself: it is where a GidxError becomes one ``Error:`` line and exit status 2.
A few run the installed script in a subprocess, end to end.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from gidx.cli.main import app
from gidx.index import Index

from conftest import (
    HG19_BEDS,
    HG19_SIZES,
    YEAST_BEDS,
    YEAST_CHRM_BED,
    YEAST_FASTA,
    bed_files,
    catalog_snapshot,
    count_data_lines,
    record_name,
    records_by_name,
    sql1,
)

HG19_LENGTHS = dict(line.split("\t")[:2] for line in HG19_SIZES.read_text().splitlines() if line.strip())
CHR21 = int(HG19_LENGTHS["chr21"])


ANY_LINE = object()


def assert_one_error_line(res, path: Path | None, line, *words: str) -> str:
    """Exit 2, exactly one ``Error:`` line, naming FILE:LINE: (``line=None``: a whole-file
    problem, ``FILE: ...``; ``ANY_LINE``: some line number)."""
    assert res.code == 2, (res.code, res.err)
    assert "Traceback" not in res.err
    (err,) = res.error_lines
    if path is not None:
        if line is ANY_LINE:
            assert re.match(rf"Error: {re.escape(str(path))}:\d+: ", err), err
        else:
            prefix = f"Error: {path}:" + (f"{line}: " if line is not None else " ")
            assert err.startswith(prefix), (err, prefix)
    for w in words:
        assert w in err, (w, err)
    return err


# ---- help -----------------------------------------------------------------------------


def all_commands():
    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + [name])

    walk(root, [])
    return root, out


def test_every_command_and_parameter_has_help():
    root, cmds = all_commands()
    assert len(cmds) > 5
    missing = []
    for path, cmd in cmds:
        name = " ".join(["gidx", *path])
        if not (cmd.help or "").strip():
            missing.append(f"{name}: command")
        ctx = cmd.make_context(name, [], resilient_parsing=True)
        for p in cmd.get_params(ctx):
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"{name}: {p.opts or p.name}")
    assert not missing, "no help text for:\n" + "\n".join(missing)


def test_help_exits_0_and_shows_every_option():
    runner = CliRunner()
    root, cmds = all_commands()
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    for name in root.commands:
        assert name in res.output
    for path, cmd in cmds[1:]:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        for p in cmd.params:
            if isinstance(p, typer.core.TyperOption):
                assert any(o in res.output for o in p.opts), (path, p.opts)


# ---- real collections end to end ---------------------------------------------------------------


def test_hg19_collection_cli(tmp_path, gidx_cli):
    """init --chrom-sizes, ingest a real collection, query one of its files, re-ingest, rm + re-ingest."""
    idx = tmp_path / "idx"
    files = bed_files(HG19_BEDS)
    res = gidx_cli("init", idx, "--chrom-sizes", HG19_SIZES)
    assert res.code == 0, res.err
    res = gidx_cli("ingest", HG19_BEDS, "-i", idx)
    assert res.code == 0, res.err
    total = sum(count_data_lines(p) for p in files)
    assert f"Added {len(files)}, skipped 0, rejected 0 file(s); {total:,} intervals" in res.err

    q = HG19_BEDS / "GSM1295077_CBX7_BF_ChipSeq_mergedReps_peaks.bed.gz"
    res = gidx_cli("query", q, "-i", idx, "--format", "json", "-k", "5")
    assert res.code == 0, res.err
    first = json.loads(res.out)
    assert len(first) == 5 and first[0]["record"] == "GSM1295077_CBX7_BF_ChipSeq_mergedReps_peaks"
    assert first[0]["score"] == pytest.approx(1, abs=1e-5) and first[0]["rank"] == 1
    assert re.search(r"query id (\d+)", res.err)

    before = catalog_snapshot(idx)
    res = gidx_cli("ingest", HG19_BEDS, "-i", idx)
    assert res.code == 0
    assert f"Added 0, skipped {len(files)}, rejected 0" in res.err
    assert res.err.count("already indexed") == len(files)
    assert catalog_snapshot(idx) == before

    assert gidx_cli("rm", "GSM1295077_CBX7_BF_ChipSeq_mergedReps_peaks", "-i", idx).code == 0
    mid = json.loads(gidx_cli("query", q, "-i", idx, "--format", "json", "-k", "5").out)
    assert "GSM1295077_CBX7_BF_ChipSeq_mergedReps_peaks" not in [r["record"] for r in mid]
    res = gidx_cli("ingest", HG19_BEDS, "-i", idx)
    assert f"Added 1, skipped {len(files) - 1}, rejected 0" in res.err
    again = json.loads(gidx_cli("query", q, "-i", idx, "--format", "json", "-k", "5").out)
    strip = lambda rows: [(r["record"], r["score"], r.get("exact_score"), r["n_intervals"]) for r in rows]  # noqa: E731
    assert [r[0] for r in strip(again)] == [r[0] for r in strip(first)]
    for a, b in zip(strip(again), strip(first)):
        assert a[1] == pytest.approx(b[1], abs=1e-6) and a[3] == b[3]
        assert (a[2] is None and b[2] is None) or a[2] == pytest.approx(b[2], abs=1e-12)


def test_yeast_cli_with_alias(tmp_path, gidx_cli):
    idx = tmp_path / "yeast"
    res = gidx_cli("init", idx, "--genome", YEAST_FASTA, "--chrom-alias", "chrM=chrmt", "--name", "sacCer3")
    assert res.code == 0, res.err
    assert "17 chromosomes" in res.err and "12,157,105 bp" in res.err
    files = bed_files(YEAST_BEDS)
    res = gidx_cli("ingest", YEAST_BEDS, "-i", idx, "-q")
    assert res.code == 0 and res.err == ""
    assert {n: r[0] for n, r in records_by_name(idx).items()} == {record_name(p, YEAST_BEDS): count_data_lines(p) for p in files}
    q = YEAST_BEDS / "macs3_hmmratac" / "hmmratac_yeast500k_accessible_regions.narrowPeak.gz"
    rows = json.loads(gidx_cli("query", q, "-i", idx, "-f", "json", "-q").out)
    assert rows[0]["record"] == "macs3_hmmratac/hmmratac_yeast500k_accessible_regions"
    assert rows[0]["score"] == pytest.approx(1, abs=1e-5)
    assert len(rows) == len(files)  # k=20 > 17 records: all of them, once
    assert sorted(r["record"] for r in rows) == sorted(record_name(p, YEAST_BEDS) for p in files)


def test_api_and_cli_rank_the_same(hg19_index, gidx_cli):
    q = HG19_BEDS / "GSM1174482_ARmo_100nM_peaks.bed.gz"
    for extra, kw in (([], {}), (["--no-rerank"], {"rerank": None})):
        api = Index.open(hg19_index).query(q, k=5, save=False, **kw).to_pylist()
        res = gidx_cli("query", q, "-i", hg19_index, "-k", "5", "--format", "json", *extra)
        assert res.code == 0, res.err
        cli = json.loads(res.out)
        assert [r["record"] for r in cli] == [r["record"] for r in api]
        assert [r["score"] for r in cli] == pytest.approx([r["score"] for r in api], abs=1e-9)


def test_query_table_and_out_file(hg19_index, gidx_cli, tmp_path):
    q = HG19_BEDS / "GSM1174480_ARmo_0M_peaks.bed.gz"
    res = gidx_cli("query", q, "-i", hg19_index, "-k", "3", "-q")
    assert res.code == 0
    header, *lines = res.out.strip().splitlines()
    assert header.split()[:4] == ["rank", "record_id", "record", "score"]
    assert len(lines) == 3 and lines[0].split()[2] == "GSM1174480_ARmo_0M_peaks"
    out = tmp_path / "hits.tsv"
    res = gidx_cli("query", q, "-i", hg19_index, "-k", "3", "-q", "--format", "tsv", "--out", out)
    assert res.code == 0 and res.out == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text()), delimiter="\t"))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[0]["record"] == "GSM1174480_ARmo_0M_peaks"


# ---- bad input: exit 2, FILE:LINE:, catalog unchanged ---------------------------------------------


def _bytes(text: str) -> bytes:
    return text.encode()


BAD_CASES = {
    # name: (file name, content, line of the first problem (None: whole file), words in the message)
    "non_integer": ("a.bed", _bytes("chr1\t100\t200\nchr1\t1O0\t200\nchr1\t100\t2.5e3\n"), 2,
                    ["start '1O0' is not an integer", "(and 1 more problem)"]),
    "negative": ("a.bed", _bytes("chr1\t100\t200\nchr1\t-10\t20\n"), 2, ["negative start -10"]),
    "start_after_end": ("a.bed", _bytes("chr1\t1\t2\nchr1\t2\t3\nchr1\t500\t400\n"), 3, ["start 500 is after end 400"]),
    "too_few_columns": ("a.bed", _bytes("chr1\t100\t200\nchr1\t100\n"), 2, ["too few columns"]),
    "space_separated": ("a.bed", _bytes("chr1 100 200\nchr1 300 400\n"), 1, ["too few columns", "separated by tabs"]),
    "unknown_chrom": ("a.bed", _bytes("chr1\t1\t2\nchrFoo\t1\t2\nchr5_bogus\t3\t4\nchrFoo\t5\t6\n"), 2,
                      ["not in genome hg19", "'chrFoo' (2 lines", "'chr5_bogus' (1 line", "--skip-unknown-chroms"]),
    "past_chrom_end": ("a.bed", _bytes(f"chr21\t{CHR21 - 10}\t{CHR21}\nchr21\t{CHR21 - 10}\t{CHR21 + 1}\n"), 2,
                       [f"end {CHR21 + 1} is past the end of chr21 ({CHR21} bp"]),
    "binary_nul": ("a.bed", b"chr1\t1\t2\nchr1\t3\t4\n\x00\x00\x7fELF\x02\x01", 3, ["binary data"]),
    "garbage_not_utf8": ("a.bed", bytes(range(128, 256)) * 4, 1, ["not UTF-8"]),
    "garbage_gzip": ("a.bed.gz", b"\x1f\x8b" + bytes(range(256)) * 4, 1, ["corrupt gzip"]),
    # (empty and header-only files are records with 0 intervals: see EMPTY_CASES)
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_rejected_catalog_unchanged(case, hg19_copy, tmp_path, gidx_cli):
    fname, content, line, words = BAD_CASES[case]
    path = tmp_path / fname
    path.write_bytes(content)
    before = catalog_snapshot(hg19_copy)
    res = gidx_cli("ingest", path, "-i", hg19_copy, "-q")
    assert_one_error_line(res, path, line, *words)
    assert catalog_snapshot(hg19_copy) == before


def test_bad_input_every_problem_listed(hg19_copy, tmp_path, gidx_cli):
    path = tmp_path / "many.bed"
    path.write_text("chr1\t1\t2\nchr1\tx\t2\nchr1\t5\t4\nchr1\t-1\t3\n")
    res = gidx_cli("ingest", path, "-i", hg19_copy, "-q")
    assert_one_error_line(res, path, 2, "(and 2 more problems)")
    assert f"  {path}:3: start 5 is after end 4" in res.err.splitlines()
    assert f"  {path}:4: negative start -1" in res.err.splitlines()


def test_truncated_gzip_real_file(hg19_copy, tmp_path, gidx_cli):
    src = HG19_BEDS / "GSM1174481_ARmo_1nM_peaks.bed.gz"
    raw = src.read_bytes()
    path = tmp_path / "cut.bed.gz"
    path.write_bytes(raw[: len(raw) // 2])
    before = catalog_snapshot(hg19_copy)
    res = gidx_cli("ingest", path, "-i", hg19_copy, "-q")
    err = assert_one_error_line(res, path, ANY_LINE, "truncated")
    line = int(re.match(rf"Error: {re.escape(str(path))}:(\d+): ", err).group(1))
    assert 1 < line < count_data_lines(src)
    assert catalog_snapshot(hg19_copy) == before


def test_query_with_bad_file_exit_2(hg19_index, tmp_path, gidx_cli):
    path = tmp_path / "q.bed"
    path.write_text("chr1\t10\t20\nchr1\t30\n")
    n = sql1(hg19_index, "select count(*) from queries")
    assert_one_error_line(gidx_cli("query", path, "-i", hg19_index), path, 2, "too few columns")
    assert sql1(hg19_index, "select count(*) from queries") == n


def _narrowpeak(n):
    return "".join(f"chr{1 + i % 3}\t{1000 * i}\t{1000 * i + 300}\tpeak{i}\t{i}\t.\t5.5\t-1\t2.1\t150\n" for i in range(n))


GOOD_CASES = {
    # name: (file name, content, intervals, format)
    "crlf": ("crlf.bed", _bytes("chr1\t100\t200\r\nchr2\t300\t400\r\nchr2\t500\t500\r\n"), 3, "BED3"),
    "crlf_gz": ("crlf.bed.gz", gzip.compress(b"chr1\t100\t200\r\nchr2\t300\t400\r\n"), 2, "BED3"),
    "headers": ("hdr.bed", _bytes('browser position chr1:1-1000\ntrack name="x" useScore=1\n# made by hand\n'
                                  "chrom\tchromStart\tchromEnd\tname\nchr1\t100\t200\ta\nchr3\t5\t10\tb\n"), 2, "BED4"),
    "bed12": ("t.bed", _bytes("chr1\t1000\t5000\ttx1\t0\t+\t1200\t4800\t0\t2\t400,500,\t0,3500,\n"
                              "chr7\t100\t900\ttx2\t0\t-\t100\t900\t255,0,0\t1\t800,\t0,\n"), 2, "BED12"),
    "narrowPeak": ("p.narrowPeak", _bytes("track type=narrowPeak\n" + _narrowpeak(30)), 30, "narrowPeak"),
    "broadPeak": ("p.broadPeak.gz", gzip.compress(b"chrX\t10\t5000\tb1\t0\t.\t2.5\t-1\t-1\nchrY\t0\t100\tb2\t0\t.\t1\t-1\t-1\n"),
                  2, "broadPeak"),
}


@pytest.mark.parametrize("case", list(GOOD_CASES))
def test_good_input_variants_ingest(case, hg19_copy, tmp_path, gidx_cli):
    fname, content, n, fmt = GOOD_CASES[case]
    path = tmp_path / fname
    path.write_bytes(content)
    res = gidx_cli("ingest", path, "-i", hg19_copy, "-q")
    assert res.code == 0, res.err
    name = fname.removesuffix(".gz").rsplit(".", 1)[0]
    got = records_by_name(hg19_copy)[name]
    assert got[0] == n and got[1] == fmt


EMPTY_CASES = {
    # name: (file name, content, header lines)
    "empty": ("e.bed", b"", 0),
    "blank_lines": ("e.bed", b"\n\n\r\n", 0),
    "only_headers": ("e.bed", _bytes("track name=x\n#chrom\tstart\tend\n"), 2),
    "only_comments_gz": ("e.bed.gz", gzip.compress(b"# no peaks called\nbrowser position chr1:1-100\n"), 2),
    "narrowPeak_empty": ("e.narrowPeak", b"", 0),
}


@pytest.mark.parametrize("case", list(EMPTY_CASES))
def test_empty_file_is_a_record_with_no_intervals(case, hg19_copy, tmp_path, gidx_cli):
    """Peak callers write empty files: a record with 0 intervals and one warning line, not an error."""
    fname, content, headers = EMPTY_CASES[case]
    path = tmp_path / fname
    path.write_bytes(content)
    before = records_by_name(hg19_copy)
    res = gidx_cli("ingest", path, "-i", hg19_copy)
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("Warning:")]
    assert warnings == [f"Warning: {path}: no intervals (empty file or only header lines); stored as record 'e' "
                        "with 0 intervals (seqpare S = 0 against every other set)"]
    assert "Added 1, skipped 0, rejected 0 file(s); 0 intervals" in res.err
    got = records_by_name(hg19_copy)
    assert set(got) - set(before) == {"e"}
    n, fmt, chroms, extra = got["e"]
    assert (n, chroms, json.loads(extra)["header_lines"]) == (0, "", headers)
    assert fmt == ("narrowPeak" if "narrowPeak" in fname else "BED")
    assert sql1(hg19_copy, "select count(*) from intervals i join records r on r.id = i.record_id "
                           "where r.name = 'e'") == [(0,)]
    # idempotent like any file
    res = gidx_cli("ingest", path, "-i", hg19_copy)
    assert res.code == 0 and "already indexed as 'e'" in res.err
    # ls shows it
    assert {r["name"]: r["n_intervals"] for r in json.loads(gidx_cli("ls", "-i", hg19_copy, "-f", "json").out)}["e"] == 0


def test_query_with_empty_file_is_one_error_line(hg19_index, tmp_path, gidx_cli):
    n = sql1(hg19_index, "select count(*) from queries")
    for content in (b"", b"track name=x\n# nothing\n"):
        path = tmp_path / "q.bed"
        path.write_bytes(content)
        assert_one_error_line(gidx_cli("query", path, "-i", hg19_index), path, None, "no intervals", "nothing to rank")
    assert sql1(hg19_index, "select count(*) from queries") == n


def test_crlf_coordinates_exact(hg19_copy, tmp_path, gidx_cli):
    path = tmp_path / "crlf.bed"
    path.write_bytes(b"chr1\t100\t200\r\nchr2\t300\t400\r\n")
    assert gidx_cli("ingest", path, "-i", hg19_copy, "-q").code == 0
    rows = sql1(hg19_copy, "select chrom, chrom_start, chrom_end from intervals i join records r on r.id = i.record_id "
                            "where r.name = 'crlf' order by i")
    assert rows == [("chr1", 100, 200), ("chr2", 300, 400)]


def test_multi_file_ingest_one_bad(hg19_copy, tmp_path, gidx_cli):
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.bed").write_text("chr1\t100\t200\n")
    (folder / "b.bed").write_text("chr1\t100\t200\nchr1\t300\tfoo\n")
    (folder / "c.bed.gz").write_bytes(gzip.compress(b"chr2\t5\t10\nchr3\t5\t10\n"))
    res = gidx_cli("ingest", folder, "-i", hg19_copy)
    assert_one_error_line(res, folder / "b.bed", 2, "end 'foo' is not an integer")
    names = records_by_name(hg19_copy)
    assert names["a"][0] == 1 and names["c"][0] == 2 and "b" not in names
    lines = res.err.strip().splitlines()
    assert lines[-1].startswith("Added 2, skipped 0, rejected 1 file(s); 3 intervals")
    assert lines.index(res.error_lines[0]) < len(lines) - 1  # the summary comes last


def test_missing_input_path(hg19_copy, tmp_path, gidx_cli):
    before = catalog_snapshot(hg19_copy)
    res = gidx_cli("ingest", tmp_path / "nope.bed", "-i", hg19_copy)
    assert_one_error_line(res, tmp_path / "nope.bed", None, "no such file")
    assert catalog_snapshot(hg19_copy) == before


def test_skip_unknown_chroms_hg19(hg19_copy, tmp_path, gidx_cli):
    path = tmp_path / "unk.bed"
    path.write_text("chr1\t1\t2\nchrFoo\t1\t2\nchr5_bogus\t3\t4\nchrFoo\t5\t6\nchr2\t7\t8\n")
    res = gidx_cli("ingest", path, "-i", hg19_copy, "--skip-unknown-chroms")
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 2
    assert any("2 intervals" in w and "'chrFoo'" in w for w in warnings)
    assert any("1 interval " in w and "'chr5_bogus'" in w for w in warnings)
    assert records_by_name(hg19_copy)["unk"][0] == 2


def test_yeast_chrM_needs_alias(yeast_noalias_copy, gidx_cli):
    """Real file: chrM records against the FASTA's chrmt."""
    n_all = count_data_lines(YEAST_CHRM_BED)
    lines = gzip.decompress(YEAST_CHRM_BED.read_bytes()).decode().splitlines()
    chrm_lines = [i for i, line in enumerate(lines, 1) if line.startswith("chrM\t")]
    before = catalog_snapshot(yeast_noalias_copy)
    res = gidx_cli("ingest", YEAST_CHRM_BED, "-i", yeast_noalias_copy)
    assert_one_error_line(res, YEAST_CHRM_BED, chrm_lines[0],
                          f"'chrM' ({len(chrm_lines)} lines, first line {chrm_lines[0]})", "--chrom-alias chrM=chrmt")
    assert catalog_snapshot(yeast_noalias_copy) == before

    res = gidx_cli("ingest", YEAST_CHRM_BED, "-i", yeast_noalias_copy, "--chrom-alias", "chrM=chrmt")
    assert res.code == 0, res.err
    ((n, chroms),) = sql1(yeast_noalias_copy, "select n_intervals, chromosomes from records")
    assert n == n_all and "chrmt" in chroms.split(",")


def test_yeast_chrM_skip_unknown(yeast_noalias_copy, gidx_cli):
    n_all = count_data_lines(YEAST_CHRM_BED)
    n_chrm = sum(1 for line in gzip.decompress(YEAST_CHRM_BED.read_bytes()).decode().splitlines() if line.startswith("chrM\t"))
    res = gidx_cli("ingest", YEAST_CHRM_BED, "-i", yeast_noalias_copy, "--skip-unknown-chroms")
    assert res.code == 0, res.err
    assert f"Warning: {YEAST_CHRM_BED}: skipped {n_chrm} intervals on unknown chromosome 'chrM'" in res.err
    ((n,),) = sql1(yeast_noalias_copy, "select n_intervals from records")
    assert n == n_all - n_chrm


def test_bad_alias_syntax(yeast_noalias_copy, gidx_cli):
    before = catalog_snapshot(yeast_noalias_copy)
    res = gidx_cli("ingest", YEAST_CHRM_BED, "-i", yeast_noalias_copy, "--chrom-alias", "chrM")
    assert_one_error_line(res, None, None, "--chrom-alias expects NAME=GENOME_NAME")
    res = gidx_cli("ingest", YEAST_CHRM_BED, "-i", yeast_noalias_copy, "--chrom-alias", "chrM=chrNope")
    assert_one_error_line(res, None, None, "not in genome")
    assert catalog_snapshot(yeast_noalias_copy) == before


# ---- index state ---------------------------------------------------------------------------------


def test_unknown_schema_revision_cli(hg19_copy, gidx_cli):
    import duckdb

    with duckdb.connect(str(hg19_copy / "catalog.duckdb")) as c:
        c.execute("update alembic_version set version_num = '9999'")
    for cmd in (["info"], ["ls"], ["query", HG19_BEDS / "GSM1174480_ARmo_0M_peaks.bed.gz"], ["ingest", HG19_BEDS]):
        res = gidx_cli(*cmd, "-i", hg19_copy)
        assert_one_error_line(res, None, None, "'9999'", "upgrade gidx")
    assert sql1(hg19_copy, "select version_num from alembic_version") == [("9999",)]


def test_no_index_cli(tmp_path, gidx_cli):
    res = gidx_cli("ls", "-i", tmp_path / "none")
    assert_one_error_line(res, None, None, "no gidx index here", "gidx init")
    assert not (tmp_path / "none").exists()


def test_init_twice_refused(hg19_copy, gidx_cli):
    before = catalog_snapshot(hg19_copy)
    assert_one_error_line(gidx_cli("init", hg19_copy, "--chrom-sizes", HG19_SIZES), None, None, "already exists")
    assert catalog_snapshot(hg19_copy) == before


def test_init_bad_chrom_sizes(tmp_path, gidx_cli):
    sizes = tmp_path / "bad.sizes"
    sizes.write_text("chr1\t1000\nchr2\tlots\n")
    res = gidx_cli("init", tmp_path / "idx", "--chrom-sizes", sizes)
    assert_one_error_line(res, sizes, 2, "expected 'name<TAB>length'")
    assert not (tmp_path / "idx" / "catalog.duckdb").exists()


# ---- sql, info, ls ------------------------------------------------------------------------------


def test_sql_is_read_only_by_default(hg19_copy, gidx_cli):
    before = catalog_snapshot(hg19_copy)
    res = gidx_cli("sql", "-i", hg19_copy, "insert into chrom_aliases values (1, 'x', 'chr1')")
    assert_one_error_line(res, None, None, "read-only")
    res = gidx_cli("sql", "-i", hg19_copy, "delete from records")
    assert_one_error_line(res, None, None, "read-only")
    assert catalog_snapshot(hg19_copy) == before
    res = gidx_cli("sql", "-i", hg19_copy, "--write", "insert into chrom_aliases select id, 'x', 'chr1' from genomes")
    assert res.code == 0, res.err
    assert sql1(hg19_copy, "select alias, name from chrom_aliases") == [("x", "chr1")]


def test_sql_error_one_line(hg19_index, gidx_cli):
    assert_one_error_line(gidx_cli("sql", "-i", hg19_index, "selec 1"), None, None, "syntax error")
    assert_one_error_line(gidx_cli("sql", "-i", hg19_index, "select nope from records"), None, None, "nope")


SQL = "select name, n_intervals, bp_covered from records order by name"


def test_sql_formats_parse_back(hg19_index, gidx_cli, tmp_path):
    want = [list(r) for r in sql1(hg19_index, SQL)]
    assert len(want) == len(bed_files(HG19_BEDS))

    res = gidx_cli("sql", "-i", hg19_index, SQL, "--format", "tsv")
    assert res.code == 0, res.err
    rows = list(csv.reader(io.StringIO(res.out), delimiter="\t"))
    assert rows[0] == ["name", "n_intervals", "bp_covered"]
    assert [[r[0], int(r[1]), int(r[2])] for r in rows[1:]] == want

    res = gidx_cli("sql", "-i", hg19_index, SQL, "--format", "json")
    assert [[r["name"], r["n_intervals"], r["bp_covered"]] for r in json.loads(res.out)] == want

    import pyarrow.parquet as pq

    out = tmp_path / "r.parquet"
    res = gidx_cli("sql", "-i", hg19_index, SQL, "--format", "parquet", "--out", out)
    assert res.code == 0 and res.out == ""
    t = pq.read_table(out)
    assert t.column_names == ["name", "n_intervals", "bp_covered"]
    assert [[r["name"], r["n_intervals"], r["bp_covered"]] for r in t.to_pylist()] == want

    res = gidx_cli("sql", "-i", hg19_index, SQL)  # default: aligned text table
    lines = res.out.strip().splitlines()
    assert lines[0].split() == ["name", "n_intervals", "bp_covered"]
    assert [line.split() for line in lines[1:]] == [[str(x) for x in r] for r in want]


def test_parquet_to_terminal_refused(monkeypatch):
    import pyarrow as pa

    from gidx.cli.output import Format, emit
    from gidx.errors import GidxError

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdout", Tty())
    with pytest.raises(GidxError, match="--out"):
        emit(pa.table({"a": [1]}), Format.parquet)


def test_info(hg19_index, gidx_cli):
    from gidx.catalog import SCHEMA_HEAD

    files = bed_files(HG19_BEDS)
    total = sum(count_data_lines(p) for p in files)
    res = gidx_cli("info", "-i", hg19_index)
    assert res.code == 0, res.err
    fields = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in res.out.splitlines() if " " in line}
    assert fields["records"] == str(len(files))
    assert fields["intervals"] == f"{total:,}"
    assert fields["schema_revision"] == SCHEMA_HEAD
    assert "hg19" in fields["genome"]
    d = json.loads(gidx_cli("info", "-i", hg19_index, "--format", "json").out)
    assert d["records"] == len(files) and d["intervals"] == total and d["schema_revision"] == SCHEMA_HEAD


def test_ls(hg19_index, gidx_cli):
    want = {record_name(p, HG19_BEDS): count_data_lines(p) for p in bed_files(HG19_BEDS)}
    res = gidx_cli("ls", "-i", hg19_index, "--format", "json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    assert {r["name"]: r["n_intervals"] for r in rows} == want
    text = gidx_cli("ls", "-i", hg19_index).out
    for name in want:
        assert name in text


def test_index_from_environment(hg19_index, gidx_cli, monkeypatch):
    monkeypatch.setenv("GIDX_INDEX", str(hg19_index))
    res = gidx_cli("ls", "--format", "json")
    assert res.code == 0, res.err
    assert len(json.loads(res.out)) == len(bed_files(HG19_BEDS))


# ---- the real console script, in a subprocess ----------------------------------------------------


def _gidx_exe() -> list[str]:
    script = Path(sys.executable).parent / "gidx"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gidx.cli.main"]


def _run(*args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "GIDX_INDEX"}
    return subprocess.run([*_gidx_exe(), *map(str, args)], capture_output=True, text=True, env=env, timeout=120, **kw)


def test_subprocess_bad_file_and_readonly_sql(hg19_copy, tmp_path):
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t10\t20\nchr1\t30\t20\n")
    before = catalog_snapshot(hg19_copy)
    p = _run("ingest", bad, "-i", hg19_copy, "-q")
    assert p.returncode == 2
    assert p.stderr.splitlines() == [f"Error: {bad}:2: start 30 is after end 20"]
    p = _run("sql", "-i", hg19_copy, "insert into chrom_aliases values (1, 'x', 'chr1')")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "read-only" in line
    assert catalog_snapshot(hg19_copy) == before
    p = _run("--help")
    assert p.returncode == 0 and "ingest" in p.stdout


def test_tsv_and_json_floats_round_trip(hg19_index, gidx_cli):
    """TSV is for programs: scores must read back exactly, not at 6 significant digits."""
    q = HG19_BEDS / "GSM1174481_ARmo_1nM_peaks.bed.gz"
    js = json.loads(gidx_cli("query", q, "-i", hg19_index, "-k", "5", "-q", "-f", "json").out)
    tsv = list(csv.DictReader(io.StringIO(gidx_cli("query", q, "-i", hg19_index, "-k", "5", "-q", "-f", "tsv").out),
                              delimiter="\t"))
    assert [r["record"] for r in tsv] == [r["record"] for r in js]
    assert [float(r["score"]) for r in tsv] == [r["score"] for r in js]
    assert any(0 < r["score"] < 0.999 for r in js)  # there are non-trivial floats to compare


def test_json_output_is_strict_json(hg19_index, gidx_cli):
    """NaN/inf become null; DuckDB DECIMAL/HUGEINT (SUM of integers, numeric literals) stay numbers."""
    total = sum(count_data_lines(p) for p in bed_files(HG19_BEDS))
    res = gidx_cli("sql", "-i", hg19_index, "select 'nan'::double as x, 'inf'::double as y, 1.5 as z, "
                   "(select sum(n_intervals) from records) as s, 12345678901234567890::hugeint as h", "-f", "json")
    assert res.code == 0, res.err

    def no_constants(name):
        raise ValueError(f"non-JSON constant {name}")

    assert json.loads(res.out, parse_constant=no_constants) == [
        {"x": None, "y": None, "z": 1.5, "s": total, "h": 12345678901234567890}]


def test_demo_quiet_keep(tmp_path, gidx_cli):
    from gidx.cli.demo import QUERY, bundled

    keep = tmp_path / "demo"
    res = gidx_cli("demo", "--keep", keep, "--quiet")
    assert res.code == 0, res.err
    assert res.err == ""
    header, first, *rest = res.out.strip().splitlines()
    assert header.split()[:4] == ["rank", "record_id", "record", "score"]
    assert first.split()[2] == record_name(bundled() / "bed" / QUERY, bundled() / "bed")
    assert len(rest) == 9
    assert len(records_by_name(keep)) == len(bed_files(bundled() / "bed"))
    assert sql1(keep, "select name from genomes") == [("sacCer3",)]
    # the index is kept and usable; a second demo into it is refused, not clobbered
    assert_one_error_line(gidx_cli("demo", "--keep", keep), None, None, "already exists")


def test_review_findings_user_errors_are_one_line(hg19_copy, gidx_cli, tmp_path):
    """Found by a new-user review: output paths, contradicting flags, silent skips, broken overlap data."""
    import shutil

    from conftest import HG19_BEDS, bed_files, sql1

    q = bed_files(HG19_BEDS)[0]
    n_queries = sql1(hg19_copy, "select count(*) from queries")[0][0]
    r = gidx_cli("query", q, "-i", hg19_copy, "-f", "tsv", "-o", tmp_path / "missing" / "x.tsv")
    assert r.code == 2 and len(r.error_lines) == 1 and "does not exist" in r.error_lines[0]
    r = gidx_cli("query", q, "-i", hg19_copy, "--exact", "--no-rerank")
    assert r.code == 2 and "contradict" in r.error_lines[0]
    assert sql1(hg19_copy, "select count(*) from queries")[0][0] == n_queries  # nothing stored for refused runs
    # --skip-unknown-chroms on a query warns like ingest does
    odd = tmp_path / "odd.bed"
    odd.write_text("chr1\t100\t200\n3\t5\t10\n")
    r = gidx_cli("query", odd, "-i", hg19_copy, "--skip-unknown-chroms", "-q")
    assert r.code == 0 and "Warning:" in r.err and "'3'" in r.err
    # the alias hint names a command that exists
    r = gidx_cli("query", odd, "-i", hg19_copy)
    assert r.code == 2 and "gidx alias 3=chr3" in r.error_lines[0]
    # a damaged overlap structure is refused, not answered wrongly
    seg = next((hg19_copy / "segments").iterdir())
    shutil.rmtree(seg)
    r = gidx_cli("query", q, "-i", hg19_copy)
    assert r.code == 2 and "gidx check --repair" in r.error_lines[0]
    assert gidx_cli("check", "-i", hg19_copy, "--repair").code == 0
    assert gidx_cli("query", q, "-i", hg19_copy).code == 0


# ---- issue 16: a newcomer's paper cuts ---------------------------------------------------------


def test_version_is_cheap(gidx_cli):
    import gidx

    res = gidx_cli("--version")
    assert res.code == 0 and res.out == f"gidx {gidx.__version__}\n" and res.err == ""
    # nothing heavy is imported to print it
    code = ("import sys; sys.argv = ['gidx', '--version']\nfrom gidx.cli.main import main\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('duckdb', 'pyarrow', 'lancedb', 'torch', 'numpy', "
            "'sqlalchemy') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"gidx {gidx.__version__}", "[]"]


def test_sql_dot_commands(hg19_index, gidx_cli):
    want = {r[0] for r in sql1(hg19_index, "select name from sqlite_master where type = 'table'")}
    assert {"seqpare", "seqpare_progress", "models", "tilings", "intervals"} <= want
    res = gidx_cli("sql", "-i", hg19_index, ".tables", "-f", "json")
    assert res.code == 0, res.err
    assert [r["name"] for r in json.loads(res.out)] == sorted(want)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert not [t for t in want if f"`{t}`" not in readme], "tables missing from the README's list"
    # the Python API answers them too
    assert sorted(Index.open(hg19_index).sql(".tables;").column("name").to_pylist()) == sorted(want)

    res = gidx_cli("sql", "-i", hg19_index, ".schema intervals", "-f", "tsv")
    assert res.code == 0, res.err
    header, *rows = res.out.splitlines()
    assert header == "sql" and len(rows) == 1
    assert rows[0].startswith("CREATE TABLE intervals(") and "chrom_start" in rows[0] and "chrom_end" in rows[0]
    res = gidx_cli("sql", "-i", hg19_index, ".schema", "-f", "json")
    stmts = [r["sql"] for r in json.loads(res.out)]
    assert {s.split("(")[0].removeprefix("CREATE TABLE ") for s in stmts if s.startswith("CREATE TABLE")} == want
    assert_one_error_line(gidx_cli("sql", "-i", hg19_index, ".schema nope"), None, None, "no such table: nope")
    assert_one_error_line(gidx_cli("sql", "-i", hg19_index, ".mode csv"), None, None, ".tables", ".schema")
    # `end` quoted as the help says
    res = gidx_cli("sql", "-i", hg19_index, 'select chrom_end as "end" from intervals order by record_id, i limit 1',
                   "-f", "json")
    assert res.code == 0 and list(json.loads(res.out)[0]) == ["end"]
    help_text = CliRunner().invoke(app, ["sql", "--help"]).output
    assert '"end"' in help_text and "chrom_end" in help_text and ".tables" in help_text


def test_sql_several_statements(hg19_copy, gidx_cli, tmp_path):
    two = "select 1 as a, 'x' as b; select 2 as c"
    res = gidx_cli("sql", "-i", hg19_copy, two)
    assert res.code == 0, res.err
    assert res.out.split("\n\n") == ["a  b\n1  x", "c\n2\n"]
    res = gidx_cli("sql", "-i", hg19_copy, two, "-f", "tsv")
    assert res.out == "a\tb\n1\tx\n\nc\n2\n"
    res = gidx_cli("sql", "-i", hg19_copy, two, "-f", "json")
    assert json.loads(res.out) == [[{"a": 1, "b": "x"}], [{"c": 2}]]
    out = tmp_path / "two.tsv"
    assert gidx_cli("sql", "-i", hg19_copy, two, "-f", "tsv", "-o", out).code == 0
    assert out.read_text() == "a\tb\n1\tx\n\nc\n2\n"
    # one statement: unchanged (JSON is the plain array of rows)
    assert json.loads(gidx_cli("sql", "-i", hg19_copy, "select 1 as a;", "-f", "json").out) == [{"a": 1}]
    # parquet holds one table: refused before anything runs
    before = catalog_snapshot(hg19_copy)
    pq_out = tmp_path / "r.parquet"
    res = gidx_cli("sql", "-i", hg19_copy, "--write", "insert into chrom_aliases select id, 'y', 'chr2' from genomes; "
                   "select 1", "-f", "parquet", "-o", pq_out)
    assert_one_error_line(res, None, None, "parquet", "one SQL statement")
    assert not pq_out.exists() and catalog_snapshot(hg19_copy) == before
    # --write: all statements or none
    res = gidx_cli("sql", "-i", hg19_copy, "--write", "insert into chrom_aliases select id, 'y', 'chr2' from genomes; "
                   "select nope from records")
    assert_one_error_line(res, None, None, "nope")
    assert catalog_snapshot(hg19_copy) == before
    res = gidx_cli("sql", "-i", hg19_copy, "--write", "insert into chrom_aliases select id, 'y', 'chr2' from genomes; "
                   "select alias from chrom_aliases", "-f", "json")
    assert res.code == 0, res.err
    assert json.loads(res.out)[1] == [{"alias": "y"}]
    # a temporary table lives across the statements of one call
    res = gidx_cli("sql", "-i", hg19_copy, "create temp table t as select 41 + 1 as x; select x from t", "-f", "json")
    assert res.code == 0, res.err
    assert json.loads(res.out)[-1] == [{"x": 42}]


FORMAT_COMMANDS = [  # every command with --format, with the arguments it needs
    ["query", HG19_BEDS / "GSM1174480_ARmo_0M_peaks.bed.gz"],
    ["query", HG19_BEDS],
    ["sql", "select 1"],
    ["ls"],
    ["info"],
    ["encoders"],
    ["eval"],
    ["models", "list"],
    ["queries", "ls"],
]


def test_parquet_to_terminal_refused_by_every_command(monkeypatch, tmp_path, gidx_cli):
    """Refused before any work: even the index (which does not exist) is not opened."""
    import gidx.cli.output as output

    monkeypatch.setattr(output, "_stdout_is_terminal", lambda: True)
    root, cmds = all_commands()
    with_format = {" ".join(path) for path, cmd in cmds
                   if any("--format" in getattr(p, "opts", []) for p in cmd.params)}
    assert with_format == {" ".join(c[:2] if c[0] in ("models", "queries") else c[:1]) for c in FORMAT_COMMANDS} | {
        "seqpare"}
    missing = tmp_path / "no-index"
    cases = [c + ["-i", missing] for c in FORMAT_COMMANDS]
    cases.append(["seqpare", tmp_path / "nope-a.bed", tmp_path / "nope-b.bed"])
    for args in cases:
        res = gidx_cli(*args, "--format", "parquet")
        assert res.code == 2, (args, res.err)
        (err,) = res.error_lines
        assert "-o" in err and "parquet" in err and "no gidx index" not in err, (args, err)
        assert res.out == ""
    assert not missing.exists()


def test_every_format_command_writes_parquet_to_a_file(hg19_copy, gidx_cli, tmp_path):
    import pyarrow.parquet as pq

    for i, args in enumerate(FORMAT_COMMANDS):
        if args[0] == "eval":
            continue  # needs ground truth: see test_small_index_eval_and_train_warn
        out = tmp_path / f"{i}.parquet"
        res = gidx_cli(*args, "-i", hg19_copy, "--format", "parquet", "-o", out)
        assert res.code == 0, (args, res.err)
        assert res.out == "" and pq.read_table(out).num_columns > 0
    t = pq.read_table(tmp_path / f"{FORMAT_COMMANDS.index(['info'])}.parquet").to_pydict()
    assert dict(zip(t["key"], t["value"]))["records"] == str(len(bed_files(HG19_BEDS)))
    res = gidx_cli("info", "-i", hg19_copy, "-f", "tsv")
    assert f"records\t{len(bed_files(HG19_BEDS))}" in res.out.splitlines()


def test_option_names_and_metavars_agree():
    root, cmds = all_commands()
    by_name = {" ".join(path): cmd for path, cmd in cmds}

    def opt(cmd, name):
        (p,) = [p for p in cmd.params if p.name == name]
        return p

    assert set(opt(by_name["eval"], "k").opts) == set(opt(by_name["query"], "k").opts) == {"-k", "--top"}
    assert opt(by_name["eval"], "rerank").default == opt(by_name["query"], "rerank").default == 200
    assert "200" in opt(by_name["eval"], "rerank").help
    bad = []
    for path, cmd in cmds:
        for p in cmd.params:
            if isinstance(p, click.Argument) and (not p.metavar or p.metavar != p.metavar.upper()):
                bad.append(f"gidx {' '.join(path)}: {p.name} metavar {p.metavar!r}")
    assert not bad, bad
    runner = CliRunner()
    for path, cmd in cmds[1:]:
        usage = next(line for line in runner.invoke(app, [*path, "--help"]).output.splitlines() if "Usage:" in line)
        assert not re.search(r"[{\[][a-z_]+", usage), usage


def test_rm_by_id(hg19_copy, gidx_cli, tmp_path):
    rows = json.loads(gidx_cli("ls", "-i", hg19_copy, "-f", "json").out)
    victim = rows[3]
    res = gidx_cli("rm", "-i", hg19_copy, str(victim["id"]))
    assert res.code == 0 and "Removed 1 record(s)" in res.err, res.err
    left = {r["id"]: r["name"] for r in json.loads(gidx_cli("ls", "-i", hg19_copy, "-f", "json").out)}
    assert victim["id"] not in left and len(left) == len(rows) - 1
    # an unknown id (or one already removed) is an unknown record; nothing is removed
    before = catalog_snapshot(hg19_copy)
    for args in ([str(victim["id"])], ["99999"], [str(rows[0]["id"]), "99999"]):
        res = gidx_cli("rm", "-i", hg19_copy, *args)
        assert_one_error_line(res, None, None, f"no such record: {args[-1]}")
    assert catalog_snapshot(hg19_copy) == before
    # a record whose name is digits is removed by its name, not as an id
    named = tmp_path / f"{rows[0]['id']}.bed"
    named.write_text("chr1\t100\t200\n")
    assert gidx_cli("ingest", "-i", hg19_copy, named, "-q").code == 0
    assert gidx_cli("rm", "-i", hg19_copy, str(rows[0]["id"])).code == 0
    names = {r[0] for r in sql1(hg19_copy, "select name from records")}
    assert str(rows[0]["id"]) not in names and rows[0]["name"] in names
    # names and ids mixed
    assert gidx_cli("rm", "-i", hg19_copy, rows[0]["name"], str(rows[1]["id"])).code == 0
    assert not {rows[0]["name"], rows[1]["name"]} & {r[0] for r in sql1(hg19_copy, "select name from records")}


def test_queries_ls_and_prune(hg19_copy, gidx_cli):
    n0 = sql1(hg19_copy, "select count(*) from queries")[0][0]
    res = gidx_cli("queries", "prune", "-i", hg19_copy, "--keep-last", "0")
    assert res.code == 0 and f"Removed {n0} stored quer" in res.err and "0 left" in res.err
    files = bed_files(HG19_BEDS)[:4]
    for f in files:
        assert gidx_cli("query", f, "-i", hg19_copy, "-k", "3", "-q").code == 0
    assert gidx_cli("query", files[0], "-i", hg19_copy, "-q", "--no-save").code == 0
    res = gidx_cli("queries", "ls", "-i", hg19_copy, "-f", "json")
    assert res.code == 0, res.err
    rows = json.loads(res.out)
    assert [r["name"] for r in rows] == [f.name for f in files]
    assert list(rows[0]) == ["id", "created_at", "name", "n_intervals", "k", "mode", "elapsed_ms"]
    assert [r["name"] for r in json.loads(gidx_cli("queries", "ls", "-i", hg19_copy, "-n", "2", "-f", "json").out)] == \
        [f.name for f in files[2:]]
    ids = [r["id"] for r in rows]
    assert sql1(hg19_copy, "select count(*) from query_results")[0][0] == 12

    import duckdb

    with duckdb.connect(str(hg19_copy / "catalog.duckdb")) as c:  # two of them are old
        c.execute(f"update queries set created_at = '2020-01-01 10:00' where id in ({ids[0]}, {ids[1]})")
    res = gidx_cli("queries", "prune", "-i", hg19_copy, "--before", "2019-12-31")
    assert res.code == 0 and "Removed 0 stored queries" in res.err and "4 left" in res.err
    res = gidx_cli("queries", "prune", "-i", hg19_copy, "--before", "2020-01-01T10:00:00+02:00")  # = 08:00 UTC
    assert res.code == 0 and "Removed 0 stored queries" in res.err
    res = gidx_cli("queries", "prune", "-i", hg19_copy, "--before", "2020-01-02", "--keep-last", "3")
    assert res.code == 0 and "Removed 1 stored query and their results; 3 left" in res.err
    assert [r[0] for r in sql1(hg19_copy, "select id from queries order by id")] == ids[1:]
    assert sql1(hg19_copy, f"select count(*) from query_results where query_id = {ids[0]}")[0][0] == 0
    assert sql1(hg19_copy, "select count(*) from query_results")[0][0] == 9
    assert Index.open(hg19_copy).prune_queries(before="2020-06-01") == 1
    res = gidx_cli("queries", "prune", "-i", hg19_copy, "--keep-last", "1", "-q")
    assert res.code == 0 and res.err == ""
    assert [r[0] for r in sql1(hg19_copy, "select id from queries")] == [ids[3]]
    assert sql1(hg19_copy, "select distinct query_id from query_results") == [(ids[3],)]
    # refusals: one line, nothing removed
    assert_one_error_line(gidx_cli("queries", "prune", "-i", hg19_copy), None, None, "--before", "--keep-last")
    assert_one_error_line(gidx_cli("queries", "prune", "-i", hg19_copy, "--before", "last week"), None, None,
                          "--before last week", "2024-06-01")
    assert gidx_cli("queries", "prune", "-i", hg19_copy, "--keep-last", "-1").code == 2
    assert sql1(hg19_copy, "select count(*) from queries")[0][0] == 1


def test_small_index_eval_and_train_warn(yeast_copy, hg19_copy, gidx_cli):
    n = len(bed_files(YEAST_BEDS))
    assert gidx_cli("truth", "-i", yeast_copy, "-q").code == 0
    res = gidx_cli("eval", "-i", yeast_copy, "-k", "20", "-f", "json")
    assert res.code == 0, res.err
    warnings = [line for line in res.err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and f"{n} records" in warnings[0] and "recall@20" in warnings[0], warnings
    assert "held-out" not in res.err and f"{n} sampled records" in res.err
    assert {r["rerank"] for r in json.loads(res.out)} == {0, 200}
    res = gidx_cli("eval", "-i", yeast_copy, "--top", "3", "-q")  # 17 records are enough for k = 3
    assert res.code == 0 and "Warning" not in res.err
    # train warns before it starts (here it then stops: no pair reaches S >= 2)
    res = gidx_cli("train", "-i", yeast_copy, "--val-k", "20", "--pos-threshold", "2")
    lines = res.err.strip().splitlines()
    assert res.code == 2 and lines[0].startswith(f"Warning: the index has {n} records") and "--val-k" in lines[0]
    assert lines[-1].startswith("Error: no training record has a neighbour")
    # without ground truth the error alone says what to do
    res = gidx_cli("train", "-i", hg19_copy)
    assert res.code == 2 and res.err.strip() == "Error: no seqpare ground truth in the catalog: run `gidx truth` first"


def test_stale_truth_counts_only_changed_records(yeast_copy, gidx_cli):
    n = len(bed_files(YEAST_BEDS))
    assert gidx_cli("truth", "-i", yeast_copy, "-q").code == 0
    victim = record_name(bed_files(YEAST_BEDS)[2], YEAST_BEDS)
    assert gidx_cli("rm", "-i", yeast_copy, victim, "-q").code == 0
    assert gidx_cli("eval", "-i", yeast_copy, "-k", "3", "-q").code == 0  # removing leaves truth complete
    res = gidx_cli("ingest", "-i", yeast_copy, YEAST_BEDS)
    assert res.code == 0 and f"Added 1, skipped {n - 1}" in res.err
    for cmd in ("eval", "train"):
        res = gidx_cli(cmd, "-i", yeast_copy, "-q")
        err = assert_one_error_line(res, None, None, f"missing for 1 of {n} records", "gidx truth")
        assert f"{n - 1} others only lack their pairs with newer records" in err
    res = gidx_cli("truth", "-i", yeast_copy)
    assert res.code == 0 and "Compared" in res.err
    assert gidx_cli("eval", "-i", yeast_copy, "-k", "3", "-q").code == 0


def test_alias_says_what_it_stored(yeast_noalias_copy, gidx_cli):
    res = gidx_cli("alias", "-i", yeast_noalias_copy, "chrM=chrmt", "MT=chrmt")
    assert res.code == 0 and res.out == ""
    assert res.err.splitlines() == ["Stored alias chrM=chrmt (genome sacCer3)",
                                    "Stored alias MT=chrmt (genome sacCer3)"]
    res = gidx_cli("alias", "-i", yeast_noalias_copy, "-q", "chrX=chrmt")
    assert res.code == 0 and res.err == ""
    assert sql1(yeast_noalias_copy, "select alias from chrom_aliases order by alias") == [("MT",), ("chrM",), ("chrX",)]


def test_ingest_counts_non_bed_files(hg19_copy, gidx_cli, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bed").write_text("chr1\t100\t200\n")
    (folder / "sub" / "b.narrowPeak").write_text(_narrowpeak(3))
    for name in ("README.txt", "notes.md", "sub/table.csv"):
        (folder / name).write_text("not a BED file\n")
    res = gidx_cli("ingest", "-i", hg19_copy, folder)
    assert res.code == 0, res.err
    lines = res.err.strip().splitlines()
    assert "Skipped 3 non-BED files: README.txt, notes.md, table.csv" in lines
    assert lines[-1].startswith("Added 2, skipped 0, rejected 0")
    for i in range(4):
        (folder / f"extra{i}.txt").write_text("x\n")
    res = gidx_cli("ingest", "-i", hg19_copy, folder)
    (line,) = [x for x in res.err.splitlines() if "non-BED" in x]
    assert line.startswith("Skipped 7 non-BED files: ") and line.endswith(", …") and line.count(",") == 5
    assert gidx_cli("ingest", "-i", hg19_copy, folder, "-q").err == ""
    rep = Index.open(hg19_copy).ingest([folder])
    assert sorted(Path(p).name for p in rep.not_bed) == sorted(
        ["README.txt", "notes.md", "table.csv"] + [f"extra{i}.txt" for i in range(4)])
