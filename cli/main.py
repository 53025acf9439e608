"""The ``gidx`` command line: parses arguments, calls :mod:`gidx`, prints.

Only typer and the standard library are imported at start-up; each command
imports what it needs, so ``gidx --help`` and ``gidx sql`` stay fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DEFAULT_INDEX, FormatOpt, IndexOpt, OutOpt, QuietOpt, open_index
from .output import Bar, Format, emit

app = typer.Typer(
    name="gidx",
    help="A similarity index over sets of genomic intervals (BED files), ranked by seqpare similarity.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

AliasOpt = Annotated[
    Optional[list[str]],
    typer.Option("--chrom-alias", help="Map a chromosome name to the genome's, e.g. chrM=chrmt (repeatable; stored in the index)."),
]
SkipUnknownOpt = Annotated[
    bool, typer.Option("--skip-unknown-chroms", help="Drop intervals on chromosomes the genome lacks (with a warning).")
]

def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _parse_aliases(items: list[str] | None) -> dict[str, str]:
    from gidx.errors import GidxError

    out = {}
    for item in items or []:
        alias, sep, name = item.partition("=")
        if not sep or not alias or not name:
            raise GidxError(f"--chrom-alias expects NAME=GENOME_NAME, got {item!r}")
        out[alias] = name
    return out


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder to create the index in.")] = DEFAULT_INDEX,
    genome: Annotated[Optional[Path], typer.Option("--genome", "-g", help="Genome FASTA (plain or bgzip).")] = None,
    chrom_sizes: Annotated[
        Optional[Path],
        typer.Option("--chrom-sizes", help="chrom.sizes file; sequence is then a seeded synthetic stand-in."),
    ] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Genome name (default: from the file name).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic sequence (with --chrom-sizes).")] = 0,
    chrom_alias: AliasOpt = None,
    sketch_dims: Annotated[int, typer.Option(help="Position-sketch dimensions per resolution.")] = 512,
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="Sequence encoder: kmer[:k=12,dim=256] or hyenadna:CHECKPOINT_FOLDER.")
    ] = "kmer",
    tile_base: Annotated[int, typer.Option(help="Smallest genome tile, bp (tiles are base * 2^K).")] = 128,
    tile_layers: Annotated[int, typer.Option(help="Number of tile sizes.")] = 4,
    tile_offsets: Annotated[int, typer.Option(help="Shifted tile grids per size.")] = 4,
    quiet: QuietOpt = False,
) -> None:
    """Create an index folder for one genome."""
    from gidx.index import Index
    from gidx.sketch import PositionSketch
    from gidx.tiling import Tiling

    try:
        tiling = Tiling(base=tile_base, layers=tile_layers, offsets=tile_offsets)
    except ValueError as e:
        from gidx.errors import GidxError

        raise GidxError(f"tiling: {e}") from None
    idx = Index.create(path, fasta=genome, chrom_sizes=chrom_sizes, genome_name=name, seed=seed,
                       sketch=PositionSketch(dims=sketch_dims), aliases=_parse_aliases(chrom_alias),
                       encoder=encoder, tiling=tiling)
    if not quiet:
        g = idx.genome
        _err(f"Created index {path} for genome {g.name} ({g.kind}, {len(g.names)} chromosomes, {g.total_bp:,} bp)")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="BED files and/or folders (searched recursively).")],
    index: IndexOpt = DEFAULT_INDEX,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Record name (one input file only).")] = None,
    skip_unknown_chroms: SkipUnknownOpt = False,
    chrom_alias: AliasOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Add BED files to the index (idempotent: files already indexed are skipped)."""
    idx = open_index(index)
    if chrom_alias:
        idx.add_aliases(_parse_aliases(chrom_alias))
    with Bar("ingest", quiet) as bar:
        rep = idx.ingest(paths, name=name, skip_unknown_chroms=skip_unknown_chroms, progress=bar)
    for w in rep.warnings:
        _err(f"Warning: {w}")
    if not quiet:
        for path, why in rep.skipped[:10]:
            _err(f"Skipped {path}: {why}")
        if len(rep.skipped) > 10:
            _err(f"Skipped {len(rep.skipped) - 10} more file(s) already in the index")
    for path, e in rep.rejected:
        _err(f"Error: {e}")
        for p in e.problems[1:]:
            _err(f"  {p}")
    if not quiet:
        rate = f" ({rep.intervals / rep.seconds:,.0f} intervals/s)" if rep.intervals >= 10_000 and rep.seconds > 0 else ""
        _err(f"Added {len(rep.added)}, skipped {len(rep.skipped)}, rejected {len(rep.rejected)} file(s); "
             f"{rep.intervals:,} intervals in {rep.seconds:.2f} s{rate}")
    if rep.rejected:
        raise typer.Exit(2)


