"""Printing results: a readable table on a terminal, TSV/JSON/Parquet on request."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path


class Format(str, Enum):
    table = "table"
    tsv = "tsv"
    json = "json"
    parquet = "parquet"


def _cell(v, exact: bool = False) -> str:
    """A value as text: floats to 6 significant digits for people, or (``exact``,
    for TSV that programs read back) the shortest text that round-trips."""
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if exact else f"{v:.6g}"
    return str(v)


def _json_default(v):
    """Values json cannot write. DuckDB's SUM of integers and numeric literals arrive as
    Decimal: they are numbers, not strings."""
    from decimal import Decimal

    if isinstance(v, Decimal):
        return int(v) if v.is_finite() and v == v.to_integral_value() else float(v)
    return str(v)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def check_output(fmt: Format, out: Path | None) -> None:
    """Refuse impossible output options before any work is done (or stored): every
    command with ``--format`` calls this first."""
    from gidx.errors import GidxError

    if fmt == Format.parquet and out is None and _stdout_is_terminal():
        raise GidxError("--format parquet is binary: write it to a file with -o/--out FILE (or to a pipe)")
    if out is not None:
        out = Path(out)
        if out.is_dir() or str(out).endswith("/"):
            raise GidxError(f"--out {out}: is a folder; give a file name")
        if not out.parent.is_dir():
            raise GidxError(f"--out {out}: folder {out.parent} does not exist")


def emit(table, fmt: Format, out: Path | None = None, title: str | None = None) -> None:
    """Write a pyarrow Table to ``out`` (or stdout) in ``fmt``."""
    check_output(fmt, out)
    try:
        _emit(table, fmt, out, title)
    except OSError as e:
        from gidx.errors import GidxError

        raise GidxError(f"--out {out}: cannot write ({e.strerror or e})") from None


def emit_many(tables: list, fmt: Format, out: Path | None = None) -> None:
    """Several results (one per SQL statement): tables and TSV one after another with a
    blank line between, JSON one array holding each result's array of rows. Parquet
    holds one table: several are refused (callers refuse before running anything)."""
    from gidx.errors import GidxError

    check_output(fmt, out)
    if len(tables) == 1:
        emit(tables[0], fmt, out)
        return
    if fmt == Format.parquet:
        raise GidxError(f"--format parquet writes one table: give one SQL statement, not {len(tables)}")
    try:
        if fmt == Format.table and out is None and _stdout_is_terminal():
            for i, t in enumerate(tables):
                if i:
                    sys.stdout.write("\n")
                _emit(t, fmt, None, None)
            return
        if fmt == Format.json:
            text = "[" + ",\n".join(_text(t, fmt).rstrip("\n") for t in tables) + "]\n"
        else:
            text = "\n".join(_text(t, fmt) for t in tables)
        _write(text, out)
    except OSError as e:
        raise GidxError(f"--out {out}: cannot write ({e.strerror or e})") from None


def _text(table, fmt: Format) -> str:
    """A table as JSON, TSV or aligned plain text."""
    rows = table.to_pylist()
    if fmt == Format.json:
        # NaN/Infinity are not JSON (jq and strict parsers reject them): write null
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
        return json.dumps(rows, default=_json_default, indent=None, allow_nan=False) + "\n"
    if fmt == Format.tsv:
        lines = ["\t".join(table.column_names)]
        lines += ["\t".join(_cell(r[c], exact=True) for c in table.column_names) for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max([len(c)] + [len(_cell(r[c])) for r in rows]) for c in table.column_names]
    lines = ["  ".join(c.ljust(w) for c, w in zip(table.column_names, widths))]
    lines += ["  ".join(_cell(r[c]).ljust(w) for c, w in zip(table.column_names, widths)) for r in rows]
    return "\n".join(lines) + "\n"


def _write(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def _emit(table, fmt: Format, out: Path | None, title: str | None) -> None:
    if fmt == Format.parquet:
        import pyarrow.parquet as pq

        if out is None:
            pq.write_table(table, sys.stdout.buffer)
        else:
            pq.write_table(table, out)
        return
    if fmt == Format.table and out is None and _stdout_is_terminal():
        import pyarrow as pa
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_edge=False, header_style="bold")
        for f in table.schema:
            numeric = pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
            t.add_column(f.name, justify="right" if numeric else "left")
        for r in table.to_pylist():
            t.add_row(*(_cell(r[c]) for c in table.column_names))
        Console(soft_wrap=False).print(t)
        return
    _write(_text(table, fmt), out)


class Bar:
    """A progress bar on stderr (rich), silent with --quiet or when stderr is not a terminal."""

    def __init__(self, description: str, quiet: bool = False):
        self.enabled = not quiet and sys.stderr.isatty()
        self.description = description
        self._progress = None
        self._task = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), TextColumn("{task.fields[item]}", style="dim"),
                                      console=Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=None, item="")
        return self

    def __call__(self, done: int, total: int, item: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, item=Path(item).name if item else "")

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
