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

import gzip
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

    @property
    def warnings(self) -> list[str]:
        return [
            f"{self.path}: skipped {n} interval{'s' if n > 1 else ''} on unknown chromosome {c!r}"
            for c, n in sorted(self.skipped_chroms.items())
        ]


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise InputError([f"{path}: is a directory, not a BED file"]) from None
    except OSError as e:
        raise InputError([f"{path}: cannot read ({e.strerror or e})"]) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise InputError([f"{path}: corrupt or truncated gzip data ({e})"]) from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise InputError([f"{path}:{line}: binary data (NUL byte), not a text BED file"])
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
    return f"BED{n_columns}" if n_columns <= 12 else f"BED12+{n_columns - 12}"


def _is_int(text: str) -> bool:
    t = text.strip()
    return t.isdigit() or (len(t) > 1 and t[0] in "+-" and t[1:].isdigit())


def _to_int64(values: list[str], linenos: list[int], what: str, path: Path, problems: list[str]) -> np.ndarray:
    """Parse decimal integers; report every non-integer with its line."""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        out = np.zeros(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            if not _is_int(v):
                problems.append(f"{path}:{linenos[i]}: {what} {v!r} is not an integer")
                continue
            iv = int(v)
            if not -(2**62) < iv < 2**62:
                problems.append(f"{path}:{linenos[i]}: {what} {v} is out of range")
                continue
            out[i] = iv
        return out


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
        return ("the genome names them differently: map them with --chrom-alias "
                + " --chrom-alias ".join(pairs[:3]) + (" ..." if len(pairs) > 3 else "")
                + " (or drop them with --skip-unknown-chroms)")
    return "drop them with --skip-unknown-chroms, or map names with --chrom-alias NAME=GENOME_NAME"


def read_bed(
    path: str | Path,
    genome: "Genome | None" = None,
    *,
    aliases: dict[str, str] | None = None,
    skip_unknown_chroms: bool = False,
    max_problems: int = MAX_PROBLEMS,
) -> BedFile:
    """Parse and validate one BED file.

    With a ``genome``, chromosome codes are the genome's and every interval is
    checked against the chromosome's length; names go through ``aliases``
    first. Without one (``gidx seqpare A.bed B.bed``), chromosomes are coded in
    order of first appearance and only the coordinates are checked.
    Raises :class:`InputError` listing every problem.
    """
    path = Path(path)
    text = _read_text(path)
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
        if not linenos and not (_is_int(f[1]) and _is_int(f[2])):
            header += 1  # a column-name line at the top ("chrom start end ...")
            continue
        if not n_columns:
            n_columns = line.count("\t") + 1
        chrom_s.append(f[0].strip())
        start_s.append(f[1])
        end_s.append(f[2])
        linenos.append(lineno)

    if not linenos and not problems:
        raise InputError([f"{path}: no intervals (empty file or only header lines)"])

    start = _to_int64(start_s, linenos, "start", path, problems)
    end = _to_int64(end_s, linenos, "end", path, problems)
    line_arr = np.asarray(linenos, dtype=np.int64)
    for i in np.flatnonzero(start < 0):
        problems.append(f"{path}:{line_arr[i]}: negative start {start[i]}")
    for i in np.flatnonzero(end < 0):
        problems.append(f"{path}:{line_arr[i]}: negative end {end[i]}")
    for i in np.flatnonzero(start > end):
        problems.append(f"{path}:{line_arr[i]}: start {start[i]} is after end {end[i]}")

    hint = None
    skipped: dict[str, int] = {}
    if genome is None:
        names: dict[str, int] = {}
        chrom = np.fromiter((names.setdefault(c, len(names)) for c in chrom_s), dtype=np.int32, count=len(chrom_s))
        chroms = tuple(names)
    else:
        chroms = tuple(genome.names)
        lookup = dict(genome.code_of)
        if aliases:
            for alias, target in aliases.items():
                if target in lookup:
                    lookup.setdefault(alias, lookup[target])
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
        past = ok & (end > genome.lengths[np.where(ok, chrom, 0)])
        for i in np.flatnonzero(past):
            problems.append(
                f"{path}:{line_arr[i]}: end {end[i]} is past the end of {genome.names[chrom[i]]} "
                f"({genome.lengths[chrom[i]]} bp in {genome.name})"
            )
        if skip_unknown_chroms and bad.any():
            chrom, start, end = chrom[ok], start[ok], end[ok]

    if problems:
        # order by line so the first problem reported is the first in the file
        def line_of(p: str) -> int:
            try:
                return int(p.split(":", 2)[1]) if p.startswith(str(path) + ":") else 0
            except ValueError:
                return 0
        problems.sort(key=line_of)
        raise InputError(problems[:max_problems], total=len(problems), hint=hint)
    if len(chrom) == 0:
        raise InputError([f"{path}: no intervals left after skipping unknown chromosomes {sorted(skipped)}"])

    return BedFile(
        path=path,
        intervals=IntervalSet(chroms, chrom, start, end),
        n_columns=n_columns,
        format=_format_name(path, n_columns),
        header_lines=header,
        skipped_chroms=skipped,
    )
