"""Options shared by every gidx command (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .output import Format

DEFAULT_INDEX = Path("gidx-index")

IndexOpt = Annotated[
    Path,
    typer.Option("--index", "-i", envvar="GIDX_INDEX", help="Index folder (default: $GIDX_INDEX or ./gidx-index).",
                 show_default=False),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summaries on stderr.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the result to this file instead of stdout.")]


def open_index(index: Path, prefetch: bool = False):
    from gidx.errors import IndexStateError
    from gidx.index import Index

    try:
        return Index.open(index, prefetch=prefetch)
    except IndexStateError as e:
        if not (Path(index) / "catalog.duckdb").exists():  # say how the folder was chosen
            raise IndexStateError(f"{e} [the index folder comes from -i/--index, else $GIDX_INDEX, "
                                  f"else ./gidx-index]") from None
        raise
