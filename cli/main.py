"""The ``gidx`` command line: parses arguments, calls :mod:`gidx`, prints.

Only typer and the standard library are imported at start-up; each command
imports what it needs, so ``gidx --help`` and ``gidx sql`` stay fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

# One BLAS thread, set before numpy loads: gidx parallelises over queries and records
# itself (threads, the C seqpare kernels), and OpenBLAS's own threads on top of those
# made the vector search's matrix-vector product 10-100x slower on a busy 2-core
# machine (0.04-0.08 ms vs 7 ms for 1,000 x 1,536; benchmarks/RESULTS.md §7).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402

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


def _version(value: bool) -> None:
    if value:
        from gidx import __version__  # gidx/__init__.py imports nothing heavy

        print(f"gidx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the gidx version and exit.")
    ] = False,
) -> None:
    pass


def _some(paths: list[str], n: int = 5) -> str:
    """The first ``n`` file names, then an ellipsis."""
    names = [Path(p).name for p in paths[:n]]
    return ", ".join(names) + (", …" if len(paths) > n else "")


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
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Folder to create the index in.")] = DEFAULT_INDEX,
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


RayOpt = Annotated[
    Optional[str],
    typer.Option("--ray", metavar="auto|ADDRESS",
                 help="Run the work on a Ray cluster: 'auto' (the cluster in RAY_ADDRESS, else a local one) or the "
                      "head node's address (HEAD:6379). Needs pip install 'gidx[ray]'."),
]


@app.command()
def ingest(
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="BED files and/or folders (searched recursively).")
    ],
    index: IndexOpt = DEFAULT_INDEX,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Record name (one input file only).")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="A file whose record name is indexed with different intervals replaces "
                                             "that record (atomically) instead of being refused.")
    ] = False,
    skip_unknown_chroms: SkipUnknownOpt = False,
    chrom_alias: AliasOpt = None,
    quiet: QuietOpt = False,
    ray: RayOpt = None,
) -> None:
    """Add BED files to the index, one record per file (idempotent: files already indexed are skipped).

    Record names: with one folder, each file's path under it without the BED suffix
    (roadmap/E003/x.bed.gz -> E003/x); with one file, its file name without the suffix;
    with several paths, each file's path under their common parent folder (a/x.bed and
    b/x.bed -> a/x and b/x). Files with the same intervals are separate records under
    their own names. A file whose name is indexed with other intervals is refused unless
    --replace. An empty file (or one with only header lines, or nothing left after
    --skip-unknown-chroms) is stored as a record with 0 intervals, with a warning.

    With --ray, files are parsed and embedded on Ray workers (they must see the files at
    the same paths); this process still writes the index, as without Ray.
    """
    idx = open_index(index)
    if chrom_alias:
        idx.add_aliases(_parse_aliases(chrom_alias))
    with Bar("ingest", quiet) as bar:
        rep = idx.ingest(paths, name=name, skip_unknown_chroms=skip_unknown_chroms, replace=replace, progress=bar,
                         ray=ray)
    for w in rep.warnings:
        _err(f"Warning: {w}")
    if not quiet:
        for path, why in rep.skipped[:10]:
            _err(f"Skipped {path}: {why}")
        if len(rep.skipped) > 10:
            _err(f"Skipped {len(rep.skipped) - 10} more file(s) already in the index")
        if rep.not_bed:
            _err(f"Skipped {len(rep.not_bed)} non-BED file{'s' if len(rep.not_bed) > 1 else ''}: {_some(rep.not_bed)}")
    for path, e in rep.rejected:
        _err(f"Error: {e}")
        for p in e.problems[1:]:
            _err(f"  {p}")
    if not quiet:
        rate = f" ({rep.intervals / rep.seconds:,.0f} intervals/s)" if rep.intervals >= 10_000 and rep.seconds > 0 else ""
        replaced = f" ({len(rep.replaced)} replacing an older version)" if rep.replaced else ""
        _err(f"Added {len(rep.added)}{replaced}, skipped {len(rep.skipped)}, rejected {len(rep.rejected)} file(s); "
             f"{rep.intervals:,} intervals in {rep.seconds:.2f} s{rate}")
    if rep.rejected:
        raise typer.Exit(2)


@app.command()
def query(
    beds: Annotated[
        Optional[list[Path]], typer.Argument(metavar="BED...", help="Query BED file(s) and/or folders of them.")
    ] = None,
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("-k", "--top", help="Number of results per query.")] = 20,
    rerank: Annotated[
        int, typer.Option("--rerank", "-P", help="Rescore this many vector-search candidates with exact seqpare "
                                                 "(at least k are rescored).")
    ] = 200,
    no_rerank: Annotated[bool, typer.Option("--no-rerank", help="Return the raw vector-search ranking.")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Exhaustive exact seqpare ranking over all records.")] = False,
    from_list: Annotated[
        Optional[Path], typer.Option("--from-list", help="A file listing query BED files, one per line.")
    ] = None,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Do not store the queries and results in the catalog "
                                             "(tables queries, query_results).")
    ] = False,
    threads: Annotated[int, typer.Option("--threads", help="Queries searched at once (several queries).")] = 2,
    skip_unknown_chroms: SkipUnknownOpt = False,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Find the records most similar to BED files (score = embedding cosine, exact_score = seqpare S).

    Several files, folders or --from-list give one table with a `query` column."""
    from gidx.errors import GidxError

    from .output import check_output

    check_output(fmt, out)
    if exact and no_rerank:
        raise GidxError("--exact and --no-rerank contradict each other: pick one")
    inputs = list(beds or [])
    if from_list is not None:
        inputs += _read_list(from_list)
    if not inputs:
        raise GidxError("no query: give BED files, folders, or --from-list FILE")
    idx = open_index(index, prefetch=True)
    opts = dict(rerank=None if no_rerank else rerank, exact=exact, skip_unknown_chroms=skip_unknown_chroms)
    if len(inputs) == 1 and not inputs[0].is_dir():
        _query_one(idx, inputs[0], k, opts, not no_save, fmt, out, quiet, index)
    else:
        _query_many(idx, inputs, k, opts, not no_save, threads, fmt, out, quiet)