@app.command()
def query(
    bed: Annotated[Path, typer.Argument(help="Query BED file.")],
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("-k", "--top", help="Number of results.")] = 20,
    rerank: Annotated[
        int, typer.Option("--rerank", "-P", help="Rescore this many vector-search candidates with exact seqpare "
                                                 "(at least k are rescored).")
    ] = 200,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Return the raw vector-search ranking.")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Exhaustive exact seqpare ranking over all records.")] = False,
    skip_unknown_chroms: SkipUnknownOpt = False,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Find the records most similar to a BED file (score = embedding cosine, exact_score = seqpare S)."""
    from gidx.errors import GidxError

    from .output import check_output

    check_output(fmt, out)
    if exact and no_rerank:
        raise GidxError("--exact and --no-rerank contradict each other: pick one")
    idx = open_index(index)
    table = idx.query(bed, k=k, rerank=None if no_rerank else rerank, exact=exact,
                      skip_unknown_chroms=skip_unknown_chroms)
    meta = table.schema.metadata or {}
    for w in filter(None, meta.get(b"gidx.warnings", b"").decode().split("\n")):
        _err(f"Warning: {w}")
    emit(table, fmt, out, title=f"{bed.name}: top {k}")
    if not quiet and table.num_rows == 0:
        _err(f"No records to compare with: the index is empty (add some: gidx ingest FILES -i {index})")
    if not quiet:
        qid, ms = meta.get(b"gidx.query_id", b"").decode(), float(meta.get(b"gidx.elapsed_ms", b"0"))
        _err(f'query id {qid} ({ms:.1f} ms); see: gidx sql "select * from query_results where query_id = {qid}"')


@app.command()
def seqpare(
    target: Annotated[Path, typer.Argument(help="Target (database-side) BED file: the reference's first argument.")],
    query_bed: Annotated[Path, typer.Argument(metavar="QUERY", help="Query BED file: the reference's second argument.")],
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """Exact seqpare similarity of two BED files (as `seqpare TARGET QUERY`)."""
    import pyarrow as pa

    from gidx.bed import read_bed
    from gidx.seqpare import pair

    r = pair(read_bed(target).intervals, read_bed(query_bed).intervals)
    emit(pa.table({"n_target": [r.n_t], "n_query": [r.n_q], "teo": [r.teo], "tc": [r.tc], "s": [r.s]}), fmt, out)


@app.command()
def truth(
    index: IndexOpt = DEFAULT_INDEX,
    top: Annotated[
        int, typer.Option("--top", help="Keep only each record's K best neighbours (0 = every pair with S > 0).")
    ] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Compute exact seqpare ground truth into the catalog table `seqpare` (incremental, resumable)."""
    idx = open_index(index)
    with Bar("truth", quiet) as bar:
        rep = idx.truth(top_k=top, progress=bar)
    if not quiet:
        _err(f"Compared {rep.queries} record(s) ({rep.up_to_date} already up to date); "
             f"{rep.pairs:,} pairs stored in {rep.seconds:.2f} s")


