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

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from .bed import BED_SUFFIXES, BedFile, is_bed_path, read_bed
from .catalog import Catalog
from .errors import GidxError, IndexStateError, InputError
from .genome import Genome
from .intervals import IntervalSet
from .sketch import PositionSketch, encoder_identity

if TYPE_CHECKING:
    from .tiling import Tiling

CATALOG = "catalog.duckdb"
VECTORS = "vectors.lance"
SEGMENTS = "segments"
TILES = "tiles.zarr"
MODELS = "models"
CACHE = "cache"
DEFAULT_INDEX = "gidx-index"

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


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[Path, Path | None]]:
    """Files as given, folders searched recursively for BED files: (file, root folder or None)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = [(f, p) for f in sorted(p.rglob("*")) if f.is_file() and is_bed_path(f)]
            if not found:
                raise InputError([f"{p}: no BED files in this folder (looked for *.bed, *.narrowPeak, "
                                  "*.broadPeak, ... optionally .gz)"])
            out += found
        elif p.exists():
            out.append((p, None))
        else:
            raise InputError([f"{p}: no such file or folder"])
    return out


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    rejected: list[tuple[str, InputError]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    intervals: int = 0
    seconds: float = 0.0


class Index:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.catalog = Catalog(self.path / CATALOG)
        self._genome: Genome | None = None
        self._vectors = None
        self._snap: tuple | None = None
        self._overlap: tuple | None = None
        self._memo = None

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
    def open(cls, path: str | Path) -> "Index":
        path = Path(path)
        if not (path / CATALOG).exists():
            raise IndexStateError(f"{path}: no gidx index here (create one with: gidx init {path} --chrom-sizes FILE)")
        self = cls(path)
        self.catalog.ensure_schema()
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

    def _settings(self, conn) -> dict[str, str]:
        from sqlalchemy import text

        return dict(conn.execute(text("select key, value from settings")).fetchall())

    @property
    def genome(self) -> Genome:
        if self._genome is None:
            from sqlalchemy import text

            with self.catalog.connect() as conn:
                gid = self._settings(conn)["genome_id"]
                spec = conn.execute(text("select spec from genomes where id = :g"), dict(g=int(gid))).scalar()
            self._genome = Genome.from_json(spec, cache_dir=self.path / CACHE)
        return self._genome

    @property
    def genome_id(self) -> int:
        with self.catalog.connect() as conn:
            return int(self._settings(conn)["genome_id"])

    def aliases(self) -> dict[str, str]:
        from sqlalchemy import text

        with self.catalog.connect() as conn:
            return dict(conn.execute(text("select alias, name from chrom_aliases")).fetchall())

    def add_aliases(self, aliases: dict[str, str]) -> None:
        """Map chromosome names used by BED files onto the genome's names (e.g. ``chrM=chrmt``)."""
        from sqlalchemy import text

        g = self.genome
        bad = [f"{a}={n}" for a, n in aliases.items() if n not in g.code_of]
        if bad:
            raise GidxError(f"chromosome alias target not in genome {g.name}: {', '.join(bad)}")
        with self.catalog.connect(write=True) as conn:
            gid = int(self._settings(conn)["genome_id"])
            for a, n in aliases.items():
                conn.execute(text("delete from chrom_aliases where genome_id = :g and alias = :a"), dict(g=gid, a=a))
                conn.execute(text("insert into chrom_aliases values (:g, :a, :n)"), dict(g=gid, a=a, n=n))

    def set_encoder(self):
        """The active set encoder (position sketch until a trained model is activated)."""
        with self.catalog.connect() as conn:
            return self._set_encoder(conn)

    def _set_encoder(self, conn):
        from sqlalchemy import text

        eid = int(self._settings(conn)["set_encoder_id"])
        name, params = conn.execute(text("select name, params from encoders where id = :e"), dict(e=eid)).one()
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
        from sqlalchemy import text

        from .encoders import load_encoder

        with self.catalog.connect() as conn:
            sid = int(self._settings(conn)["sequence_encoder_id"])
            params = json.loads(conn.execute(text("select params from encoders where id = :i"), dict(i=sid)).scalar())
        enc = load_encoder(params["spec"], **options)
        if enc.identity() != params["identity"]:
            raise IndexStateError(f"sequence encoder {params['spec']!r} is not the one this index was built with "
                                  "(its configuration or weights changed)")
        return enc

    def _sequence_encoder_spec(self) -> str:
        from sqlalchemy import text

        with self.catalog.connect() as conn:
            sid = int(self._settings(conn)["sequence_encoder_id"])
            return json.loads(conn.execute(text("select params from encoders where id = :i"), dict(i=sid)).scalar())["spec"]

    def tiling(self):
        from sqlalchemy import text

        from .tiling import Tiling

        with self.catalog.connect() as conn:
            tid = int(self._settings(conn)["tiling_id"])
            params = json.loads(conn.execute(text("select params from tilings where id = :i"), dict(i=tid)).scalar())
        from .tiling import SCHEME

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
        from sqlalchemy import text

        with self.catalog.connect() as conn:
            return {int(r[0]) for r in conn.execute(text("select id from records"))}

    # ---- reading BED against this index's genome ---------------------------

    def read(self, path: str | Path, skip_unknown_chroms: bool = False) -> BedFile:
        return read_bed(path, self.genome, aliases=self._snapshot()["aliases"], skip_unknown_chroms=skip_unknown_chroms)

    def _snapshot(self) -> dict:
        """What a query needs from the catalog, read in one transaction and reused
        until the catalog changes (checked with a stat, no connection)."""
        from sqlalchemy import text

        sig = self.catalog.signature()
        if self._snap is not None and self._snap[0] == sig:
            return self._snap[1]
        with self.catalog.connect() as conn:
            eid, encoder = self._set_encoder(conn)
            rows = conn.execute(text("select id, name, n_intervals from records")).fetchall()
            aliases = dict(conn.execute(text("select alias, name from chrom_aliases")).fetchall())
        snap = {"encoder_id": eid, "encoder": encoder, "aliases": aliases,
                "names": {int(r[0]): r[1] for r in rows}, "n_intervals": {int(r[0]): int(r[2]) for r in rows}}
        self._snap = (sig, snap)
        return snap

    # ---- ingest ------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        name: str | None = None,
        skip_unknown_chroms: bool = False,
        progress: Progress | None = None,
        batch_intervals: int = 2_000_000,
        batch_records: int = 256,
    ) -> IngestReport:
        """Add BED files (folders are searched recursively). Idempotent by content hash.

        A rejected file is reported and skipped; the others still go in.
        """
        t0 = time.perf_counter()
        files = expand_paths(paths)
        if name is not None and len(files) != 1:
            raise GidxError("--name needs exactly one input file")
        genome, aliases = self.genome, self.aliases()
        eid, encoder = self.set_encoder()
        from sqlalchemy import text

        with self.catalog.connect() as conn:
            known_hash = dict(conn.execute(text("select content_hash, name from records")).fetchall())
        known_name = {v: k for k, v in known_hash.items()}
        report = IngestReport()
        batch: list[tuple[str, BedFile, str]] = []

        def flush() -> None:
            if batch:
                lost = self._commit_batch(batch, eid, encoder)
                for nm, bf, _ in batch:
                    if nm in lost:
                        report.skipped.append((str(bf.path), lost[nm]))
                        continue
                    report.added.append(nm)
                    report.intervals += len(bf.intervals)
                batch.clear()

        def parse(item: tuple[Path, Path | None]) -> BedFile | InputError:
            try:
                return read_bed(item[0], genome, aliases=aliases, skip_unknown_chroms=skip_unknown_chroms)
            except InputError as e:
                return e

        from concurrent.futures import ThreadPoolExecutor

        # parse the next files while this one is embedded and stored (decompression,
        # pyarrow's CSV reader and numpy release the GIL)
        pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)))
        parsed = pool.map(parse, files)
        for done, ((path, root), bf) in enumerate(zip(files, parsed)):
            if progress:
                progress(done, len(files), str(path))
            if isinstance(bf, InputError):
                report.rejected.append((str(path), bf))
                continue
            report.warnings += bf.warnings
            h = bf.intervals.content_hash()
            if h in known_hash:
                report.skipped.append((str(path), f"already indexed as {known_hash[h]!r}"))
                continue
            nm = name or record_name_for(path, root)
            if nm in known_name:
                report.rejected.append((str(path), InputError(
                    [f"{path}: record name {nm!r} is taken by different intervals; pick another with --name or gidx rm {nm}"])))
                continue
            known_hash[h], known_name[nm] = nm, h
            batch.append((nm, bf, h))
            if len(batch) >= batch_records or sum(len(b[1].intervals) for b in batch) >= batch_intervals:
                flush()
        flush()
        pool.shutdown()
        if progress:
            progress(len(files), len(files), "")
        if report.added:
            self.maintain()
        report.seconds = time.perf_counter() - t0
        return report

    def maintain(self, max_segments: int = 8) -> None:
        """Fold many small overlap segments into one and drop orphans (rows of crashed or removed records)."""
        from .seqpare import SEGMENT_PREFIX, OverlapIndex

        seg_dir = self.path / SEGMENTS
        n = sum(1 for p in seg_dir.iterdir() if p.name.startswith(SEGMENT_PREFIX)) if seg_dir.exists() else 0
        if n > max_segments:
            OverlapIndex.compact(seg_dir, self.record_ids())

    def overlap(self, live: set[int] | None = None):
        """The exact-seqpare overlap structure over the live records.

        Kept open between queries while neither the catalog nor the segment folder
        changes (segments are immutable; the catalog decides which records live)."""
        from .seqpare import SEGMENT_PREFIX, OverlapIndex

        seg_dir = self.path / SEGMENTS
        names = tuple(sorted(p.name for p in seg_dir.iterdir() if p.name.startswith(SEGMENT_PREFIX))) \
            if seg_dir.exists() else ()
        key = (names, frozenset(live) if live is not None else frozenset(self.record_ids()))
        if self._overlap is None or self._overlap[0] != key:
            ov = OverlapIndex.open(seg_dir, live if live is not None else self.record_ids())
            lacking = len(key[1]) - len(ov.record_ids)
            if lacking:  # exact scores would silently miss records: refuse instead
                raise IndexStateError(f"{self.path}: the overlap structure lacks {lacking} record(s); "
                                      "run: gidx check --repair")
            self._overlap = (key, ov)
        return self._overlap[1]

    def truth(self, top_k: int = 0, progress: Progress | None = None):
        """Compute exact seqpare ground truth into the catalog (incremental, resumable)."""
        from .truth import compute_truth

        return compute_truth(self, top_k=top_k, progress=progress)

    def _reserve_ids(self, n: int) -> list[int]:
        from sqlalchemy import text

        with self.catalog.connect(write=True) as conn:
            return [int(r[0]) for r in conn.execute(text(f"select nextval('record_id_seq') from range({n})"))]

    def _commit_batch(self, batch: list[tuple[str, BedFile, str]], eid: int, encoder) -> dict[str, str]:
        """Store a batch; returns {name: why} for records another process stored first."""
        import pyarrow as pa

        sets = [bf.intervals for _, bf, _ in batch]
        vecs = encoder.embed(sets, self.genome.lengths)
        ids = self._reserve_ids(len(batch))
        # 1. derived data first (orphans if we die before the catalog commit)
        self.vectors.add(self.vector_table(eid, encoder), np.asarray(ids), vecs)
        from .seqpare import OverlapIndex

        OverlapIndex.write_segment(
            self.path / SEGMENTS,
            np.repeat(np.asarray(ids, dtype=np.int64), [len(s) for s in sets]),
            np.concatenate([s.chrom for s in sets]),
            np.concatenate([s.start for s in sets]),
            np.concatenate([s.end for s in sets]),
            records=np.asarray(ids, dtype=np.int64),
        )
        # 2. the catalog commit makes the records visible
        g = self.genome
        now = _now()
        rec = pa.table({
            "id": pa.array(ids, pa.int32()),
            "name": [nm for nm, _, _ in batch],
            "source_path": [str(bf.path.resolve()) for _, bf, _ in batch],
            "content_hash": [h for _, _, h in batch],
            "genome_id": pa.array([self.genome_id] * len(batch), pa.int32()),
            "n_intervals": pa.array([len(s) for s in sets], pa.int64()),
            "bp_covered": pa.array([s.bp_covered() for s in sets], pa.int64()),
            "n_chromosomes": pa.array([len(np.unique(s.chrom)) for s in sets], pa.int32()),
            "chromosomes": [",".join(g.names[c] for c in np.unique(s.chrom)) for s in sets],
            "format": [bf.format for _, bf, _ in batch],
            "ingested_at": pa.array([now] * len(batch), pa.timestamp("us")),
            "extra": [json.dumps({"columns": bf.n_columns, "header_lines": bf.header_lines,
                                  "file_bytes": bf.path.stat().st_size, "skipped_chroms": bf.skipped_chroms})
                      for _, bf, _ in batch],
        })
        names = pa.array(g.names)
        iv = pa.table({
            "record_id": pa.array(np.concatenate([np.full(len(s), i, np.int32) for i, s in zip(ids, sets)])),
            "i": pa.array(np.concatenate([np.arange(len(s), dtype=np.int32) for s in sets])),
            "chrom": pa.DictionaryArray.from_arrays(pa.array(np.concatenate([s.chrom for s in sets])), names).cast(pa.string()),
            "chrom_start": pa.array(np.concatenate([s.start for s in sets])),
            "chrom_end": pa.array(np.concatenate([s.end for s in sets])),
        })
        with self.catalog.connect(write=True) as conn:
            raw = self.catalog.raw(conn)
            raw.register("gidx_new_records", rec)
            raw.register("gidx_new_intervals", iv)
            # another process may have added the same files since we looked: under the
            # write lock, keep only records whose content and name are still new
            taken = raw.execute(
                "select n.name, r.name from gidx_new_records n join records r "
                "on r.content_hash = n.content_hash or r.name = n.name").fetchall()
            lost = {new: f"already indexed as {old!r} (by a concurrent ingest)" for new, old in taken}
            raw.execute("insert into records by name select * from gidx_new_records "
                        "where name not in (select name from records) "
                        "and content_hash not in (select content_hash from records)")
            # ids were reserved for this batch alone: the ones now in records are ours
            raw.execute("insert into intervals by name select * from gidx_new_intervals "
                        "where record_id in (select id from records)")
            raw.unregister("gidx_new_records")
            raw.unregister("gidx_new_intervals")
        return lost

    # ---- query -------------------------------------------------------------

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
    ):
        """Rank records by similarity to a query BED file (or IntervalSet).

        Default: the top ``rerank`` (P) candidates of the vector search are
        rescored with exact seqpare and re-ranked (S first, vector score to
        break ties). ``rerank=None``: the raw vector ranking. ``exact=True``:
        exhaustive exact search over all records.

        Returns a pyarrow Table ``rank, record_id, record, score, exact_score,
        n_intervals`` (``score`` = cosine of the set embeddings, ``exact_score``
        = seqpare S); schema metadata ``gidx.query_id`` is the stored query id.
        """
        import pyarrow as pa
        from sqlalchemy import text

        t0 = time.perf_counter()
        if k < 1:
            raise GidxError("k must be at least 1")
        if rerank is not None and rerank < 1:
            raise GidxError("--rerank P needs P >= 1")
        warnings: list[str] = []
        if isinstance(query, IntervalSet):
            qset, qpath = query, "<intervals>"
        else:
            bf = self.read(query, skip_unknown_chroms)
            qset, qpath, warnings = bf.intervals, str(Path(query).resolve()), bf.warnings
        snap = self._snapshot()
        eid, encoder, names, n_iv = snap["encoder_id"], snap["encoder"], snap["names"], snap["n_intervals"]
        qvec = encoder.embed([qset], self.genome.lengths)[0]
        table_name = self.vector_table(eid, encoder)
        exact_s: dict[int, float] = {}
        if exact:
            res = self.overlap(set(names)).search(qset)
            order = np.lexsort((res.record_id, -res.s))[:k]
            ids = res.record_id[order]
            exact_s = dict(zip(res.record_id[order].tolist(), res.s[order].tolist()))
            scores = self.vectors.cosine(table_name, ids, qvec)
            mode = "exact"
        else:
            want = max(k, rerank or 0)
            ids, scores = self.vectors.search(table_name, qvec, want + 16)
            keep = np.array([int(i) in names for i in ids], dtype=bool)
            ids, scores = ids[keep][:want], scores[keep][:want]
            mode = "vector"
            if rerank is not None and len(ids):
                res = self.overlap(set(names)).search(qset, records=ids)
                exact_s = dict(zip(res.record_id.tolist(), res.s.tolist()))
                s_of = np.array([exact_s.get(int(i), 0.0) for i in ids])
                order = np.lexsort((-scores, -s_of))
                ids, scores = ids[order], scores[order]
                mode = "rerank"
            ids, scores = ids[:k], scores[:k]
        table = pa.table({
            "rank": pa.array(np.arange(1, len(ids) + 1), pa.int32()),
            "record_id": pa.array(ids, pa.int32()),
            "record": pa.array([names[int(i)] for i in ids], pa.string()),
            "score": pa.array(scores, pa.float64()),
            "exact_score": pa.array([exact_s.get(int(i), 0.0) if mode != "vector" else None for i in ids], pa.float64()),
            "n_intervals": pa.array([n_iv[int(i)] for i in ids], pa.int64()),
        })
        elapsed = (time.perf_counter() - t0) * 1000
        qid = None
        if save:
            with self.catalog.connect(write=True) as conn:
                # under the write lock nobody else can commit: if the catalog is as our
                # snapshot saw it, our own insert is its only change (and leaves the
                # snapshot's tables alone), so the snapshot stays valid after it
                still_valid = self._snap is not None and self._snap[0] == self.catalog.signature()
                qid = conn.execute(text(
                    "insert into queries (created_at, name, source_path, content_hash, n_intervals, k, encoder_id, mode, elapsed_ms) "
                    "values (:t, :n, :p, :h, :ni, :k, :e, :m, :ms) returning id"
                ), dict(t=_now(), n=name or (Path(qpath).name if qpath != "<intervals>" else "query"), p=qpath,
                        h=qset.content_hash(), ni=len(qset), k=k, e=eid, m=mode, ms=elapsed)).scalar()
                raw = self.catalog.raw(conn)
                res_tbl = pa.table({"query_id": pa.array([qid] * len(ids), pa.int32()), "rank": table["rank"],
                                    "record_id": table["record_id"], "score": table["score"],
                                    "exact_score": table["exact_score"]})
                raw.register("gidx_new_results", res_tbl)
                raw.execute("insert into query_results by name select * from gidx_new_results")
                raw.unregister("gidx_new_results")
            if still_valid:
                self._snap = (self.catalog.signature(), self._snap[1])
        meta = {b"gidx.query_id": str(qid).encode() if qid else b"", b"gidx.elapsed_ms": f"{elapsed:.2f}".encode(),
                b"gidx.mode": mode.encode(), b"gidx.warnings": "\n".join(warnings).encode()}
        return table.replace_schema_metadata(meta)

    # ---- inspection and maintenance -------------------------------------------

    def sql(self, query: str, write: bool = False):
        """Run SQL on the catalog (read-only unless ``write``); returns a pyarrow Table."""
        with self.catalog.connect(write=write) as conn:
            raw = self.catalog.raw(conn)
            try:
                rel = raw.sql(query)
            except Exception as e:  # DuckDB parse/binder/permission errors are the user's
                raise GidxError(str(e).splitlines()[0]) from None
            if rel is None:
                import pyarrow as pa

                return pa.table({})
            return rel.to_arrow_table()

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
            ids = list(rows.values())
            for tbl, col in (("intervals", "record_id"), ("query_results", "record_id"), ("seqpare", "query_id"),
                             ("seqpare", "target_id"), ("seqpare_progress", "record_id"), ("records", "id")):
                conn.execute(text(f"delete from {tbl} where {col} in :ids").bindparams(
                    bindparam("ids", expanding=True)), dict(ids=ids))
        for t in self.vectors.tables():
            self.vectors.delete(t, ids)
        return names

    def info(self) -> dict:
        from sqlalchemy import text

        g = self.genome
        eid, enc = self.set_encoder()
        with self.catalog.connect() as conn:
            counts = {t: conn.execute(text(f"select count(*) from {t}")).scalar()
                      for t in ("records", "intervals", "queries")}
            rev = conn.execute(text("select version_num from alembic_version")).scalar()

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
