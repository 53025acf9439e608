"""The Index: one folder, four stores, one small API.

::

    idx/
      catalog.duckdb   records, intervals, genome, encoders, queries, results (SQL)
      vectors.lance/   set embeddings, one LanceDB table per set encoder
      segments/        the exact-seqpare overlap structure (immutable segments)
      tiles.zarr/      tile-embedding memo
      models/          trained M model checkpoints
      cache/           FASTA indexes and other rebuildable files

Write order makes every command crash-safe by construction: ids are reserved
first, then everything derived (vectors, overlap segments) is written, and
one catalog transaction makes the records visible last. A kill at any point
leaves orphans that nothing reads (reads are filtered by the catalog's record
ids) and that the next write cleans up; rerunning the command redoes the work.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .bed import BED_SUFFIXES, BedFile, is_bed_path, read_bed
from .catalog import Catalog
from .errors import GidxError, IndexLockedError, IndexStateError, InputError
from .genome import Genome
from .intervals import IntervalSet
from .sketch import PositionSketch, encoder_identity

if TYPE_CHECKING:
    from .queries import QueryRun
    from .tiling import Tiling

CATALOG = "catalog.duckdb"
VECTORS = "vectors.lance"
SEGMENTS = "segments"
TILES = "tiles.zarr"
MODELS = "models"
CACHE = "cache"
DEFAULT_INDEX = "gidx-index"
SNAPSHOT_RECHECK = 0.5  # seconds; see Index._snapshot
LOOKUP_CHUNK = 512  # files per catalog look-up during an ingest
MAINTAIN_EVERY = 16  # ingest batches between compactions

Progress = Callable[[int, int, str], None]  # (done, total, current item)


def default_index_path() -> Path:
    return Path(os.environ.get("GIDX_INDEX", DEFAULT_INDEX))


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def record_name_for(path: Path, root: Path | None) -> str:
    """Record name: path under the ingested folder (or the file name), minus BED suffixes."""
    rel = path.relative_to(root) if root is not None else Path(path.name)
    name = rel.as_posix()
    lower = name.lower()
    for suffix in (".gz", ".bgz"):
        if lower.endswith(suffix):
            name, lower = name[: -len(suffix)], lower[: -len(suffix)]
    for suffix in BED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def expand_paths(paths: Iterable[str | Path], not_bed: list[str] | None = None) -> list[tuple[Path, Path | None]]:
    """Files as given, folders searched recursively for BED files: (file, root folder or None).

    ``not_bed``: a list that collects the files of those folders that are not BED files (skipped)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = [f for f in sorted(p.rglob("*")) if f.is_file()]
            found = [(f, p) for f in inside if is_bed_path(f)]
            if not_bed is not None:
                not_bed += [str(f) for f in inside if not is_bed_path(f)]
            if not found:
                raise InputError([f"{p}: no BED files in this folder (looked for *.bed, *.narrowPeak, "
                                  "*.broadPeak, ... optionally .gz)"])
            out += found
        elif p.exists():
            out.append((p, None))
        else:
            raise InputError([f"{p}: no such file or folder"])
    return out


def ingest_inputs(paths: Iterable[str | Path], not_bed: list[str] | None = None) -> list[tuple[Path, str]]:
    """The files an ingest of ``paths`` reads, each with its record name.

    One path given: a folder's files are named by their path under the folder, a
    file by its file name. Several paths: every file is named by its path under
    the *common parent folder* of the paths given (of a file: its folder), so two
    different files always get two different names (``a/x.bed`` and ``b/x.bed``
    become ``a/x`` and ``b/x``; files of one folder keep their file names). Names
    lose the BED suffix (``.bed``, ``.narrowPeak``, ... and ``.gz``). A file
    reached twice (a folder and a file inside it) is read once. ``not_bed``: as
    :func:`expand_paths`.
    """
    paths = [Path(p) for p in paths]
    files = expand_paths(paths, not_bed)
    if len(paths) == 1:
        named = [(f, record_name_for(f, root)) for f, root in files]
    else:
        common = Path(os.path.commonpath([os.path.abspath(p if p.is_dir() else p.parent) for p in paths]))
        named = [(f, record_name_for(Path(os.path.abspath(f)), common)) for f, _ in files]
    seen: set[str] = set()
    out = []
    for f, nm in named:
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            out.append((f, nm))
    return out


def dot_command(query: str, conn=None) -> str:
    """The DuckDB CLI's ``.tables`` and ``.schema [TABLE]`` as SQL (``gidx sql``, ``Index.sql``);
    any text that does not start with '.' is returned unchanged, another dot-command is
    refused. ``conn``: a DuckDB connection to the catalog, to refuse ``.schema`` of an
    unknown table (without it, that answers no rows)."""
    words = query.strip().rstrip(";").split()
    if not words or not words[0].startswith("."):
        return query
    cmd, args = words[0].lower(), words[1:]
    if cmd == ".tables" and not args:
        return "select name from sqlite_master where type in ('table', 'view') order by name"
    if cmd == ".schema" and len(args) <= 1:
        where = "sql is not null"
        if args:
            table = args[0].strip('"').replace("'", "''")
            where += f" and lower(tbl_name) = lower('{table}')"
            if conn is not None and not conn.execute(f"select count(*) from sqlite_master where {where}").fetchone()[0]:
                raise GidxError(f"no such table: {args[0]} (.tables lists them)")
        # each table's CREATE TABLE, then its indexes
        return f"select sql from sqlite_master where {where} order by tbl_name, type = 'index', name"
    raise GidxError(f"{words[0]}: gidx sql knows the dot-commands .tables and .schema [TABLE]; "
                    "anything else is SQL")


def sql_statements(query: str) -> list[str]:
    """The statements of ``query``, split as DuckDB splits them (parsed, not run); a
    syntax error is a :class:`GidxError`. A dot-command (``.tables``) is one statement."""
    import duckdb

    if query.strip().startswith("."):
        return [query]
    with duckdb.connect() as conn:
        try:
            return [st.query for st in conn.extract_statements(query)]
        except Exception as e:
            raise GidxError(str(e).splitlines()[0]) from None


def parse_when(value: "str | datetime") -> datetime:
    """A point in time from a datetime, a date or an ISO 8601 string (``2024-06-01``,
    ``2024-06-01T12:00``, ``...+02:00``); an aware time is converted to naive UTC
    (how the catalog stores times)."""
    from datetime import date

    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise GidxError(f"{value!r} is not an ISO date or date-time "
                            "(e.g. 2024-06-01 or 2024-06-01T12:00)") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        when = datetime(value.year, value.month, value.day)
    if not isinstance(when, datetime):
        raise GidxError(f"{value!r} is not a date or date-time")
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


