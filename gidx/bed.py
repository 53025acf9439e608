"""Reading and validating BED files.

BED coordinates are 0-based, half-open: ``chrom<TAB>start<TAB>end`` means the
bases ``start .. end-1``. gidx reads BED3 to BED12+, narrowPeak/broadPeak and
any extra columns (only the first three are used), plain or gzip/bgzip
compressed, with ``track``/``browser``/``#`` header lines and one optional
column-name line at the top. Every data line counts as one interval, as in
seqpare: duplicates and zero-length intervals are kept, nothing is merged,
order is kept (seqpare's tie rules depend on it).

Validation never stops at the first problem: it collects every problem (up to
``max_problems`` listed) as ``FILE:LINE: problem`` and raises one
:class:`~gidx.errors.InputError`, so a user fixes a file in one pass.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .intervals import IntervalSet

if TYPE_CHECKING:
    from .genome import Genome

HEADER_PREFIXES = ("track", "browser", "#")
BED_SUFFIXES = (".bed", ".narrowpeak", ".broadpeak", ".gappedpeak", ".regionpeak", ".bed12", ".bedgraph")
MAX_PROBLEMS = 20
MITO_NAMES = ("chrM", "chrMT", "chrmt", "MT", "M", "mt")
NO_INTERVALS = "no intervals (empty file or only header lines)"


def is_bed_path(path: Path) -> bool:
    """True for ``*.bed``, ``*.narrowPeak`` ... optionally ``.gz``/``.bgz``."""
    name = path.name.lower()
    for comp in (".gz", ".bgz"):
        if name.endswith(comp):
            name = name[: -len(comp)]
    return name.endswith(BED_SUFFIXES)


@dataclass
class BedFile:
    """One parsed BED file: its intervals plus what was learnt reading it."""

    path: Path
    intervals: IntervalSet
    n_columns: int
    format: str
    header_lines: int
    skipped_chroms: dict[str, int] = field(default_factory=dict)
    empty_reason: str | None = None  # why a file read with allow_empty has no intervals
    stats: dict | None = None  # what a record stores about it (record_stats), when already computed

    def record_stats(self, chrom_names, full_path: str | None = None) -> dict:
        """What the catalog stores about this file as a record, computed where it was
        parsed (a worker thread or process): content hash, bases covered, chromosomes,
        resolved path (``full_path``: the file's absolute path, where ``path`` is the
        path as the user gave it) and size."""
        s = self.intervals
        codes = np.unique(s.chrom)
        where = Path(full_path) if full_path is not None else self.path
        return {"content_hash": s.content_hash(), "bp_covered": s.bp_covered(), "n_chromosomes": len(codes),
                "chromosomes": ",".join(chrom_names[c] for c in codes), "source_path": str(where.resolve()),
                "file_bytes": where.stat().st_size}

    @property
    def warnings(self) -> list[str]:
        return [
            f"{self.path}: skipped {n} interval{'s' if n > 1 else ''} on unknown chromosome {c!r}"
            for c, n in sorted(self.skipped_chroms.items())
        ]


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress gzip/bgzip (any number of members), keeping what was decoded
    before a truncation or corruption so the problem can be given a line number."""
    out: list[bytes] = []
    view = memoryview(raw)
    pos, step = 0, 1 << 16
    d = zlib.decompressobj(wbits=31)
    started = False  # the current member has received input
    pending = b""
    try:
        while True:
            if pending:
                data, pending = pending, b""
            elif pos < len(raw):
                data, pos = bytes(view[pos : pos + step]), pos + step
            else:
                break
            if not started:
                data = data.lstrip(b"\x00")  # zero padding between members
                if not data:
                    continue
                started = True
            out.append(d.decompress(data))
            if d.eof:
                pending = d.unused_data
                d, started = zlib.decompressobj(wbits=31), False
        problem = "gzip data ends before its end marker (truncated file: incomplete download or copy?)" if started else None
    except zlib.error as e:
        problem = f"corrupt gzip data ({e})"
    if problem is None:
        return b"".join(out)
    done = b"".join(out)
    line = done.count(b"\n") + 1
    raise InputError([f"{path}:{line}: {problem}; {line - 1} complete line{'s' if line != 2 else ''} before it"])


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError([f"{path}: is a directory, not a BED file"]) from None
    except OSError as e:
        raise InputError([f"{path}: cannot read ({e.strerror or e})"]) from None
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise InputError([f"{path}:{line}: binary data (NUL byte), not a text BED file"])
    return raw


