"""BED reader unit tests on tiny hand-written files whose answers can be checked by eye."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest

from gidx.bed import MAX_PROBLEMS, read_bed
from gidx.errors import GidxError, InputError
from gidx.genome import Genome


def write(path: Path, text: str, *, gz: bool = False, crlf: bool = False) -> Path:
    data = text.replace("\n", "\r\n") if crlf else text
    raw = data.encode()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def genome(tmp_path) -> Genome:
    """chr1: 1000 bp, chr2: 500 bp, chrmt: 300 bp (named like the yeast FASTA's mitochondrion)."""
    sizes = write(tmp_path / "tiny.chrom.sizes", "chr1\t1000\nchr2\t500\nchrmt\t300")  # no final newline
    return Genome.from_chrom_sizes(sizes)


def rows(bf) -> list[tuple[str, int, int]]:
    iv = bf.intervals
    return [(iv.chroms[c], int(s), int(e)) for c, s, e in zip(iv.chrom, iv.start, iv.end)]


def problem_lines(err: InputError, path: Path) -> list[int]:
    out = []
    for p in err.problems:
        m = re.match(re.escape(str(path)) + r":(\d+): ", p)
        assert m, f"problem without FILE:LINE: prefix: {p!r}"
        out.append(int(m.group(1)))
    return out


# ---- what is read ----------------------------------------------------------------


SIMPLE = "chr2\t100\t200\nchr1\t50\t60\nchr1\t50\t60\nchr1\t70\t70\nchr2\t5\t10\n"
SIMPLE_ROWS = [("chr2", 100, 200), ("chr1", 50, 60), ("chr1", 50, 60), ("chr1", 70, 70), ("chr2", 5, 10)]


def test_order_duplicates_and_zero_length_kept(tmp_path):
    bf = read_bed(write(tmp_path / "a.bed", SIMPLE))
    assert rows(bf) == SIMPLE_ROWS  # file order, the duplicate and the zero-length interval all kept
    assert len(bf.intervals) == 5
    assert bf.n_columns == 3 and bf.format == "BED3" and bf.header_lines == 0
    assert bf.intervals.chroms == ("chr2", "chr1")  # without a genome: order of first appearance


def test_genome_codes_are_the_genomes(tmp_path, genome):
    bf = read_bed(write(tmp_path / "a.bed", SIMPLE), genome)
    assert bf.intervals.chroms == ("chr1", "chr2", "chrmt")
    assert bf.intervals.chrom.tolist() == [1, 0, 0, 0, 1]
    assert rows(bf) == SIMPLE_ROWS


def test_gzip_crlf_and_plain_read_the_same(tmp_path, genome):
    plain = read_bed(write(tmp_path / "a.bed", SIMPLE), genome)
    gz = read_bed(write(tmp_path / "b.bed.gz", SIMPLE, gz=True), genome)
    crlf = read_bed(write(tmp_path / "c.bed", SIMPLE, crlf=True), genome)
    crlf_gz = read_bed(write(tmp_path / "d.bed.gz", SIMPLE, gz=True, crlf=True), genome)
    for other in (gz, crlf, crlf_gz):
        assert rows(other) == rows(plain)
        assert other.intervals.start.dtype == np.int64 and other.intervals.end.dtype == np.int64


def test_multi_member_gzip_bgzip_style(tmp_path):
    """bgzip output is many gzip members back to back (plus an empty EOF member)."""
    p = tmp_path / "m.bed.gz"
    p.write_bytes(gzip.compress(b"chr1\t1\t2\n") + gzip.compress(b"chr1\t3\t4\nchr2\t5\t6\n") + gzip.compress(b""))
    assert rows(read_bed(p)) == [("chr1", 1, 2), ("chr1", 3, 4), ("chr2", 5, 6)]


def test_header_lines_and_column_names_skipped(tmp_path):
    text = (
        "browser position chr1:1-100\n"
        'track name="peaks" description="x"\n'
        "# a comment\n"
        "chrom\tchromStart\tchromEnd\tname\n"
        "\n"
        "chr1\t10\t20\tp1\n"
        "chr1\t30\t40\tp2\n"
    )
    bf = read_bed(write(tmp_path / "h.bed", text))
    assert rows(bf) == [("chr1", 10, 20), ("chr1", 30, 40)]
    assert bf.header_lines == 4
    assert bf.n_columns == 4


def test_first_line_with_one_bad_number_is_a_problem_not_a_header(tmp_path):
    """Only a first line with *no* integer start/end is a column-name line; 'chr1 10 x20'
    is data with a typo, and silently dropping it would lose an interval."""
    p = write(tmp_path / "typo.bed", "chr1\t10\tx20\nchr1\t30\t40\n")
    with pytest.raises(InputError) as ei:
        read_bed(p)
    assert ei.value.problems == [f"{p}:1: end 'x20' is not an integer"]


@pytest.mark.parametrize(
    "name, text, fmt, ncol",
    [
        ("p.narrowPeak", 'track type=narrowPeak\nchr1\t10\t50\tpeak1\t500\t.\t7.2\t-1\t3.1\t20\n'
                         "chr2\t0\t5\tpeak2\t300\t+\t5.0\t-1\t2.0\t2\n", "narrowPeak", 10),
        ("p.broadPeak", "chr1\t10\t50\tb1\t0\t.\t3.5\t-1\t-1\nchr2\t0\t5\tb2\t0\t.\t1.5\t-1\t-1\n", "broadPeak", 9),
        ("p.bed", "chr1\t10\t50\ttx1\t0\t+\t10\t50\t0\t2\t10,15,\t0,25,\n"
                  "chr2\t0\t5\ttx2\t0\t-\t0\t5\t255,0,0\t1\t5,\t0,\n", "BED12", 12),
    ],
)
def test_extra_columns_formats(tmp_path, name, text, fmt, ncol):
    bf = read_bed(write(tmp_path / name, text))
    assert rows(bf) == [("chr1", 10, 50), ("chr2", 0, 5)]
    assert bf.format == fmt and bf.n_columns == ncol


def test_narrowpeak_gz(tmp_path):
    text = "chr1\t10\t50\tpeak1\t500\t.\t7.2\t-1\t3.1\t20\n" * 3
    bf = read_bed(write(tmp_path / "x.narrowPeak.gz", text, gz=True))
    assert len(bf.intervals) == 3 and bf.format == "narrowPeak"


# ---- problems: all of them, with lines ---------------------------------------------


BAD = (
    "track name=x\n"  # 1
    "# comment\n"  # 2
    "chr1\t10\t20\n"  # 3 ok
    "\n"  # 4
    "chr1\tabc\t20\n"  # 5 start not an integer
    "chr1\t-1\t5\n"  # 6 negative start
    "chr1\t30\t20\n"  # 7 start after end
    "chr1\t5\n"  # 8 too few columns
    "chr1 5 10\n"  # 9 space separated
    "chr1\t10\t2.5\n"  # 10 end not an integer
    "chr1\t1\t2\n"  # 11 ok
)


def test_every_problem_reported_with_its_line(tmp_path):
    p = write(tmp_path / "bad.bed", BAD)
    with pytest.raises(InputError) as ei:
        read_bed(p)
    e = ei.value
    assert problem_lines(e, p) == [5, 6, 7, 8, 9, 10]
    assert e.total == 6
    text = e.problems
    assert "start 'abc' is not an integer" in text[0]
    assert "negative start -1" in text[1]
    assert "start 30 is after end 20" in text[2]
    assert "too few columns" in text[3] and "tab" not in text[3].split("BED needs")[1]
    assert "too few columns" in text[4] and "separated by tabs" in text[4]
    assert "end '2.5' is not an integer" in text[5]
    # the message: first problem + how many more
    assert str(e).startswith(f"{p}:5: start 'abc' is not an integer (and 5 more problems)")
    assert isinstance(e, GidxError) and e.exit_code == 2


def test_line_numbers_count_crlf_and_gz_lines_the_same(tmp_path):
    for name, kw in (("a.bed", {}), ("b.bed", {"crlf": True}), ("c.bed.gz", {"gz": True})):
        p = write(tmp_path / name, BAD, **kw)
        with pytest.raises(InputError) as ei:
            read_bed(p)
        assert problem_lines(ei.value, p) == [5, 6, 7, 8, 9, 10]


def test_problem_cap(tmp_path):
    lines = ["chr1\t1\t2"] + [f"chr1\t{i}\tX{i}" for i in range(30)]  # lines 2..31 bad
    p = write(tmp_path / "many.bed", "\n".join(lines) + "\n")
    with pytest.raises(InputError) as ei:
        read_bed(p)
    e = ei.value
    assert e.total == 30
    assert len(e.problems) == MAX_PROBLEMS
    assert problem_lines(e, p) == list(range(2, 2 + MAX_PROBLEMS))
    assert "(and 29 more problems)" in str(e)
    with pytest.raises(InputError) as ei:
        read_bed(p, max_problems=3)
    assert len(ei.value.problems) == 3 and ei.value.total == 30


@pytest.mark.parametrize("value", ["1_000", "\u0661\u0660", "1e3", "0x10", "10.0", "\u00b2", "1,000"])
def test_non_plain_integers_rejected(tmp_path, value):
    """int() and numpy accept '1_000' and non-ASCII digits; no BED tool does."""
    p = write(tmp_path / "n.bed", f"chr1\t1\t2\nchr1\t{value}\t2000\n")
    with pytest.raises(InputError) as ei:
        read_bed(p)
    assert ei.value.problems == [f"{p}:2: start {value!r} is not an integer"]


def test_out_of_range_integer(tmp_path):
    p = write(tmp_path / "big.bed", "chr1\t1\t99999999999999999999999\n")
    with pytest.raises(InputError) as ei:
        read_bed(p)
    assert problem_lines(ei.value, p) == [1] and "out of range" in ei.value.problems[0]


def test_unknown_chromosomes_listed_with_counts(tmp_path, genome):
    text = "chr1\t1\t2\nchrUn_x\t1\t2\nchr7\t1\t2\nchrUn_x\t5\t6\nchr2\t1\t2\n"
    p = write(tmp_path / "u.bed", text)
    with pytest.raises(InputError) as ei:
        read_bed(p, genome)
    (prob,) = ei.value.problems
    assert prob.startswith(f"{p}:2: chromosomes not in genome tiny: ")
    assert "'chrUn_x' (2 lines, first line 2)" in prob and "'chr7' (1 line, first line 3)" in prob
    assert "--skip-unknown-chroms" in str(ei.value)
    bf = read_bed(p, genome, skip_unknown_chroms=True)
    assert rows(bf) == [("chr1", 1, 2), ("chr2", 1, 2)]
    assert bf.skipped_chroms == {"chrUn_x": 2, "chr7": 1}
    assert any("2 intervals" in w and "chrUn_x" in w for w in bf.warnings)


def test_skip_unknown_leaving_nothing_is_an_error(tmp_path, genome):
    p = write(tmp_path / "u.bed", "chrZ\t1\t2\n")
    with pytest.raises(InputError, match="no intervals left"):
        read_bed(p, genome, skip_unknown_chroms=True)


def test_alias_hint_and_alias(tmp_path, genome):
    p = write(tmp_path / "m.bed", "chr1\t1\t2\nchrM\t10\t20\n")
    with pytest.raises(InputError) as ei:
        read_bed(p, genome)
    assert "--chrom-alias chrM=chrmt" in str(ei.value)
    bf = read_bed(p, genome, aliases={"chrM": "chrmt"})
    assert rows(bf) == [("chr1", 1, 2), ("chrmt", 10, 20)]


def test_chromosome_end_boundary(tmp_path, genome):
    """Half-open: end == chromosome length is the last base; one more is past the end."""
    ok = read_bed(write(tmp_path / "ok.bed", "chr2\t490\t500\nchr1\t0\t1000\n"), genome)
    assert len(ok.intervals) == 2
    p = write(tmp_path / "past.bed", "chr2\t490\t500\nchr2\t490\t501\nchr1\t999\t1001\n")
    with pytest.raises(InputError) as ei:
        read_bed(p, genome)
    assert problem_lines(ei.value, p) == [2, 3]
    assert "end 501 is past the end of chr2 (500 bp" in ei.value.problems[0]


# ---- whole-file problems ------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "track name=x\n# only headers\n"])
def test_empty_file(tmp_path, text):
    p = write(tmp_path / "e.bed", text)
    with pytest.raises(InputError) as ei:
        read_bed(p)
    assert str(ei.value).startswith(f"{p}: no intervals")


def test_binary_nul_and_non_utf8(tmp_path):
    p = tmp_path / "nul.bed"
    p.write_bytes(b"chr1\t1\t2\nchr1\t3\t4\n\x00\x01\x02garbage")
    with pytest.raises(InputError) as ei:
        read_bed(p)
    assert ei.value.problems == [f"{p}:3: binary data (NUL byte), not a text BED file"]
    q = tmp_path / "latin.bed"
    q.write_bytes(b"chr1\t1\t2\n\xff\xfe\x89PNG\n")
    with pytest.raises(InputError) as ei:
        read_bed(q)
    assert problem_lines(ei.value, q) == [2] and "not UTF-8" in ei.value.problems[0]


def test_truncated_gzip_names_the_line(tmp_path):
    text = "".join(f"chr1\t{i}\t{i + 10}\n" for i in range(5000))
    full = gzip.compress(text.encode())
    for cut in (len(full) - 4, len(full) // 2):
        p = tmp_path / f"cut{cut}.bed.gz"
        p.write_bytes(full[:cut])
        with pytest.raises(InputError) as ei:
            read_bed(p)
        (prob,) = ei.value.problems
        m = re.match(re.escape(str(p)) + r":(\d+): gzip data ends before its end marker .*; (\d+) complete lines", prob)
        assert m, prob
        line, complete = int(m.group(1)), int(m.group(2))
        assert line == complete + 1
        if cut == len(full) - 4:  # only the size trailer is missing: every line came out
            assert complete == 5000
        else:
            assert 0 < complete < 5000


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "junk.bed.gz"
    p.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    with pytest.raises(InputError) as ei:
        read_bed(p)
    assert ei.value.problems[0].startswith(f"{p}:1: corrupt gzip data")


def test_directory_is_not_a_bed_file(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        read_bed(tmp_path)


# ---- content hash ---------------------------------------------------------------------


def test_content_hash_ignores_order_compression_columns_and_line_endings(tmp_path, genome):
    base = read_bed(write(tmp_path / "a.bed", SIMPLE), genome).intervals.content_hash()
    shuffled = "".join(reversed(SIMPLE.splitlines(keepends=True)))
    bed6 = "".join(f"{line}\tname{i}\t0\t+\n" for i, line in enumerate(SIMPLE.splitlines()))
    for name, text, kw in (
        ("b.bed", shuffled, {}),
        ("c.bed.gz", SIMPLE, {"gz": True}),
        ("d.bed.gz", shuffled, {"gz": True, "crlf": True}),
        ("e.bed", "track name=x\n" + bed6, {}),
    ):
        assert read_bed(write(tmp_path / name, text, **kw), genome).intervals.content_hash() == base, name


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.replace("chr2\t100\t200", "chr2\t100\t201"),  # one end moved by 1 bp
        lambda t: t.replace("chr2\t100\t200", "chr2\t101\t200"),  # one start moved by 1 bp
        lambda t: t.replace("chr2\t5\t10", "chr1\t5\t10"),  # same coordinates, other chromosome
        lambda t: t.replace("chr1\t50\t60\nchr1\t50\t60\n", "chr1\t50\t60\n"),  # duplicate dropped
        lambda t: t + "chr1\t70\t70\n",  # one more zero-length interval
    ],
)
def test_content_hash_depends_on_intervals(tmp_path, genome, change):
    base = read_bed(write(tmp_path / "a.bed", SIMPLE), genome).intervals.content_hash()
    changed = change(SIMPLE)
    assert changed != SIMPLE
    assert read_bed(write(tmp_path / "b.bed", changed), genome).intervals.content_hash() != base


def test_content_hash_independent_of_code_table(tmp_path, genome):
    p = write(tmp_path / "a.bed", "chr2\t1\t5\nchr2\t7\t9\n")
    assert read_bed(p).intervals.content_hash() == read_bed(p, genome).intervals.content_hash()


# ---- the fast (pyarrow CSV) path and the line-by-line reader agree ----------------------------


def _both_paths(path, genome=None, aliases=None, monkeypatch=None):
    import gidx.bed as bed

    fast = read_bed(path, genome, aliases=aliases)
    with monkeypatch.context() as m:
        m.setattr(bed, "_read_clean", lambda *a, **k: None)
        slow = read_bed(path, genome, aliases=aliases)
    return fast, slow


def _same(fast, slow):
    assert fast.intervals.chroms == slow.intervals.chroms
    for a in ("chrom", "start", "end"):
        x, y = getattr(fast.intervals, a), getattr(slow.intervals, a)
        assert x.dtype == y.dtype and np.array_equal(x, y), a
    assert (fast.n_columns, fast.format, fast.header_lines, fast.skipped_chroms) == (
        slow.n_columns, slow.format, slow.header_lines, slow.skipped_chroms)
    assert fast.intervals.content_hash() == slow.intervals.content_hash()


@pytest.mark.parametrize(
    "text, fast",
    [
        (SIMPLE, True),
        (SIMPLE.replace("\n", "\r\n"), True),
        ("track name=x\n# c\n\nchrom\tstart\tend\n" + SIMPLE + "\n\n", True),
        ("chr1\t10\t50\tpeak1\t500\t.\t7.2\t-1\t3.1\t20\n" * 4, True),
        ("chr1\t+5\t10\n", False),  # a sign: the fast path declines, the line reader accepts
        ("chr1\t 5\t10 \n", False),
    ],
    ids=["plain", "crlf", "headers", "narrowpeak", "plus_sign", "spaces"],
)
def test_fast_and_line_reader_agree_small(tmp_path, genome, monkeypatch, text, fast):
    import gidx.bed as bed

    p = write(tmp_path / "f.bed", text)
    assert (bed._read_clean(bed._read_bytes(p), p, None, None) is not None) == fast
    _same(*_both_paths(p, monkeypatch=monkeypatch))
    _same(*_both_paths(p, genome, monkeypatch=monkeypatch))


def test_fast_and_line_reader_agree_on_real_files(monkeypatch, hg19_index, yeast_index):
    from conftest import HG19_BEDS, YEAST_BEDS, bed_files

    from gidx.index import Index

    for folder, index in ((HG19_BEDS, hg19_index), (YEAST_BEDS, yeast_index)):
        idx = Index.open(index)
        genome, aliases = idx.genome, idx.aliases()
        for p in bed_files(folder):
            import gidx.bed as bed

            # these files are clean: the fast path must take them (else this test compares nothing)
            assert bed._read_clean(bed._read_bytes(p), p, genome, aliases) is not None, p
            _same(*_both_paths(p, genome, aliases, monkeypatch=monkeypatch))
            _same(*_both_paths(p, monkeypatch=monkeypatch))
