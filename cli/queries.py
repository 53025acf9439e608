"""``gidx queries ls|prune``: the stored queries (catalog tables ``queries`` and
``query_results``): list them, remove old ones.

Mounted by the main app as ``app.add_typer(queries_app, name="queries")``. Only typer
and the standard library at import; the commands call :class:`gidx.index.Index`.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .options import DEFAULT_INDEX, FormatOpt, IndexOpt, OutOpt, QuietOpt, open_index
from .output import Format, check_output, emit

queries_app = typer.Typer(
    help="Stored queries (tables queries, query_results): list them, remove old ones "
         "(gidx query --no-save stores nothing).",
    no_args_is_help=True,
)

COLUMNS = "id, created_at, name, n_intervals, k, mode, elapsed_ms"


@queries_app.command("ls")
def queries_ls(
    index: IndexOpt = DEFAULT_INDEX,
    last: Annotated[int, typer.Option("--last", "-n", min=0, help="Only the N newest (0: all).")] = 0,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """List the stored queries, oldest first (created_at is UTC)."""
    check_output(fmt, out)
    sql = f"select {COLUMNS} from queries order by created_at, id"
    if last:
        sql = (f"select * from (select {COLUMNS} from queries order by created_at desc, id desc limit {int(last)}) "
               "order by created_at, id")
    emit(open_index(index).sql(sql), fmt, out)


@queries_app.command("prune")
def queries_prune(
    index: IndexOpt = DEFAULT_INDEX,
    before: Annotated[
        Optional[str], typer.Option("--before", metavar="DATE",
                                    help="Remove queries created before this UTC date or date-time "
                                         "(ISO: 2024-06-01, 2024-06-01T12:00).")
    ] = None,
    keep_last: Annotated[
        Optional[int], typer.Option("--keep-last", metavar="N", min=0,
                                    help="Keep the N newest queries (alone: remove all others; with --before: "
                                         "remove those before DATE except the N newest).")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Remove stored queries and their results, in one transaction."""
    from gidx.errors import GidxError
    from gidx.index import parse_when

    if before is None and keep_last is None:
        raise GidxError("prune which queries? give --before DATE and/or --keep-last N")
    when = None
    if before is not None:
        try:
            when = parse_when(before)
        except GidxError:
            raise GidxError(f"--before {before}: expected an ISO date or date-time, e.g. 2024-06-01 or "
                            "2024-06-01T12:00") from None
    idx = open_index(index)
    n = idx.prune_queries(before=when, keep_last=keep_last)
    if not quiet:
        left = idx.sql("select count(*) as n from queries").column("n")[0].as_py()
        print(f"Removed {n} stored quer{'y' if n == 1 else 'ies'} and their results; {left} left",
              file=sys.stderr)