def _bounded_map(pool, fn, items, ahead: int):
    """``pool.map(fn, items)`` in order, with at most ``ahead`` results computed ahead of
    the consumer (``Executor.map`` submits every item at once, so its results pile up
    in memory when the consumer is slower)."""
    from collections import deque

    it = iter(items)
    window = deque(pool.submit(fn, x) for x in itertools.islice(it, ahead))
    try:
        while window:
            got = window.popleft().result()
            for x in itertools.islice(it, 1):
                window.append(pool.submit(fn, x))
            yield got
    finally:
        for f in window:
            f.cancel()


PROCESS_PARSE_MIN_FILES = 256  # below this, an ingest parses in threads (worker start-up ~0.5 s)


def worker_processes(n_items: int, min_items: int, env: str) -> int:
    """Worker processes for a job of ``n_items`` (0: use threads): the CPUs this process
    may use, from ``min_items`` items on and when there are several; the environment
    variable ``env`` overrides it."""
    value = os.environ.get(env)
    if value is not None:
        if not value.strip().isdigit():
            raise GidxError(f"{env} must be a whole number of processes (0: threads), got {value!r}")
        return int(value)
    if n_items < min_items:
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cpus if cpus > 1 else 0


def process_map(fn, items, workers: int, ahead: int, initializer=None, initargs=()):
    """``_bounded_map`` over ``workers`` spawned processes (spawn, not fork: this process
    has DuckDB, LanceDB and BLAS threads); ``initializer(*initargs)`` runs once in each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
                             initargs=initargs) as procs:
        yield from _bounded_map(procs, fn, items, ahead)


def _process_parse(files, genome, aliases, skip_unknown_chroms, encoder, workers: int, per_task: int = 16):
    """``(BedFile or InputError, vector or None, None)`` per file, in order, parsed (and
    sketched) by ``workers`` spawned processes, a bounded number of tasks in flight.
    The same worker function as ``--ray`` (:func:`gidx.distributed._parse_embed`)."""
    from .distributed import files_for_workers, parse_spec, unpack_parsed

    spec = parse_spec(genome, aliases, skip_unknown_chroms, encoder)
    tasks = ((c, spec) for c in files_for_workers(files, per_task))
    for results, _ in process_map(_parse_embed_args, tasks, workers, ahead=max(4 * workers, 64)):
        for got, vec in unpack_parsed(results):
            yield got, vec, None


def _parse_embed_args(args):
    from .distributed import _parse_embed

    return _parse_embed(*args)


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    rejected: list[tuple[str, InputError]] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # names (also in added) whose older version was replaced
    warnings: list[str] = field(default_factory=list)
    not_bed: list[str] = field(default_factory=list)  # files in the folders given that are not BED files (skipped)
    intervals: int = 0
    seconds: float = 0.0


class Index:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.catalog = Catalog(self.path / CATALOG)
        self._genome: Genome | None = None
        self._vectors = None
        self._snap: tuple | None = None  # (catalog signature, fingerprint, snapshot)
        self._generation = 0
        self._checked = 0.0  # when the catalog was last looked into for a changed snapshot
        self.search_threads: int | None = None  # threads per exact search (None: the cores)
        self._lock = threading.Lock()
        self._overlap: tuple | None = None
        self._memo = None
        self._tiling = None
        self._log = None

    # ---- lifecycle ------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        fasta: str | Path | None = None,
        chrom_sizes: str | Path | None = None,
        genome_name: str | None = None,
        seed: int = 0,
        sketch: PositionSketch | None = None,
        aliases: dict[str, str] | None = None,
        encoder: str = "kmer",
        tiling: "Tiling | None" = None,
    ) -> "Index":
        path = Path(path)
        if (fasta is None) == (chrom_sizes is None):
            raise GidxError("give exactly one of a genome FASTA (--genome) or a chrom.sizes file (--chrom-sizes)")
        if (path / CATALOG).exists():
            raise GidxError(f"{path}: an index already exists here")
        genome = (
            Genome.from_fasta(fasta, genome_name, cache_dir=path / CACHE)
            if fasta is not None
            else Genome.from_chrom_sizes(chrom_sizes, genome_name, seed)
        )
        fresh = not path.exists()
        try:
            for sub in (MODELS, SEGMENTS, CACHE):
                (path / sub).mkdir(parents=True, exist_ok=True)
            self = cls(path)
            from .encoders import load_encoder
            from .tiling import Tiling

            kind, sep, arg = encoder.partition(":")
            if kind.strip().lower() == "hyenadna" and arg:  # the checkpoint folder, wherever gidx runs from
                encoder = f"hyenadna:{Path(arg).expanduser().resolve()}"
            seq_encoder = load_encoder(encoder)
            tiling = tiling or Tiling()
            try:
                tiling.require_max_size(seq_encoder.max_len)
            except ValueError as e:
                raise GidxError(str(e)) from None
            self._initialise(genome, sketch or PositionSketch(), encoder, seq_encoder, tiling)
        except BaseException:
            if fresh:  # leave nothing half-made behind
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            raise
        if aliases:
            self.add_aliases(aliases)
        return self

    def _initialise(self, genome: Genome, sketch: PositionSketch, encoder_spec: str, seq_encoder, tiling) -> None:
        from sqlalchemy import text

        self.catalog.ensure_schema(create=True)
        with self.catalog.connect(write=True) as conn:
            gid = conn.execute(text(
                "insert into genomes (name, kind, source, seed, digest, n_chroms, total_bp, spec, created_at) "
                "values (:n, :k, :s, :seed, :d, :nc, :bp, :spec, :t) returning id"
            ), dict(n=genome.name, k=genome.kind, s=genome.source, seed=genome.seed, d=genome.digest,
                    nc=len(genome.names), bp=genome.total_bp, spec=genome.to_json(), t=_now())).scalar()
            conn.execute(text("insert into chromosomes values (:g, :c, :n, :l)"),
                         [dict(g=gid, c=i, n=n, l=int(l)) for i, (n, l) in enumerate(zip(genome.names, genome.lengths_list))])
            eid = self._register_encoder(conn, sketch.name, "set", sketch.params(), sketch.dim)
            sid = self._register_encoder(conn, seq_encoder.name, "sequence",
                                         {"spec": encoder_spec, "identity": seq_encoder.identity()}, seq_encoder.dim)
            tid = conn.execute(text(
                "insert into tilings (identity, params, created_at) values (:i, :p, :t) returning id"
            ), dict(i=encoder_identity("tiling", tiling.params()), p=json.dumps(tiling.params()), t=_now())).scalar()
            conn.execute(text("insert into settings values ('genome_id', :g), ('set_encoder_id', :e), "
                              "('sequence_encoder_id', :s), ('tiling_id', :t)"),
                         dict(g=str(gid), e=str(eid), s=str(sid), t=str(tid)))

    @classmethod
    def open(cls, path: str | Path, prefetch: bool = False) -> "Index":
        """Open an index (an older catalog schema is upgraded). ``prefetch``: also read
        what queries need (records, encoder, genome) in the same transaction."""
        path = Path(path)
        if not (path / CATALOG).exists():
            raise IndexStateError(f"{path}: no gidx index here (create one with: gidx init {path} --chrom-sizes FILE)")
        self = cls(path)
        sig = self.catalog.signature()
        self.catalog.ensure_schema(then=(lambda conn: self._read_snapshot(conn, sig)) if prefetch else None)
        return self

    @staticmethod
    def _register_encoder(conn, name: str, kind: str, params: dict, dim: int) -> int:
        from sqlalchemy import text

        ident = encoder_identity(name, params)
        eid = conn.execute(text("select id from encoders where identity = :i"), dict(i=ident)).scalar()
        if eid is None:
            eid = conn.execute(text(
                "insert into encoders (name, kind, identity, params, dim, created_at) "
                "values (:n, :k, :i, :p, :d, :t) returning id"
            ), dict(n=name, k=kind, i=ident, p=json.dumps(params, sort_keys=True), d=dim, t=_now())).scalar()
        return int(eid)

    # ---- state read from the catalog --------------------------------------

    @staticmethod
    def _settings(conn) -> dict[str, str]:
        """The ``settings`` table, read on a :meth:`Catalog.duck` connection."""
        return dict(conn.execute("select key, value from settings").fetchall())

    @property
    def genome(self) -> Genome:
        if self._genome is None:
            with self.catalog.duck() as conn:
                self._genome = self._genome_of(conn)
        return self._genome

    def _genome_of(self, conn) -> Genome:
        gid = self._settings(conn)["genome_id"]
        spec = conn.execute("select spec from genomes where id = ?", [int(gid)]).fetchall()[0][0]
        return Genome.from_json(spec, cache_dir=self.path / CACHE)

    @property
    def genome_id(self) -> int:
        with self.catalog.duck() as conn:
            return int(self._settings(conn)["genome_id"])

    def aliases(self) -> dict[str, str]:
        with self.catalog.duck() as conn:
            return dict(conn.execute("select alias, name from chrom_aliases").fetchall())

    def add_aliases(self, aliases: dict[str, str]) -> None:
        """Map chromosome names used by BED files onto the genome's names (e.g. ``chrM=chrmt``)."""
        g = self.genome
        bad = [f"{a}={n}" for a, n in aliases.items() if n not in g.code_of]
        if bad:
            raise GidxError(f"chromosome alias target not in genome {g.name}: {', '.join(bad)}")
        with self.catalog.duck(write=True) as conn:
            gid = int(self._settings(conn)["genome_id"])
            for a, n in aliases.items():
                conn.execute("delete from chrom_aliases where genome_id = ? and alias = ?", [gid, a])
                conn.execute("insert into chrom_aliases values (?, ?, ?)", [gid, a, n])

    def set_encoder(self):
        """The active set encoder (position sketch until a trained model is activated)."""
        with self.catalog.duck() as conn:
            return self._set_encoder(conn)

    def _set_encoder(self, conn):
        eid = int(self._settings(conn)["set_encoder_id"])
        name, params = conn.execute("select name, params from encoders where id = ?", [eid]).fetchall()[0]
        if name == "sketch":
            return eid, PositionSketch.from_params(json.loads(params))
        if name == "model":  # a trained M model (gidx train)
            from .model import load_set_encoder

            return eid, load_set_encoder(self, json.loads(params))
        raise IndexStateError(f"unknown set encoder {name!r} in catalog")

    def sequence_encoder(self, **options):
        """The index's sequence encoder (``kmer`` or ``hyenadna:FOLDER``), checked
        against the identity recorded at ``gidx init`` (a changed checkpoint would
        silently mix embeddings of two models)."""
        from .encoders import load_encoder

        params = self._sequence_encoder_params()
        enc = load_encoder(params["spec"], **options)
        if enc.identity() != params["identity"]:
            raise IndexStateError(f"sequence encoder {params['spec']!r} is not the one this index was built with "
                                  "(its configuration or weights changed)")
        return enc

    def _sequence_encoder_params(self) -> dict:
        with self.catalog.duck() as conn:
            sid = int(self._settings(conn)["sequence_encoder_id"])
            return json.loads(conn.execute("select params from encoders where id = ?", [sid]).fetchall()[0][0])

    def _sequence_encoder_spec(self) -> str:
        return self._sequence_encoder_params()["spec"]

    def tiling(self):
        """The index's tiling (fixed at ``gidx init``: read once per Index)."""
        if self._tiling is None:
            self._tiling = self._read_tiling()
        return self._tiling

    def _read_tiling(self):
        from .tiling import SCHEME, Tiling

        with self.catalog.duck() as conn:
            tid = int(self._settings(conn)["tiling_id"])
            params = json.loads(conn.execute("select params from tilings where id = ?", [tid]).fetchall()[0][0])

        if params.pop("scheme", SCHEME) != SCHEME:
            raise IndexStateError(f"this index's tiling scheme is not {SCHEME!r}: it was made by another gidx version")
        return Tiling(**params)

    def memo(self, encoder=None, **options):
        """The tile memo of this index's genome, tiling and sequence encoder (kept open
        when asked for with default options: its chunk cache is what makes it fast)."""
        from .memo import open_index_memo

        if encoder is None and not options and self._memo is not None:
            return self._memo
        memo = open_index_memo(self.path, self.genome, self.tiling(), encoder or self.sequence_encoder(), **options)
        if encoder is None and not options:
            self._memo = memo
        return memo

    @staticmethod
    def vector_table(encoder_id: int, encoder) -> str:
        return f"{encoder.name}_{encoder_id}"

    @property
    def vectors(self):
        if self._vectors is None:
            from .vectors import VectorStore

            self._vectors = VectorStore(self.path / VECTORS)
        return self._vectors

    def record_ids(self) -> set[int]:
        with self.catalog.duck() as conn:
            return {int(r[0]) for r in conn.execute("select id from records").fetchall()}

    # ---- reading BED against this index's genome ---------------------------

    def read(self, path: str | Path, skip_unknown_chroms: bool = False) -> BedFile:
        return read_bed(path, self.genome, aliases=self._snapshot()["aliases"], skip_unknown_chroms=skip_unknown_chroms)

    # What a snapshot depends on, cheap to read: when only other tables changed
    # (a saved query, truth rows) the snapshot is kept without re-reading the records.
    _FINGERPRINT = ("select (select count(*) from records), (select coalesce(sum(id), 0) from records), "
                    "(select coalesce(max(id), 0) from records), (select string_agg(key || '=' || value, ',' "
                    "order by key) from settings), (select count(*) from chrom_aliases), "
                    "(select coalesce(string_agg(alias || '=' || name, ',' order by alias), '') from chrom_aliases)")

    def _snapshot(self, stale_ok: bool = False) -> dict:
        """What a query needs from the catalog, read in one transaction and reused
        until the catalog changes (checked with a stat, no connection). Safe to call
        from several threads: a snapshot is replaced whole, never changed.

        ``stale_ok``: a server's mode. The catalog changes with every stored query, so
        a changed file is looked into at most every ``SNAPSHOT_RECHECK`` seconds; and
        while another process holds the catalog, the snapshot we have answers instead
        of waiting. Records ingested meanwhile show up within that time."""
        sig = self.catalog.signature()
        snap = self._snap
        if snap is not None and (snap[0] == sig or stale_ok and time.monotonic() - self._checked < SNAPSHOT_RECHECK):
            return snap[2]
        self._checked = time.monotonic()
        try:
            with self.catalog.duck(timeout=0.0 if stale_ok and snap is not None else None) as conn:
                return self._read_snapshot(conn, sig)
        except IndexLockedError:
            return snap[2]

    def _read_snapshot(self, conn, sig) -> dict:
        snap = self._snap
        fingerprint = conn.execute(self._FINGERPRINT).fetchall()[0]
        if snap is not None and snap[1] == fingerprint:
            self._snap = (sig, fingerprint, snap[2])
            return snap[2]
        if self._genome is None:  # read in this transaction: one connection less
            self._genome = self._genome_of(conn)
        eid, encoder = self._set_encoder(conn)
        rec = conn.sql("select id, name, n_intervals from records order by id").to_arrow_table()
        aliases = dict(conn.execute("select alias, name from chrom_aliases").fetchall())
        ids = rec.column("id").to_numpy().astype(np.int64)
        with self._lock:
            self._generation += 1
            data = {"generation": self._generation, "encoder_id": eid, "encoder": encoder, "aliases": aliases,
                    # columns aligned with the sorted ids, not dicts: no Python object per
                    # record (10^6 records read in well under a second)
                    "ids": ids, "names": rec.column("name").combine_chunks(),
                    "n_intervals": rec.column("n_intervals").to_numpy()}
        self._snap = (sig, fingerprint, data)
        return data

    # ---- ingest ------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        name: str | None = None,
        skip_unknown_chroms: bool = False,
        replace: bool = False,
        progress: Progress | None = None,
        batch_intervals: int = 4_000_000,
        batch_records: int = 2048,
        ray: str | None = None,
    ) -> IngestReport:
        """Add BED files (folders are searched recursively), one record per file.

        Records are named as :func:`ingest_inputs` says (``name``: the name of a
        single input file). Idempotent: a file whose name is indexed with the same
        intervals is skipped, and so is a file already indexed from the same path
        with the same intervals under another name (its name changed only because
        other paths were given this time). A file whose name is indexed with
        *different* intervals is rejected unless ``replace``: then the new version
        replaces the old record atomically (see :meth:`_commit_batch`). Files
        without intervals become records with 0 intervals, with a warning.

        A rejected file is reported and skipped; the others still go in.

        ``ray``: parse (and embed) the files on Ray workers (``"auto"`` or a cluster
        address; see :mod:`gidx.distributed`): the files must be at the same paths on
        every worker. This process still commits every batch as without Ray, in input
        order: the same crash guarantees, the same index.
        """
        t0 = time.perf_counter()
        not_bed: list[str] = []
        files = ingest_inputs(paths, not_bed)
        if name is not None and len(files) != 1:
            raise GidxError("--name needs exactly one input file")
        if name is not None:
            files = [(files[0][0], name)]
        genome, aliases = self.genome, self.aliases()
        eid, encoder = self.set_encoder()
        # names given to more than one file of this ingest: the only ones whose
        # (path, content hash) must be remembered while the files stream past
        from collections import Counter

        repeated = {nm for nm, c in Counter(nm for _, nm in files).items() if c > 1}
        in_this: dict[str, tuple[str, str]] = {}  # repeated name -> (path, content hash) seen first
        report = IngestReport(not_bed=not_bed)
        batch: list[tuple[str, BedFile, str, int | None]] = []
        batch_vecs: list[np.ndarray | None] = []  # vectors embedded by Ray workers (None: embed here)
        batch_n = 0  # intervals in the batch

        def flush() -> None:
            nonlocal batch_n
            if batch:
                vecs = np.stack(batch_vecs) if all(v is not None for v in batch_vecs) else None
                lost = self._commit_batch(batch, eid, encoder, vecs)
                for nm, bf, _, old in batch:
                    if nm in lost:
                        report.skipped.append((str(bf.path), lost[nm]))
                        continue
                    report.added.append(nm)
                    if old is not None:
                        report.replaced.append(nm)
                    report.intervals += len(bf.intervals)
                batch.clear()
                batch_vecs.clear()
                batch_n = 0

        sketch_here = isinstance(encoder, PositionSketch)

        def parse(item: tuple[Path, str]) -> tuple[BedFile | InputError, np.ndarray | None, str | None]:
            """(file, its set vector, its content hash), in a worker thread: the C
            sketch kernel, hashing and numpy release the GIL."""
            try:
                bf = read_bed(item[0], genome, aliases=aliases, skip_unknown_chroms=skip_unknown_chroms,
                              allow_empty=True)
            except InputError as e:
                return e, None, None
            vec = encoder.embed_one(bf.intervals, genome.lengths) if sketch_here else None
            bf.stats = bf.record_stats(genome.names)
            return bf, vec, bf.stats["content_hash"]

        def reject(path: Path, problem: str) -> None:
            report.rejected.append((str(path), InputError([f"{path}: {problem}"])))

        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)))
        procs = worker_processes(len(files), PROCESS_PARSE_MIN_FILES, "GIDX_PARSE_PROCESSES") if ray is None else 0
        if procs:
            # many files: parse and sketch them in worker processes (parsing holds the
            # GIL for much of its time, so threads would queue on it behind the commits)
            parsed = _process_parse(files, genome, aliases, skip_unknown_chroms, encoder, procs)
        elif ray is None:
            # parse the next files while this one is embedded and stored (decompression,
            # pyarrow's CSV reader and numpy release the GIL); a bounded window ahead, so
            # memory does not grow with the number of files
            parsed = _bounded_map(pool, parse, files, ahead=64)
        else:  # parsed (and embedded) on Ray workers, consumed in input order
            from .distributed import ingest_results

            parsed = ((bf, vec, None) for bf, vec in
                      ingest_results(ray, files, genome, aliases, skip_unknown_chroms, encoder))
        stream = zip(files, parsed)
        done = batches = 0
        while True:
            # the catalog is asked about a chunk of files at a time (their names and
            # paths), never read whole: ingest memory does not grow with the index
            chunk = list(itertools.islice(stream, LOOKUP_CHUNK))
            if not chunk:
                break
            by_name, by_file = self._held(chunk)
            for (path, nm), (bf, vec, h) in chunk:
                if progress:
                    progress(done, len(files), str(path))
                done += 1
                if isinstance(bf, InputError):
                    report.rejected.append((str(path), bf))
                    continue
                report.warnings += bf.warnings
                if bf.stats is None:
                    bf.stats = bf.record_stats(genome.names)
                h = bf.stats["content_hash"]
                if nm in in_this:
                    other, other_h = in_this[nm]
                    if other_h == h:
                        report.skipped.append((str(path), f"same intervals as {other}, ingested as {nm!r} just now"))
                    else:
                        reject(path, f"record name {nm!r} is also the name of {other} in this ingest (the BED "
                                     "suffix is not part of a name); ingest one of them on its own with --name")
                    continue
                old = by_name.get(nm)
                if old is not None and old[1] == h:
                    report.skipped.append((str(path), f"already indexed as {nm!r}"))
                    continue
                if old is not None and not replace:
                    reject(path, f"record {nm!r} is already indexed with different intervals; "
                                 "rerun with --replace to swap in this version (or pick another name with --name)")
                    continue
                same_file = by_file.get((bf.stats["source_path"], h))
                if old is None and name is None and same_file is not None:
                    report.skipped.append((str(path), f"already indexed as {same_file!r} (same file, same intervals)"))
                    continue
                if bf.empty_reason:
                    report.warnings.append(f"{path}: {bf.empty_reason}; stored as record {nm!r} with 0 intervals "
                                           "(seqpare S = 0 against every other set)")
                if nm in repeated:
                    in_this[nm] = (str(path), h)
                batch.append((nm, bf, h, old[0] if old is not None else None))
                batch_vecs.append(vec)
                batch_n += len(bf.intervals)
                if len(batch) >= batch_records or batch_n >= batch_intervals:
                    flush()
                    batches += 1
                    if batches % MAINTAIN_EVERY == 0:  # a long ingest keeps few overlap segments
                        self.maintain(final=False)
        flush()
        pool.shutdown()
        if progress:
            progress(len(files), len(files), "")
        if report.added:
            self.maintain()
        report.seconds = time.perf_counter() - t0
        return report

    def _held(self, chunk) -> tuple[dict[str, tuple[int, str]], dict[tuple[str, str], str]]:
        """What the catalog holds for a chunk of ``((path, name), parsed)`` of an ingest:
        ``{name: (id, content hash)}`` for their names and ``{(source path, content
        hash): name}`` for their paths."""
        import pyarrow as pa

        names = pa.table({"name": [nm for (_, nm), _ in chunk]})
        paths = pa.table({"source_path": [got[0].stats["source_path"] if getattr(got[0], "stats", None)
                                          else str(p.resolve()) for (p, _), got in chunk]})
        with self.catalog.duck() as conn:
            conn.register("gidx_names", names)
            conn.register("gidx_paths", paths)
            by_name = {nm: (int(rid), h) for rid, nm, h in conn.execute(
                "select id, name, content_hash from records where name in (select name from gidx_names)").fetchall()}
            by_file = {(src, h): nm for nm, h, src in conn.execute(
                "select name, content_hash, source_path from records "
                "where source_path in (select source_path from gidx_paths)").fetchall()}
        return by_name, by_file

    def maintain(self, repair: bool = False, final: bool = True) -> None:
        """Keep the derived stores in shape after records came or went: merge overlap
        segments as :meth:`OverlapIndex.plan_compaction` says (bounded work and
        memory, whatever the index size), and let :meth:`VectorStore.maintain` keep each
        vector table (mirror, fragments, ANN index) as its policy says.
        ``repair``: also rewrite every segment that holds rows of records that no
        longer exist (``gidx check --repair``). ``final=False`` in the middle of a long
        ingest: the ANN index folds new rows in only once they are a fair share of it."""
        from .seqpare import DEAD_FRACTION, OverlapIndex

        seg_dir = self.path / SEGMENTS
        live = np.fromiter(self.record_ids(), np.int64)
        for _ in range(8):  # a merge may complete the next tier's group
            if not seg_dir.exists():
                break
            opened = OverlapIndex.open(seg_dir, live, threads=1)
            groups = OverlapIndex.plan_compaction(seg_dir, live, dead_fraction=0.0 if repair else DEAD_FRACTION,
                                                  index=opened)
            if not groups:
                break
            for group in groups:
                OverlapIndex.compact(seg_dir, live, segments=group, index=opened)
            del opened
        for table in self.vectors.tables():  # mirrors, LanceDB fragments, the ANN index
            self.vectors.maintain(table, live, final=final)

    def overlap(self, live: set[int] | None = None):
        """The exact-seqpare overlap structure over the live records (``live``: record
        ids; default the catalog's).

        Kept open between queries while neither the catalog nor the segment folder
        changes (segments are immutable; the catalog decides which records live)."""
        if live is None:
            return self._overlap_of(np.fromiter(self.record_ids(), np.int64), None)
        return self._overlap_of(np.fromiter(live, np.int64), None)

    def _overlap_of(self, live: np.ndarray, generation: int | None):
        from .seqpare import SEGMENT_PREFIX, OverlapIndex

        seg_dir = self.path / SEGMENTS
        names = tuple(sorted(n for n in os.listdir(seg_dir) if n.startswith(SEGMENT_PREFIX))) \
            if seg_dir.exists() else ()
        # a snapshot's generation names its live set (sorting 10^5 ids per query would
        # cost more than the re-rank); without one, compare the ids
        if generation is None:
            live = np.unique(live)
            key = (names, live.tobytes())
        else:
            key = (names, generation)
        cached = self._overlap
        if cached is None or cached[0] != key:
            if generation is not None:
                live = np.unique(live)
            ov = OverlapIndex.open(seg_dir, live, threads=self.search_threads)
            lacking = len(live) - len(ov.record_ids)
            if lacking:  # exact scores would silently miss records: refuse instead
                raise IndexStateError(f"{self.path}: the overlap structure lacks {lacking} record(s); "
                                      "run: gidx check --repair")
            cached = self._overlap = (key, ov)
        return cached[1]

    def truth(self, top_k: int = 0, progress: Progress | None = None, ray: str | None = None,
              candidates: int | None = None):
        """Compute exact seqpare ground truth into the catalog (incremental, resumable).
        ``top_k``: keep each record's K best (0: every pair with S > 0); ``candidates``:
        with ``top_k``, how many vector candidates each record's exact search starts from
        (None: the default for K; 0: search every record; see :mod:`gidx.truth`).
        ``ray``: the searches run on Ray workers (``"auto"`` or a cluster address)."""
        from .truth import compute_truth

        return compute_truth(self, top_k=top_k, progress=progress, ray=ray, candidates=candidates)

    def _reserve_ids(self, n: int) -> list[int]:
        from sqlalchemy import text

        with self.catalog.connect(write=True) as conn:
            return [int(r[0]) for r in conn.execute(text(f"select nextval('record_id_seq') from range({n})"))]

    def _commit_batch(self, batch: list[tuple[str, BedFile, str, int | None]], eid: int, encoder,
                      vecs: np.ndarray | None = None) -> dict[str, str]:
        """Store a batch of ``(name, file, content hash, id of the record it replaces or None)``;
        returns {name: why} for records another process stored first.

        A replacement is a new record (a new id) that takes the old one's name: its
        vectors and overlap segment are written first like any new record's, then one
        catalog transaction deletes the old record (intervals, truth rows both ways,
        truth progress, query results) and inserts the new one. A crash before that
        commit leaves the old record (the new one's derived data are orphans); after
        it, the new one (the old one's vectors and segment rows are orphans, removed
        right after the commit or by the next maintenance / ``gidx check --repair``).
        Readers never see both or neither: they take the live ids from the catalog.
        The new id is above every truth progress mark, so ``gidx truth`` compares it
        with everyone and everyone with it.

        ``vecs``: the batch's set vectors when already embedded (in ingest's parse
        threads, or by Ray workers).
        """
        sets = [bf.intervals for _, bf, _, _ in batch]
        if vecs is None:
            vecs = encoder.embed(sets, self.genome.lengths)
        ids = self._reserve_ids(len(batch))
        # 1. derived data first (orphans if we die before the catalog commit); the
        # overlap segment is sorted and written in a thread (numpy's sorts and fsync
        # release the GIL) while the vectors go to LanceDB and the catalog rows are built
        from concurrent.futures import ThreadPoolExecutor

        from .seqpare import OverlapIndex

        with ThreadPoolExecutor(1) as side:
            segment = side.submit(
                OverlapIndex.write_segment,
                self.path / SEGMENTS,
                np.repeat(np.asarray(ids, dtype=np.int64), [len(s) for s in sets]),
                np.concatenate([s.chrom for s in sets]),
                np.concatenate([s.start for s in sets]),
                np.concatenate([s.end for s in sets]),
                records=np.asarray(ids, dtype=np.int64),
            )
            self.vectors.add(self.vector_table(eid, encoder), np.asarray(ids), vecs)
            return self._store_batch(batch, ids, sets, before_commit=segment.result)

    def _store_batch(self, batch, ids: list[int], sets: list[IntervalSet], before_commit) -> dict[str, str]:
        """Step 2 of :meth:`_commit_batch`: the catalog transaction that makes a batch's
        records visible; ``before_commit()`` returns once the derived data are written
        (raising if they could not be)."""
        import pyarrow as pa

        # 2. the catalog commit makes the records visible
        g = self.genome
        stats = [bf.stats or bf.record_stats(g.names) for _, bf, _, _ in batch]
        now = _now()
        rec = pa.table({
            "id": pa.array(ids, pa.int32()),
            "name": [nm for nm, _, _, _ in batch],
            "source_path": [st["source_path"] for st in stats],
            "content_hash": [h for _, _, h, _ in batch],
            "genome_id": pa.array([self.genome_id] * len(batch), pa.int32()),
            "n_intervals": pa.array([len(s) for s in sets], pa.int64()),
            "bp_covered": pa.array([st["bp_covered"] for st in stats], pa.int64()),
            "n_chromosomes": pa.array([st["n_chromosomes"] for st in stats], pa.int32()),
            "chromosomes": [st["chromosomes"] for st in stats],
            "format": [bf.format for _, bf, _, _ in batch],
            "ingested_at": pa.array([now] * len(batch), pa.timestamp("us")),
            "extra": [json.dumps({"columns": bf.n_columns, "header_lines": bf.header_lines,
                                  "file_bytes": st["file_bytes"], "skipped_chroms": bf.skipped_chroms})
                      for (_, bf, _, _), st in zip(batch, stats)],
        })
        names = pa.array(g.names)
        iv = pa.table({
            "record_id": pa.array(np.concatenate([np.full(len(s), i, np.int32) for i, s in zip(ids, sets)])),
            "i": pa.array(np.concatenate([np.arange(len(s), dtype=np.int32) for s in sets])),
            "chrom": pa.DictionaryArray.from_arrays(pa.array(np.concatenate([s.chrom for s in sets]).astype(np.int32)),
                                                    names).cast(pa.string()),
            "chrom_start": pa.array(np.concatenate([s.start for s in sets]).astype(np.int64)),
            "chrom_end": pa.array(np.concatenate([s.end for s in sets]).astype(np.int64)),
        })
        lost: dict[str, str] = {}
        keep: list[int] = []
        gone: list[int] = []
        before_commit()
        with self.catalog.connect(write=True) as conn:
            raw = self.catalog.raw(conn)
            # another process may have stored these names since we looked: decide again
            # under the write lock, from what the catalog holds now
            batch_names = [nm for nm, _, _, _ in batch]
            raw.register("gidx_batch_names", pa.table({"name": batch_names}))
            now_held = {nm: (int(rid), h) for rid, nm, h in raw.execute(
                "select id, name, content_hash from records where name in (select name from gidx_batch_names)"
            ).fetchall()}
            raw.unregister("gidx_batch_names")
            for rid, (nm, _, h, old) in zip(ids, batch):
                held = now_held.get(nm)
                if held is None:
                    keep.append(rid)
                elif held[1] == h:
                    lost[nm] = f"already indexed as {nm!r} (by a concurrent ingest)"
                elif old is None:
                    lost[nm] = (f"record {nm!r} was stored with different intervals by a concurrent ingest; "
                                "rerun with --replace to swap in this version")
                else:  # replace whatever version holds the name now
                    keep.append(rid)
                    gone.append(held[0])
            self._forget_records(raw, gone)
            if keep:
                kept = ",".join(str(int(i)) for i in keep)
                raw.register("gidx_new_records", rec)
                raw.register("gidx_new_intervals", iv)
                raw.execute(f"insert into records by name select * from gidx_new_records where id in ({kept})")
                raw.execute(f"insert into intervals by name select * from gidx_new_intervals where record_id in ({kept})")
                raw.unregister("gidx_new_records")
                raw.unregister("gidx_new_intervals")
        if gone:  # committed: the old versions' vectors are orphans now, of every set encoder
            for t in self.vectors.tables():
                self.vectors.delete(t, gone)
        return lost

    @staticmethod
    def _forget_records(raw, ids: list[int]) -> None:
        """Delete records and everything of theirs from the catalog, inside the caller's
        transaction: intervals, query results, seqpare rows in both directions and truth
        progress. A record that kept only its top K truth rows (``gidx truth --top K``)
        and had one of these among them has lost a neighbour that an incremental run
        cannot bring back (it only looks at newer ids): its progress is reset, so the
        next ``gidx truth`` recomputes it against everyone."""
        if not ids:
            return
        inl = ",".join(str(int(i)) for i in ids)
        raw.execute("delete from seqpare_progress where top_k > 0 and record_id in "
                    f"(select query_id from seqpare where target_id in ({inl}))")
        for tbl, col in (("intervals", "record_id"), ("query_results", "record_id"), ("seqpare", "query_id"),
                         ("seqpare", "target_id"), ("seqpare_progress", "record_id"), ("records", "id")):
            raw.execute(f"delete from {tbl} where {col} in ({inl})")

    # ---- query -------------------------------------------------------------

    def search(
        self,
        query: str | Path | IntervalSet,
        k: int = 20,
        *,
        rerank: int | None = 200,
        exact: bool = False,
        name: str | None = None,
        skip_unknown_chroms: bool = False,
        stale_ok: bool = False,
        source: str | None = None,
    ) -> "QueryRun":
        """Rank records by similarity to a query; nothing is stored (see :meth:`query`).

        ``stale_ok``: while another process holds the catalog, rank against the
        records of the last snapshot instead of waiting (a server does). ``source``:
        what to record as the query's origin (default: the file's absolute path)."""
        import pyarrow as pa

        from .queries import QueryRun

        t0 = time.perf_counter()
        if k < 1:
            raise GidxError("k must be at least 1")
        if rerank is not None and rerank < 1:
            raise GidxError("--rerank P needs P >= 1")
        snap = self._snapshot(stale_ok)
        warnings: list[str] = []
        if isinstance(query, IntervalSet):
            qset, qpath = query, "<intervals>"
        else:
            bf = read_bed(query, self.genome, aliases=snap["aliases"], skip_unknown_chroms=skip_unknown_chroms)
            qset, qpath, warnings = bf.intervals, source or str(Path(query).resolve()), bf.warnings
        eid, encoder, names, n_iv, live = (snap["encoder_id"], snap["encoder"], snap["names"], snap["n_intervals"],
                                           snap["ids"])
        qvec = encoder.embed([qset], self.genome.lengths)[0]
        table_name = self.vector_table(eid, encoder)
        exact_s: dict[int, float] = {}
        if exact:
            res = self._overlap_of(live, snap["generation"]).search(qset)
            order = np.lexsort((res.record_id, -res.s))[:k]
            ids = res.record_id[order]
            exact_s = dict(zip(ids.tolist(), res.s[order].tolist()))
            if len(ids) < k:  # records sharing nothing with the query: S = 0, by id
                rest = live[~np.isin(live, ids)][: k - len(ids)]
                ids = np.concatenate([ids, rest])
            scores = self.vectors.cosine(table_name, ids, qvec)
            mode = "exact"
        else:
            want = max(k, rerank or 0)
            ids, scores = self.vectors.search(table_name, qvec, want, live)
            mode = "vector"
            if rerank is not None and len(ids):
                res = self._overlap_of(live, snap["generation"]).search(qset, records=ids)
                exact_s = dict(zip(res.record_id.tolist(), res.s.tolist()))
                s_of = np.array([exact_s.get(int(i), 0.0) for i in ids])
                order = np.lexsort((-scores, -s_of))
                ids, scores = ids[order], scores[order]
                mode = "rerank"
            ids, scores = ids[:k], scores[:k]
        table = pa.table({
            "rank": pa.array(np.arange(1, len(ids) + 1), pa.int32()),
            "record_id": pa.array(ids, pa.int32()),
            "record": names.take(pa.array(np.searchsorted(live, ids))).cast(pa.string()),
            "score": pa.array(scores, pa.float64()),
            "exact_score": pa.array([exact_s.get(int(i), 0.0) if mode != "vector" else None for i in ids], pa.float64()),
            "n_intervals": pa.array(n_iv[np.searchsorted(live, ids)].astype(np.int64), pa.int64()),
        })
        return QueryRun(table=table, name=name or (Path(query).name if qpath != "<intervals>" else "query"),
                        source_path=qpath, content_hash=qset.content_hash(), n_intervals=len(qset), k=k,
                        encoder_id=eid, mode=mode, elapsed_ms=(time.perf_counter() - t0) * 1000, warnings=warnings)

    def query(
        self,
        query: str | Path | IntervalSet,
        k: int = 20,
        *,
        rerank: int | None = 200,
        exact: bool = False,
        name: str | None = None,
        skip_unknown_chroms: bool = False,
        save: bool = True,
        source: str | None = None,
    ):
        """Rank records by similarity to a query BED file (or IntervalSet).

        Default: the top ``rerank`` (P) candidates of the vector search are
        rescored with exact seqpare and re-ranked (S first, vector score to
        break ties). ``rerank=None``: the raw vector ranking. ``exact=True``:
        exhaustive exact search over all records.

        Returns a pyarrow Table ``rank, record_id, record, score, exact_score,
        n_intervals`` (``score`` = cosine of the set embeddings, ``exact_score``
        = seqpare S); schema metadata ``gidx.query_id`` is the stored query id
        (``save``: store the query and its results in the catalog; ``source``: the
        origin stored with it, default the file's absolute path).
        """
        run = self.search(query, k, rerank=rerank, exact=exact, name=name, skip_unknown_chroms=skip_unknown_chroms,
                          stale_ok=self.query_log.running, source=source)
        if save:
            self.save_queries([run])
        return run.result()

    def query_many(
        self,
        queries: Iterable[str | Path | IntervalSet],
        k: int = 20,
        *,
        rerank: int | None = 200,
        exact: bool = False,
        skip_unknown_chroms: bool = False,
        save: bool = True,
        errors: list | None = None,
        threads: int | None = None,
        progress: Progress | None = None,
    ):
        """Rank records for many queries in one go: files, folders (their BED files)
        or IntervalSets. Returns one pyarrow Table: ``query`` (the file as given), the
        columns of :meth:`query`, and ``query_id`` when saved; every query is saved in
        one transaction at the end.

        ``errors``: a list that collects ``(query, GidxError)`` for queries that fail
        while the others go on; without it the first failure raises.
        """
        import pyarrow as pa
        from concurrent.futures import ThreadPoolExecutor

        items: list[tuple[str, object]] = []
        for q in queries:
            if isinstance(q, IntervalSet):
                items.append((f"<intervals {len(items) + 1}>", q))
            else:
                items += [(str(f), f) for f, _ in expand_paths([q])]
        opts = dict(rerank=rerank, exact=exact, skip_unknown_chroms=skip_unknown_chroms)
        if items:
            self._snapshot()  # once, before the threads start
            self.genome

        def one(item):
            try:
                return self.search(item[1], k, **opts)
            except GidxError as e:
                if errors is None:
                    raise
                return e

        runs: list = []
        workers = max(1, min(threads or 2, len(items)))
        with ThreadPoolExecutor(workers) as pool:
            for done, got in enumerate(pool.map(one, items)):
                runs.append(got)
                if progress:
                    progress(done + 1, len(items), items[done][0])
        ok = [(label, r) for (label, _), r in zip(items, runs) if not isinstance(r, GidxError)]
        if errors is not None:
            errors += [(label, r) for (label, _), r in zip(items, runs) if isinstance(r, GidxError)]
        if save and ok:
            self.save_queries([r for _, r in ok])
        parts = []
        for label, r in ok:
            t = r.table
            t = t.add_column(0, "query", pa.array([label] * t.num_rows, pa.string()))
            if save:
                t = t.append_column("query_id", pa.array([r.query_id] * t.num_rows, pa.int32()))
            parts.append(t)
        if not parts:
            cols = {"query": pa.string(), "rank": pa.int32(), "record_id": pa.int32(), "record": pa.string(),
                    "score": pa.float64(), "exact_score": pa.float64(), "n_intervals": pa.int64()}
            if save:
                cols["query_id"] = pa.int32()
            return pa.schema(cols).empty_table()
        return pa.concat_tables(parts)

    @property
    def query_log(self):
        """Where searches are stored (:class:`gidx.queries.QueryLog`)."""
        if self._log is None:
            from .queries import QueryLog

            self._log = QueryLog(self.catalog)
        return self._log

    def save_queries(self, runs: list) -> list[int]:
        """Store finished searches (:meth:`search` results) in the catalog; returns their ids.
        With a background committer running (:meth:`serve_mode`) they are queued."""
        if self.query_log.running:
            return [self.query_log.submit(r) for r in runs]
        return self.query_log.save(runs)

    def serve_mode(self) -> None:
        """Keep answering without waiting for the catalog: stored queries go to a
        background committer (:meth:`close` writes what is queued) and searches use
        the last catalog snapshot while another process writes. Each exact search runs
        in its caller's thread: a server's parallelism is its concurrent requests."""
        self.search_threads = 1
        self._overlap = None
        self.query_log.start()

    def close(self) -> None:
        """Write queued stored queries and stop the background committer."""
        if self._log is not None:
            self._log.close()

    # ---- inspection and maintenance -------------------------------------------

    def sql(self, query: str, write: bool = False):
        """Run SQL on the catalog (read-only unless ``write``); returns a pyarrow Table."""
        query = self._dot_command(query)
        if self._log is not None:
            self._log.flush()  # this process's stored queries are visible to its own SQL
        with self.catalog.duck(write=write) as raw:
            try:
                rel = raw.sql(query)
            except Exception as e:  # DuckDB parse/binder/permission errors are the user's
                raise GidxError(str(e).splitlines()[0]) from None
            if rel is None:
                import pyarrow as pa

                return pa.table({})
            return rel.to_arrow_table()

    def sql_each(self, query: str, write: bool = False) -> list:
        """Run every statement of ``query`` (split as DuckDB splits them) in turn, in one
        transaction (with ``write``: all of them or none); one pyarrow Table per statement.
        Dot-commands as in :meth:`sql`."""
        import pyarrow as pa

        statements = sql_statements(self._dot_command(query))
        if self._log is not None:
            self._log.flush()
        out = []
        with self.catalog.duck(write=write) as raw:
            for st in statements:
                try:
                    rel = raw.sql(st)
                    out.append(pa.table({}) if rel is None else rel.to_arrow_table())
                except Exception as e:  # DuckDB binder/permission errors are the user's
                    raise GidxError(str(e).splitlines()[0]) from None
        return out

    def _dot_command(self, query: str) -> str:
        """:func:`dot_command` with this catalog (any other text is returned unchanged)."""
        if not query.strip().startswith("."):
            return query
        with self.catalog.duck() as conn:
            return dot_command(query, conn)

    def ls(self):
        return self.sql("select id, name, n_intervals, bp_covered, n_chromosomes, format, ingested_at, source_path "
                        "from records order by id")

    def rm(self, names: Iterable[str]) -> list[str]:
        """Remove records by name everywhere (catalog first: the commit point)."""
        from sqlalchemy import bindparam, text

        names = list(names)
        with self.catalog.connect(write=True) as conn:
            rows = dict(conn.execute(text("select name, id from records where name in :n").bindparams(
                bindparam("n", expanding=True)), dict(n=names)).fetchall())
            missing = [n for n in names if n not in rows]
            if missing:
                raise GidxError(f"no such record: {', '.join(missing)}")
            ids = [int(i) for i in rows.values()]
            self._forget_records(self.catalog.raw(conn), ids)
        for t in self.vectors.tables():
            self.vectors.delete(t, ids)
        return names

    def prune_queries(self, before: "str | datetime | None" = None, keep_last: int | None = None) -> int:
        """Delete stored queries and their results (tables ``queries``, ``query_results``) in one
        transaction; returns how many queries were removed.

        ``before``: those created before this time (a datetime, or an ISO date or date-time
        string; UTC, as ``queries.created_at``). ``keep_last``: but never the N newest (alone:
        every query except the N newest). At least one of the two."""
        if before is None and keep_last is None:
            raise GidxError("prune which queries? give before (a date) and/or keep_last (a count)")
        conds, params = [], []
        if before is not None:
            conds.append("created_at < ?")
            params.append(parse_when(before))
        if keep_last is not None:
            if int(keep_last) < 0:
                raise GidxError(f"keep_last must be 0 or more, got {keep_last}")
            conds.append(f"id not in (select id from queries order by created_at desc, id desc limit {int(keep_last)})")
        gone = f"select id from queries where {' and '.join(conds)}"
        if self._log is not None:
            self._log.flush()  # queued queries of this process are in the table first
        with self.catalog.duck(write=True) as conn:
            n = conn.execute(f"select count(*) from ({gone})", params).fetchall()[0][0]
            if n:
                conn.execute(f"delete from query_results where query_id in ({gone})", params)
                conn.execute(f"delete from queries where id in ({gone})", params)
        return int(n)

    def info(self) -> dict:
        g = self.genome
        eid, enc = self.set_encoder()
        with self.catalog.duck() as conn:
            counts = {t: conn.execute(f"select count(*) from {t}").fetchall()[0][0]
                      for t in ("records", "intervals", "queries")}
            rev = conn.execute("select version_num from alembic_version").fetchall()[0][0]

        def du(p: Path) -> int:
            if p.is_file():
                return p.stat().st_size
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0

        return {
            "index": str(self.path.resolve()),
            "schema_revision": rev,
            "genome": f"{g.name} ({g.kind}, {len(g.names)} chromosomes, {g.total_bp:,} bp)",
            "genome_source": g.source,
            "genome_digest": g.digest[:16],
            "set_encoder": f"{enc.name} #{eid} {json.dumps(enc.params())}",
            "sequence_encoder": self._sequence_encoder_spec(),
            "tiling": json.dumps(self.tiling().params()),
            **counts,
            "bytes": {p: du(self.path / p) for p in (CATALOG, VECTORS, SEGMENTS, TILES, MODELS)},
        }