def _decode(raw: bytes, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError([f"{path}:{line}: not UTF-8 text (binary or garbage input?)"]) from None


def _format_name(path: Path, n_columns: int) -> str:
    name = path.name.lower().removesuffix(".gz").removesuffix(".bgz")
    for fmt in ("narrowpeak", "broadpeak", "gappedpeak", "regionpeak", "bedgraph"):
        if name.endswith(fmt):
            return {"narrowpeak": "narrowPeak", "broadpeak": "broadPeak", "gappedpeak": "gappedPeak",
                    "regionpeak": "regionPeak", "bedgraph": "bedGraph"}[fmt]
    if n_columns == 0:  # no data line: the column count is unknown
        return "BED"
    return f"BED{n_columns}" if n_columns <= 12 else f"BED12+{n_columns - 12}"


def _is_int(text: str) -> bool:
    """An ASCII decimal integer with optional sign (Python's int() would also take
    '1_000' and non-ASCII digits, which no BED tool writes or reads)."""
    t = text.strip()
    if t[:1] in ("+", "-"):
        t = t[1:]
    return t.isascii() and t.isdigit()


def _to_int64(
    values: list[str], linenos: list[int], what: str, path: Path, problems: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Parse decimal integers; report every non-integer with its line.
    Returns the values and a mask of those that parsed (the others are 0 and
    must not be checked further: 'x20' is one problem, not also 'start > end')."""
    joined = "".join(values)
    try:
        if "_" in joined or not joined.isascii():
            raise ValueError("not plain ASCII decimal integers")
        return np.array(values, dtype=np.int64), np.ones(len(values), dtype=bool)
    except (ValueError, OverflowError):
        out = np.zeros(len(values), dtype=np.int64)
        parsed = np.zeros(len(values), dtype=bool)
        for i, v in enumerate(values):
            if not _is_int(v):
                problems.append(f"{path}:{linenos[i]}: {what} {v!r} is not an integer")
                continue
            iv = int(v)
            if not -(2**62) < iv < 2**62:
                problems.append(f"{path}:{linenos[i]}: {what} {v.strip()} is out of range")
                continue
            out[i] = iv
            parsed[i] = True
        return out, parsed


def _alias_hint(unknown: list[str], genome: "Genome") -> str | None:
    known = set(genome.names)
    pairs = []
    for c in unknown:
        cands = [c[3:]] if c.startswith("chr") else ["chr" + c]
        if c in MITO_NAMES:
            cands += list(MITO_NAMES)
        hit = next((x for x in cands if x in known), None)
        if hit:
            pairs.append(f"{c}={hit}")
    if pairs:
        return ("the genome names them differently: map them with `gidx alias " + " ".join(pairs[:3])
                + (" ..." if len(pairs) > 3 else "") + "` (or --chrom-alias "
                + " --chrom-alias ".join(pairs[:3]) + " at ingest; or drop them with --skip-unknown-chroms)")
    return "drop them with --skip-unknown-chroms, or map names with `gidx alias NAME=GENOME_NAME`"


def read_bed(
    path: str | Path,
    genome: "Genome | None" = None,
    *,
    aliases: dict[str, str] | None = None,
    skip_unknown_chroms: bool = False,
    max_problems: int = MAX_PROBLEMS,
    allow_empty: bool = False,
) -> BedFile:
    """Parse and validate one BED file.

    With a ``genome``, chromosome codes are the genome's and every interval is
    checked against the chromosome's length; names go through ``aliases``
    first. Without one (``gidx seqpare A.bed B.bed``), chromosomes are coded in
    order of first appearance and only the coordinates are checked.
    Raises :class:`InputError` listing every problem.

    A file without intervals (empty, only blank/header/comment lines, or nothing
    left after ``skip_unknown_chroms``) is an error unless ``allow_empty``: then it
    is an empty set (seqpare: S = 0 against any non-empty set), and
    :attr:`BedFile.empty_reason` says why it is empty.
    """
    path = Path(path)
    raw = _read_bytes(path)
    fast = _read_clean(raw, path, genome, aliases)
    if fast is not None:
        return fast
    text = _decode(raw, path)
    problems: list[str] = []

    chrom_s: list[str] = []
    start_s: list[str] = []
    end_s: list[str] = []
    linenos: list[int] = []
    header = 0
    n_columns = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith(HEADER_PREFIXES):
            header += 1
            continue
        f = line.split("\t", 3)
        if len(f) < 3:
            hint = " (fields must be separated by tabs)" if len(line.split()) >= 3 else ""
            problems.append(f"{path}:{lineno}: too few columns: {len(f)} tab-separated field{'s' if len(f) > 1 else ''}, BED needs chrom, start, end{hint}")
            continue
        if not linenos and not _is_int(f[1]) and not _is_int(f[2]):
            header += 1  # a column-name line at the top ("chrom start end ..."); one bad number is a problem
            continue
        if not n_columns:
            n_columns = line.count("\t") + 1
        chrom_s.append(f[0].strip())
        start_s.append(f[1])
        end_s.append(f[2])
        linenos.append(lineno)

    if not linenos and not problems:
        if not allow_empty:
            raise InputError([f"{path}: {NO_INTERVALS}: nothing to rank or compare"])
        empty = IntervalSet(tuple(genome.names) if genome is not None else (), np.zeros(0, np.int32),
                            np.zeros(0, np.int64), np.zeros(0, np.int64))
        return BedFile(path, empty, 0, _format_name(path, 0), header, empty_reason=NO_INTERVALS)

    start, start_ok = _to_int64(start_s, linenos, "start", path, problems)
    end, end_ok = _to_int64(end_s, linenos, "end", path, problems)
    both_ok = start_ok & end_ok
    line_arr = np.asarray(linenos, dtype=np.int64)
    for i in np.flatnonzero(start_ok & (start < 0)):
        problems.append(f"{path}:{line_arr[i]}: negative start {start[i]}")
    for i in np.flatnonzero(end_ok & (end < 0)):
        problems.append(f"{path}:{line_arr[i]}: negative end {end[i]}")
    for i in np.flatnonzero(both_ok & (start > end)):
        problems.append(f"{path}:{line_arr[i]}: start {start[i]} is after end {end[i]}")

    hint = None
    skipped: dict[str, int] = {}
    if genome is None:
        names: dict[str, int] = {}
        chrom = np.fromiter((names.setdefault(c, len(names)) for c in chrom_s), dtype=np.int32, count=len(chrom_s))
        chroms = tuple(names)
    else:
        chroms = tuple(genome.names)
        lookup = _lookup_table(genome, aliases)
        chrom = np.fromiter((lookup.get(c, -1) for c in chrom_s), dtype=np.int32, count=len(chrom_s))
        bad = chrom < 0
        if bad.any():
            counts = Counter(c for c, b in zip(chrom_s, bad) if b)
            if skip_unknown_chroms:
                skipped = dict(counts)
            else:
                first: dict[str, int] = {}
                for j in np.flatnonzero(bad):
                    first.setdefault(chrom_s[j], int(line_arr[j]))
                listing = ", ".join(f"{c!r} ({n} line{'s' if n > 1 else ''}, first line {first[c]})" for c, n in counts.most_common(10))
                more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
                problems.append(
                    f"{path}:{min(first.values())}: chromosome{'s' if len(counts) > 1 else ''} not in genome "
                    f"{genome.name}: {listing}{more}"
                )
                hint = _alias_hint(list(counts), genome)
        ok = ~bad
        past = ok & end_ok & (end > genome.lengths[np.where(ok, chrom, 0)])
        for i in np.flatnonzero(past):
            problems.append(
                f"{path}:{line_arr[i]}: end {end[i]} is past the end of {genome.names[chrom[i]]} "
                f"({genome.lengths[chrom[i]]} bp in {genome.name})"
            )
        if skip_unknown_chroms and bad.any():
            chrom, start, end = chrom[ok], start[ok], end[ok]

    if problems:
        # order by line so the first problem reported is the first in the file
        prefix = f"{path}:"

        def line_of(p: str) -> int:
            head = p[len(prefix):].split(":", 1)[0] if p.startswith(prefix) else ""
            return int(head) if head.isdigit() else 0
        problems.sort(key=line_of)
        raise InputError(problems[:max_problems], total=len(problems), hint=hint)
    empty_reason = None
    if len(chrom) == 0:
        empty_reason = f"no intervals left after skipping unknown chromosomes {sorted(skipped)}"
        if not allow_empty:
            raise InputError([f"{path}: {empty_reason}"])

    return BedFile(
        path=path,
        intervals=IntervalSet(chroms, chrom, start, end),
        n_columns=n_columns,
        format=_format_name(path, n_columns),
        header_lines=header,
        skipped_chroms=skipped,
        empty_reason=empty_reason,
    )


def _lookup_table(genome: "Genome", aliases: dict[str, str] | None) -> dict[str, int]:
    lookup = dict(genome.code_of)
    for alias, target in (aliases or {}).items():
        if target in lookup:
            lookup.setdefault(alias, lookup[target])
    return lookup


def _decimals(column) -> np.ndarray | None:
    """int64 values of a string column whose every value is 1-18 ASCII digits, else
    None. Done on the Arrow buffers with numpy: ``pyarrow.compute`` costs ~70 ms
    to import, a sixth of a one-shot ``gidx query``."""
    arr = column.combine_chunks()
    if arr.null_count or not len(arr):
        return None
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, np.int32, len(arr) + 1, arr.offset * 4)
    lengths = np.diff(off)
    if lengths.min() < 1 or lengths.max() > 18:
        return None
    digits = np.frombuffer(data, np.uint8, int(off[-1] - off[0]), int(off[0])).astype(np.int64) - 48
    if digits.min() < 0 or digits.max() > 9:
        return None
    # each digit times 10^(digits after it in its own value), summed per value
    after = np.repeat(off[1:] - off[0], lengths) - 1 - np.arange(len(digits))
    return np.add.reduceat(digits * 10 ** after, off[:-1] - off[0])


def _read_clean(raw: bytes, path: Path, genome: "Genome | None", aliases: dict[str, str] | None) -> BedFile | None:
    """Fast path: parse with pyarrow's CSV reader when the file is clean.

    Returns None at the first sign of anything unusual (a header or comment
    line past the top, ragged columns, a non-integer, a problem to report), and
    the caller re-reads with the line-by-line reader, which reports every
    problem with its line number. Clean files, the vast majority, never pay
    for Python-level line handling.
    """
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    pos, header, first = 0, 0, None
    while pos < len(raw):  # leading header / blank lines, then the first data line
        nl = raw.find(b"\n", pos)
        nl = len(raw) if nl < 0 else nl
        line = raw[pos:nl].rstrip(b"\r")
        if line.strip() and not line.startswith((b"track", b"browser", b"#")):
            f = line.split(b"\t")
            if len(f) < 3:
                return None
            if first is None and not _is_int(f[1].decode("latin-1")) and not _is_int(f[2].decode("latin-1")):
                header += 1  # column-name line (as in read_bed: one bad number is a problem, not a header)
                first = False
                pos = nl + 1
                continue
            first = line
            break
        header += 1 if line.strip() else 0
        pos = nl + 1
    if not isinstance(first, bytes):
        return None
    n_columns = first.count(b"\t") + 1
    cols = [f"c{i}" for i in range(n_columns)]
    try:
        tbl = pacsv.read_csv(
            io.BytesIO(raw[pos:]),
            read_options=pacsv.ReadOptions(column_names=cols, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False, escape_char=False),
            # start/end as text first: Arrow's integer parser also takes '0x10' (= 16), which no BED tool does
            # chromosome names dictionary-encoded by the reader itself (dictionary_encode would
            # import pyarrow.compute: ~30 ms of a one-shot query)
            convert_options=pacsv.ConvertOptions(column_types={"c0": pa.dictionary(pa.int32(), pa.string()),
                                                               "c1": pa.string(), "c2": pa.string()},
                                                 include_columns=cols[:3]),
        )
        if tbl.num_rows == 0 or tbl.column("c1").null_count or tbl.column("c2").null_count:
            return None
        start, end = _decimals(tbl.column("c1")), _decimals(tbl.column("c2"))
        if start is None or end is None:
            return None  # signs, spaces, hex, non-ASCII digits...: the line reader decides
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    if (start < 0).any() or (start > end).any():
        return None
    chunks = tbl.column("c0").unify_dictionaries().chunks  # one dictionary for all chunks
    names = chunks[0].dictionary.to_pylist()
    if any(n != n.strip() or n.startswith(HEADER_PREFIXES) for n in names):
        return None
    idx = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks])
    if genome is None:
        # codes in order of first appearance, as the line-by-line reader gives
        first_seen = np.full(len(names), len(idx), np.int64)
        np.minimum.at(first_seen, idx, np.arange(len(idx)))
        order = np.argsort(first_seen)
        rank = np.empty(len(names), np.int32)
        rank[order] = np.arange(len(names), dtype=np.int32)
        return BedFile(path, IntervalSet(tuple(names[i] for i in order), rank[idx], start, end),
                       n_columns, _format_name(path, n_columns), header)
    lookup = _lookup_table(genome, aliases)
    codes = np.array([lookup.get(n, -1) for n in names], dtype=np.int32)
    if (codes < 0).any():
        return None
    chrom = codes[idx]
    if (end > genome.lengths[chrom]).any():
        return None
    return BedFile(path, IntervalSet(tuple(genome.names), chrom, start, end), n_columns,
                   _format_name(path, n_columns), header)