def _read_list(path: Path) -> list[Path]:
    from gidx.errors import InputError

    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise InputError([f"{path}: cannot read ({e.strerror or e})"]) from None
    base = path.parent
    # relative entries are relative to the list's folder, as in a playlist
    return [p if p.is_absolute() else base / p
            for p in (Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#"))]


def _query_one(idx, bed: Path, k: int, opts: dict, save: bool, fmt, out, quiet: bool, index: Path) -> None:
    run = idx.search(bed, k, **opts)
    for w in run.warnings:
        _err(f"Warning: {w}")
    # the answer first; storing it (a write transaction) comes after
    emit(run.table, fmt, out, title=f"{bed.name}: top {k}")
    if not quiet and run.table.num_rows == 0:
        _err(f"No records to compare with: the index is empty (add some: gidx ingest FILES -i {index})")
    if save:
        idx.save_queries([run])
    if not quiet:
        where = (f'; see: gidx sql "select * from query_results where query_id = {run.query_id}"'
                 if run.query_id else " (not stored)")
        _err(f"{run.mode} search in {run.elapsed_ms:.1f} ms; query id {run.query_id or '-'}{where}")


def _query_many(idx, inputs: list[Path], k: int, opts: dict, save: bool, threads: int, fmt, out,
                quiet: bool) -> None:
    errors: list = []
    with Bar("query", quiet or len(inputs) < 4 and not any(p.is_dir() for p in inputs)) as bar:
        table = idx.query_many(inputs, k, save=save, errors=errors, threads=threads, progress=bar, **opts)
    emit(table, fmt, out, title=f"top {k} per query")
    for label, e in errors:
        _err(f"Error: {e}")
    if not quiet:
        n = len({q for q in table.column("query").to_pylist()}) if table.num_rows else 0
        ids = sorted(set(table.column("query_id").to_pylist())) if save and table.num_rows else []
        stored = f"; stored as query ids {ids[0]}..{ids[-1]}" if ids else ""
        _err(f"{n} quer{'y' if n == 1 else 'ies'} answered, {len(errors)} failed{stored}")
    if errors:
        raise typer.Exit(2)


@app.command()
def seqpare(
    target: Annotated[
        Path, typer.Argument(metavar="TARGET", help="Target (database-side) BED file: the reference's first argument.")
    ],
    query_bed: Annotated[Path, typer.Argument(metavar="QUERY", help="Query BED file: the reference's second argument.")],
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """Exact seqpare similarity of two BED files (as `seqpare TARGET QUERY`).

    An empty file (or one with only header lines) is an empty set: S = 0 against a
    non-empty one, and nan (JSON null) when both are empty, as the reference gives."""
    import pyarrow as pa

    from gidx.bed import read_bed
    from gidx.seqpare import pair

    from .output import check_output

    check_output(fmt, out)
    r = pair(read_bed(target, allow_empty=True).intervals, read_bed(query_bed, allow_empty=True).intervals)
    emit(pa.table({"n_target": [r.n_t], "n_query": [r.n_q], "teo": [r.teo], "tc": [r.tc], "s": [r.s]}), fmt, out)


@app.command()
def truth(
    index: IndexOpt = DEFAULT_INDEX,
    top: Annotated[
        int, typer.Option("--top", metavar="K",
                          help="Keep only each record's K best neighbours (0 = every pair with S > 0).")
    ] = 0,
    candidates: Annotated[
        Optional[int], typer.Option(
            "--candidates", metavar="C",
            help="With --top: exact seqpare against each record's C nearest records by vector cosine (more "
                 "while they keep entering its top K, up to 4C), and against the others that interval counts "
                 "cannot rule out when few (default max(K, 50); 0 = against every record).")
    ] = None,
    quiet: QuietOpt = False,
    ray: RayOpt = None,
) -> None:
    """Compute exact seqpare ground truth into the catalog table `seqpare` (incremental, resumable).

    With --top K, each record is compared with its vector candidates (--candidates) and
    keeps its K best; its top K is *certified* (seqpare_progress.certified) when interval
    counts prove that no other record can enter it, else it is the exact top K of the
    records searched. A changed --top or --candidates starts over.

    With --ray, shards of records are searched on Ray workers (they must see the index
    folder at the same path); this process still writes every row, as without Ray."""
    from gidx.errors import GidxError

    if candidates is not None and not top:
        raise GidxError("--candidates C needs --top K")
    idx = open_index(index)
    with Bar("truth", quiet) as bar:
        rep = idx.truth(top_k=top, progress=bar, ray=ray, candidates=candidates)
    if not quiet:
        _err(f"Compared {rep.queries} record(s) ({rep.up_to_date} already up to date); "
             f"{rep.pairs:,} pairs stored in {rep.seconds:.2f} s")
        if top and rep.queries:
            how = (f"{rep.candidates} vector candidates each, {rep.searched:,} exact searches"
                   if rep.candidates else "every record searched")
            _err(f"Top {top}: {rep.certified} record(s) certified exact, {rep.uncertified} uncertified "
                 f"(the top K of the records searched; {how})")


@app.command()
def sql(
    statement: Annotated[str, typer.Argument(
        metavar="SQL", help="SQL to run on the catalog (DuckDB dialect), or .tables, or .schema [TABLE].")],
    index: IndexOpt = DEFAULT_INDEX,
    write: Annotated[bool, typer.Option("--write", help="Allow statements that change the catalog.")] = False,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
) -> None:
    """Run SQL on the catalog (read-only unless --write).

    `gidx sql .tables` lists the tables, `gidx sql ".schema intervals"` prints a
    table's CREATE TABLE with its columns (.schema alone: every table's). Interval
    coordinates are the columns chrom_start and chrom_end. `end` is an SQL keyword:
    as a name, quote it, "end" (in a shell: gidx sql 'select chrom_end as "end" from intervals').

    Several statements (select 1; select 2) run in one transaction and each result
    is printed: tables or TSV one after another with a blank line between, JSON as
    an array of results; --format parquet takes one statement."""
    from gidx.errors import GidxError
    from gidx.index import sql_statements

    from .output import check_output, emit_many

    check_output(fmt, out)
    n = len(sql_statements(statement)) if fmt == Format.parquet else 1
    if n > 1:
        raise GidxError(f"--format parquet writes one table: give one SQL statement (got {n}), "
                        "or use --format tsv or json")
    idx = open_index(index)
    emit_many(idx.sql_each(statement, write=write), fmt, out)


@app.command()
def info(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table, out: OutOpt = None) -> None:
    """Show the genome, encoder, counts and sizes on disk (TSV and Parquet: key, value rows)."""
    import json

    from .output import _write, check_output

    check_output(fmt, out)
    d = open_index(index).info()
    if fmt == Format.json:
        _write(json.dumps(d, indent=2) + "\n", out)
        return
    sizes = d.pop("bytes")  # printed last
    if fmt in (Format.tsv, Format.parquet):
        import pyarrow as pa

        rows = [(k, str(v)) for k, v in d.items()] + [(f"size {k}", str(v)) for k, v in sizes.items()]
        emit(pa.table({"key": [k for k, _ in rows], "value": [v for _, v in rows]}), fmt, out)
        return
    lines = [f"{key:16} {v:,}" if isinstance(v, int) else f"{key:16} {v}" for key, v in d.items()]
    lines += [f"{'size ' + key:16} {v / 1e6:,.2f} MB" for key, v in sizes.items()]
    _write("\n".join(lines) + "\n", out)


@app.command()
def ls(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table, out: OutOpt = None) -> None:
    """List the records."""
    from .output import check_output

    check_output(fmt, out)
    emit(open_index(index).ls(), fmt, out)


@app.command()
def rm(
    names: Annotated[list[str], typer.Argument(
        metavar="RECORD", help="Records to remove: names, or ids (as gidx ls shows them).")],
    index: IndexOpt = DEFAULT_INDEX,
    quiet: QuietOpt = False,
) -> None:
    """Remove records from the index (catalog, vectors, overlap structure).

    An argument of digits only is a record id, unless a record has it as its name."""
    idx = open_index(index)
    removed = idx.rm(_names_of(idx, names))
    if not quiet:
        _err(f"Removed {len(removed)} record(s)")


def _names_of(idx, args: list[str]) -> list[str]:
    """Record names for ``gidx rm`` arguments: a name as given; digits that name no record
    are an id, looked up in one read-only query. Unknown ids stay as given, so that
    ``Index.rm`` reports them as it reports unknown names."""
    digits = sorted({a for a in args if a.isdigit()})
    if not digits:
        return list(args)
    quoted = ", ".join(f"'{d}'" for d in digits)  # digits only: safe to inline
    rows = idx.sql(f"select id, name from records where name in ({quoted}) "
                   f"or id in ({', '.join(str(int(d)) for d in digits)})").to_pylist()
    names = {r["name"] for r in rows}
    by_id = {str(r["id"]): r["name"] for r in rows}
    return [a if a in names or not a.isdigit() else by_id.get(str(int(a)), a) for a in args]


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
def encoders(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table, out: OutOpt = None) -> None:
    """List the encoders of the index (sequence encoder, set encoders) and which are active."""
    from .output import check_output

    check_output(fmt, out)
    emit(open_index(index).sql(
        "select e.id, e.name, e.kind, e.dim, e.params, "
        "(e.id::varchar in (select value from settings where key in ('set_encoder_id', 'sequence_encoder_id'))) "
        "as active, e.created_at from encoders e order by e.id"), fmt, out)


@app.command()
def alias(
    pairs: Annotated[list[str], typer.Argument(metavar="ALIAS", help="NAME=GENOME_NAME pairs, e.g. chrM=chrmt.")],
    index: IndexOpt = DEFAULT_INDEX,
    quiet: QuietOpt = False,
) -> None:
    """Store chromosome-name aliases used when reading BED files."""
    idx = open_index(index)
    aliases = _parse_aliases(pairs)
    idx.add_aliases(aliases)
    if not quiet:
        for alias, name in aliases.items():
            _err(f"Stored alias {alias}={name} (genome {idx.genome.name})")


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
from .queries import queries_app; app.add_typer(queries_app, name="queries")  # noqa: E402,E702  (gidx queries ls|prune)
_train.register(app)
from . import serve as _serve; _serve.register(app)  # noqa: E402,E702  (gidx serve; typer-only imports)


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