@app.command()
def sql(
    statement: Annotated[str, typer.Argument(help="SQL to run on the catalog (DuckDB dialect).")],
    index: IndexOpt = DEFAULT_INDEX,
    write: Annotated[bool, typer.Option("--write", help="Allow statements that change the catalog.")] = False,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """Run SQL on the catalog (read-only unless --write)."""
    idx = open_index(index)
    emit(idx.sql(statement, write=write), fmt, out)


@app.command()
def info(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table) -> None:
    """Show the genome, encoder, counts and sizes on disk."""
    import json

    d = open_index(index).info()
    if fmt == Format.json:
        print(json.dumps(d, indent=2))
        return
    sizes = d.pop("bytes")  # printed last
    for key, v in d.items():
        print(f"{key:16} {v:,}" if isinstance(v, int) else f"{key:16} {v}")
    for key, v in sizes.items():
        print(f"{'size ' + key:16} {v / 1e6:,.2f} MB")


@app.command()
def ls(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table, out: OutOpt = None) -> None:
    """List the records."""
    emit(open_index(index).ls(), fmt, out)


@app.command()
def rm(
    names: Annotated[list[str], typer.Argument(help="Record names to remove.")],
    index: IndexOpt = DEFAULT_INDEX,
    quiet: QuietOpt = False,
) -> None:
    """Remove records from the index (catalog, vectors, overlap structure)."""
    removed = open_index(index).rm(names)
    if not quiet:
        _err(f"Removed {len(removed)} record(s)")


@app.command()
def check(
    index: IndexOpt = DEFAULT_INDEX,
    repair: Annotated[bool, typer.Option("--repair", help="Remove orphans and refill bad memo tiles.")] = False,
) -> None:
    """Verify that catalog, vectors, overlap structure and memo agree (exit 1 on problems)."""
    from gidx.check import check_index

    rep = check_index(open_index(index), repair=repair)
    for key, n in rep.checked.items():
        print(f"checked {key:16} {n:,}")
    for line in rep.orphans:
        print(f"orphan: {line}")
    for line in rep.repaired:
        print(f"repaired: {line}")
    for line in rep.problems:
        print(f"PROBLEM: {line}")
    print("OK" if rep.ok else f"{len(rep.problems)} problem(s)")
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def encoders(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table) -> None:
    """List the encoders of the index (sequence encoder, set encoders) and which are active."""
    emit(open_index(index).sql(
        "select e.id, e.name, e.kind, e.dim, e.params, "
        "(e.id::varchar in (select value from settings where key in ('set_encoder_id', 'sequence_encoder_id'))) "
        "as active, e.created_at from encoders e order by e.id"), fmt)


@app.command()
def alias(
    pairs: Annotated[list[str], typer.Argument(help="NAME=GENOME_NAME pairs, e.g. chrM=chrmt.")],
    index: IndexOpt = DEFAULT_INDEX,
) -> None:
    """Store chromosome-name aliases used when reading BED files."""
    open_index(index).add_aliases(_parse_aliases(pairs))


@app.command()
def demo(
    keep: Annotated[Optional[Path], typer.Option("--keep", help="Build the demo index here and keep it.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Build an index from the bundled yeast data, run a query, show what to try next."""
    from .demo import run_demo

    run_demo(keep, quiet)


from . import train as _train  # noqa: E402  (sub-commands; typer-only imports)
from .memo import memo_app  # noqa: E402

app.add_typer(memo_app, name="memo")
_train.register(app)


STORAGE_ERRORS = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded")


def _storage_problem(exc: BaseException) -> str | None:
    """A full disk or an unwritable index folder, from any layer (OS, DuckDB, LanceDB, Zarr)."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    text = str(exc)
    for marker in STORAGE_ERRORS:
        if marker in text:
            return marker
    return None


def main() -> None:
    from gidx.errors import GidxError

    try:
        app()
    except GidxError as e:
        _err(f"Error: {e}")
        for p in getattr(e, "problems", [])[1:]:
            _err(f"  {p}")
        sys.exit(e.exit_code)
    except Exception as e:
        problem = _storage_problem(e)
        if problem is None:
            raise
        # every write path commits the catalog last, so what was stored before is intact
        _err(f"Error: cannot write the index ({problem}); work committed before this point is kept, "
             "the rest was not stored: free space or fix permissions and rerun")
        sys.exit(2)
    except KeyboardInterrupt:
        _err("Interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
