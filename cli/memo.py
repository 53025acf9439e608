"""``gidx memo``: inspect and precompute the tile memo of an index.

Mounted by the main app as ``app.add_typer(memo_app, name="memo")``. Only typer and
the standard library at import; every command calls library functions.

The genome, tiling and sequence encoder are the index's, as recorded by ``gidx init``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DEFAULT_INDEX, IndexOpt, QuietOpt, open_index
from .output import Bar

memo_app = typer.Typer(help="The tile memo: embeddings of genome tiles, computed once and reused.",
                       no_args_is_help=True)



def _memo(index: Path, **options):
    """The memo of the index's genome, tiling and sequence encoder (recorded at init)."""
    return open_index(index).memo(**options)


@memo_app.command()
def info(
    index: IndexOpt = DEFAULT_INDEX,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
) -> None:
    """Address, inputs, filled fraction per layer and size on disk of the tile memo."""
    report = _memo(index).info()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"address      {report['address']}")
    print(f"path         {report['path']}{'' if report['exists'] else '  (not created yet)'}")
    print(f"encoder      {json.dumps(report['inputs']['encoder'], sort_keys=True)}")
    print(f"tiling       {json.dumps(report['inputs']['tiling'], sort_keys=True)}")
    print(f"dim, dtype   {report['dim']}, {report['dtype']}")
    print(f"filled       {report['filled']:,} of {report['tiles']:,} tiles ({report['fraction']:.1%})")
    for layer in report["layers"]:
        print(f"  layer {layer['layer']} ({layer['tile_size']} bp): {layer['filled']:,} of {layer['tiles']:,} "
              f"({layer['fraction']:.1%})")
    print(f"on disk      {report['bytes_on_disk'] / 2**20:,.1f} MiB")


@memo_app.command()
def fill(
    chrom: Annotated[
        Optional[list[str]], typer.Option("--chrom", "-c", help="Chromosome to fill (repeatable).")
    ] = None,
    all_chroms: Annotated[bool, typer.Option("--all", help="Fill the whole genome.")] = False,
    index: IndexOpt = DEFAULT_INDEX,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker processes (0: in this process).")] = 0,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Sequences per encoder batch.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Precompute tile embeddings for some chromosomes or the whole genome (resumable)."""
    from gidx.errors import GidxError

    if bool(chrom) == all_chroms:
        raise GidxError("give --chrom NAME (repeatable) or --all")
    memo = _memo(index, workers=workers, batch_size=batch_size)
    with Bar("Filling tile memo", quiet) as bar:
        report = memo.fill(chroms=chrom, all=all_chroms, progress=bar)
    if not quiet:
        print(f"{report.computed} chunks computed ({report.tiles_computed:,} tiles), {report.skipped} already "
              f"filled, of {report.chunks}, in {report.seconds:.1f} s", file=sys.stderr)
