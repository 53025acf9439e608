"""Set embeddings in LanceDB (``vectors.lance/``): one table per set encoder
(``sketch_<identity>``, ``model_<id>``), rows ``record_id, vector``.

The catalog is the source of truth for which records exist: vectors are
written *before* the catalog commit that makes a record visible, so a crash
leaves at most orphan rows, which searches ignore (they are filtered against
the catalog's record ids) and :meth:`VectorStore.prune` deletes.

Numbers below: benchmarks/bench_ann.py on the shared 2-core box (load 1-5 from other
work), position-sketch vectors (1536-d) of the scale corpus' families, 200 held-out
queries, recall@20 against float32 brute force over the same vectors.

**Storage: float16.** New tables store unit rows as ``fixed_size_list<halffloat>``
(3 KB per sketch row instead of 6 KB); tables written by older versions stay float32
and work as before. Cost, float16 vs float32 brute force: recall@20 0.9997 (10^4 rows),
0.998-0.999 (10^5, 10^6); scores move by ~1e-5 (a stored row scores 1 - O(1e-7)
against itself: rows are renormalised in float32 after the cast). Disk per record:
6.15 KB below ``ANN_MIN_ROWS`` (LanceDB + mirror), 3.3-3.5 KB above (LanceDB + index;
the mirror is gone).

**Small tables: brute force over the mirror.** Every row added is also written to a
*mirror* (``vectors.mirror/<table>/``): immutable segments of (record ids, rows, in the
table's dtype) in ``.npy`` files. Importing LanceDB costs ~1 s, twice the whole budget
of a one-shot ``gidx query``; a product over the mirror needs numpy only. A process
converts a float16 mirror once to a float32 unit matrix in memory (a 65536-entry
lookup table in 256-row blocks, ~2.4 us per row, twice numpy's cast; load + convert
130-210 ms at 10^4-3*10^4 rows) and keeps it while the segments do not change; one
query is then an einsum (single-threaded: a BLAS gemv spread over both cores waits on
the busy one): p50 / p95 3.4 / 3.6 ms at 10^4 rows, 6.4 / 6.6 at 2*10^4, 9.6 / 9.8 at
3*10^4, 15.9 / 16.1 at 5*10^4. The mirror is derived from LanceDB: a (table, record id)
row never changes (ids are never reused, a table belongs to one encoder), so segments
are written beside LanceDB's rows, before the catalog commit, and a search that finds a
live record missing from the mirror reads the table from LanceDB and writes what was
missing.

**Big tables: LanceDB's IVF_RQ index** (RaBitQ, 1 bit per dimension, ~210 B per row),
from ``ANN_MIN_ROWS`` = 30,000 rows: where brute force stops meeting p95 <= 10 ms, and
below which the index is no faster (LanceDB's floor per query here is 5-10 ms: a flat
search of 100 rows costs 4.7 / 7.3 ms). Measured against the alternatives at 10^5 rows
(recall@20, p50 / p95 ms, limit 200): IVF_PQ (float16 column: 29 min to build; float32:
~2 min) 0.98-0.99 with refine_factor 2-5 at 17-30 / 21-44 ms; IVF_HNSW_SQ <= 0.95 even
with refine; IVF_FLAT 0.999 at 158 ms (float16 distances are slow); IVF_SQ 1.0 with
refine 2 at 20 / 44 ms; IVF_RQ with refine_factor 1 (the index's candidates re-ranked
with the stored rows): 0.998-1.0 at 10-11 / 15-16 ms, built in 2-20 s. Queries ask the
index for at least ``ANN_MIN_LIMIT`` = 100 rows (limit 20 asked as is: 0.90-0.96) plus
slack for orphans, probe *every* partition (``ANN_NPROBES``; the weak neighbours at
ranks 10-20 of this data, cosine 0.2-0.4 amid a crowd of near ties, sit in other
partitions than the query's family: at 10^6 rows probing 32 / 48 / all of them gives
recall@20 0.953 / 0.970 / 0.999), refine, drop non-live ids and cut to the limit.
Results, recall@20 (limit 200 / limit 20) and p50 / p95 ms (limit 200; limit 20):
10^5 rows 1.000 / 0.998, 11.9 / 18.1; 10.0 / 15.8; 10^6 rows 0.999 / 0.998, 30.5 / 33.9;
29.1 / 36.9 (load 2-3). Recall >= 0.98 is met; **p95 <= 10 ms is not** with LanceDB on
this box (its per-query floor is most of it at 10^5; scanning every 1-bit code at 10^6).

:meth:`VectorStore.maintain` (after every ingest and rm, and in the middle of long
ingests) is the policy:

* below ``ANN_MIN_ROWS``: fold mirror segments (``VectorMirror.compact``) and compact
  LanceDB fragments + drop old versions when there are many small fragments;
* at ``ANN_MIN_ROWS``: build the index (``ANN_PARTITION_ROWS`` rows per partition, at
  most ``ANN_MAX_PARTITIONS``: k-means costs partitions x rows, quadratic with
  LanceDB's default: 20 / 54 / 189 / 629 s at 1 / 2 / 4 / 8 * 10^5 rows; capped at 64:
  45 / 106 / 268 s at 2 / 4 / 8 * 10^5, 111 s at 10^6 on a quiet box) and a BTREE
  index on ``record_id`` (for :meth:`cosine` and id-range prefilters), record the rows
  it was trained on (``vectors.mirror/<table>.ann.json``) and drop the mirror;
* afterwards rows added are *unindexed*: LanceDB scans them flat, ~4.5 us per float16
  row per query (5,000 of them: p50 / p95 31-38 / 44-52 ms, 14-23 / 22-34 after the
  fold), so ``optimize()`` folds them into the index (no retraining: it assigns them to
  the trained partitions and splits partitions that grew) - all of them when the call
  is ``final`` (end of an ingest / rm), only once they reach ``ANN_FOLD_FRACTION`` of the
  indexed rows in the middle of an ingest, because a fold can cost a pass over the
  table: 0.4-3 s at 10^5 rows; at 5*10^5-10^6, 0.6 s for 5,000 rows on one layout but
  26-131 s per 50-100k rows and 250-300 s for 4,096 rows into a single 10^6-row fragment
  (optimize also compacts fragments, rewriting those under LanceDB's 1,048,576-row
  target, and merges the delta into the index);
* the index is **rebuilt** when the table has grown ``ANN_RETRAIN_GROWTH`` = 2x since
  training (k-means partitions of half the data; it also resets the split partitions)
  or when optimize has stacked ``ANN_MAX_DELTAS`` delta indexes;
* every optimize drops versions older than ``CLEANUP_GRACE`` (0: disk stays at the live
  data; a search reading a version whose files just went retries once on a fresh
  handle).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import numpy as np

ANN_MIN_ROWS = 30_000  # build the ANN index from this many rows (see the module docstring)
ANN_RETRAIN_GROWTH = 2.0  # rebuild when the table has grown this much since training
ANN_MAX_DELTAS = 8  # ... or when optimize() has stacked this many delta indexes
ANN_FOLD_FRACTION = 0.1  # maintain(final=False) folds unindexed rows once they are this share
ANN_NUM_BITS = 1  # IVF_RQ bits per dimension
ANN_MAX_ITERATIONS = 20  # IVF k-means iterations
ANN_MIN_LIMIT = 100  # rows asked of the index per query, at least
ANN_REFINE = 1  # refine_factor: re-rank the index's candidates with the stored rows
ANN_PARTITION_ROWS = 8192  # IVF partitions at build: rows / this ...
ANN_MAX_PARTITIONS = 64  # ... at most this many (k-means cost grows with partitions x rows)
# partitions probed per query: all of them (this data needs them, see above; optimize()
# splits partitions as rows arrive, so their number is not the one built)
ANN_NPROBES: int | None = 1 << 16  # None: LanceDB's default (20)
INDEX_NAME = "vector_idx"
CLEANUP_GRACE = timedelta(0)  # versions older than this are deleted by maintain (readers retry once)
SEARCH_MANY_BRUTE_ROWS: int | None = None  # None: search_many's cost model; N: brute force up to N rows
# search_many's cost model (seconds; 2-core box, bench_ann.py): brute force costs per call
# rows x (read + convert, once per call) and rows x queries x (product + top-k); the
# index costs per query about the same at any size.
_BRUTE_ROW_S = 1.5e-5
_BRUTE_ROW_QUERY_S = 5.5e-8
_ANN_QUERY_S = 8e-3
MATRIX_CACHE_FLOATS = 256 * 2**20  # mirror cap (1 GiB as float32 in memory): bigger tables stay in LanceDB
STORE_DTYPE = np.float16  # rows of new tables
MIRROR = "vectors.mirror"
_SEG = "seg-"
_MAX_SEGMENTS = 8
_MAX_SMALL_FRAGMENTS = 8  # small tables: compact LanceDB fragments beyond this many
_ORPHAN_SLACK = 16
_BLOCK = 256  # float16 -> float32 conversion block (rows)
_RBLOCK = 16384  # search_many: rows per block
_QBLOCK = 1024  # search_many: queries per matrix product


class _file_lock:
    """An exclusive advisory lock on ``path`` across processes (flock), for a block."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


_LUT: np.ndarray | None = None


def _as_f32(rows, out: np.ndarray | None = None) -> np.ndarray:
    """A float32 copy (float16 rows through a lookup table in cache-sized blocks: the
    conversion is exact either way, and ~2x faster than numpy's cast here); ``out``: a
    buffer to fill (float16 input only)."""
    global _LUT
    rows = np.asarray(rows)
    if rows.dtype != np.float16:
        return np.ascontiguousarray(rows, dtype=np.float32)
    if _LUT is None:
        _LUT = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    rows = np.ascontiguousarray(rows)
    if rows.ndim == 1:
        return np.take(_LUT, rows.view(np.uint16))
    out = np.empty(rows.shape, np.float32) if out is None else out[: len(rows)]
    for s in range(0, len(rows), _BLOCK):
        np.take(_LUT, rows[s: s + _BLOCK].view(np.uint16), out=out[s: s + _BLOCK])
    return out


def _unit_rows(vectors: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero); ``out``: a buffer to
    fill (float16 input only: saves the page faults of a fresh array per block)."""
    mat = _as_f32(vectors, out)
    norms = np.sqrt(np.einsum("ij,ij->i", mat, mat))  # no (n, d) temporary, unlike linalg.norm
    scale = np.where(norms > 0, norms, 1.0)[:, None].astype(np.float32)
    if np.asarray(vectors).dtype == np.float16:  # mat is a fresh copy
        mat /= scale
        return mat
    return mat / scale


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / (np.linalg.norm(v) or 1.0)


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


def _best_first(ids: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (m, k) ``ids``/``sims`` ordered by similarity, ties by record id."""
    o = np.argsort(ids, axis=1, kind="stable")
    ids, sims = np.take_along_axis(ids, o, 1), np.take_along_axis(sims, o, 1)
    o = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(ids, o, 1), np.take_along_axis(sims, o, 1)


class _TopK:
    """Running top ``k`` per query over blocks of scored rows."""

    def __init__(self, m: int, k: int):
        self.k = k
        self.sims = np.full((m, 0), -np.inf, np.float32)
        self.ids = np.zeros((m, 0), np.int64)

    def push(self, ids: np.ndarray, sims: np.ndarray) -> None:
        """``ids`` (n,) for all queries, ``sims`` (m, n); -inf marks rows to skip. Only
        entries at or above a query's current k-th best are merged (after the first
        blocks, few are)."""
        m, k = sims.shape[0], self.k
        if self.sims.shape[1] < k and sims.shape[1] > k:
            # nothing to compare with yet (first block): each query's k best of the block,
            # by one partition instead of scattering the whole block (-inf ones come out
            # as -1 ids in result(), and never pass the threshold below)
            p = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            sims, ids = np.take_along_axis(sims, p, 1), ids[p]
            if self.sims.shape[1]:
                sims = np.concatenate([self.sims, sims], axis=1)
                ids = np.concatenate([self.ids, ids], axis=1)
                p = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                sims, ids = np.take_along_axis(sims, p, 1), np.take_along_axis(ids, p, 1)
            self.sims, self.ids = sims, ids
            return
        if self.sims.shape[1] >= k:
            # (a -inf k-th best takes every finite entry, never a skipped one)
            hit = sims >= np.maximum(self.sims.min(axis=1), np.finfo(np.float32).min)[:, None]
        else:
            hit = np.isfinite(sims)
        flat = np.flatnonzero(hit)  # row-major: r ascending (15x faster than a 2-d nonzero)
        if not len(flat):
            return
        r, c = np.divmod(flat, hit.shape[1])
        counts = np.bincount(r, minlength=m)
        w = int(counts.max())
        col = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
        add_s = np.full((m, w), -np.inf, np.float32)
        add_i = np.full((m, w), -1, np.int64)
        add_s[r, col] = sims[r, c]
        add_i[r, col] = ids[c]
        cat_s = np.concatenate([self.sims, add_s], axis=1)
        cat_i = np.concatenate([self.ids, add_i], axis=1)
        if cat_s.shape[1] > k:
            p = np.argpartition(-cat_s, k - 1, axis=1)[:, :k]
            cat_s, cat_i = np.take_along_axis(cat_s, p, 1), np.take_along_axis(cat_i, p, 1)
        self.sims, self.ids = cat_s, cat_i

    def result(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids (m, limit) padded with -1, sims (m, limit) float64 padded with -inf), best first."""
        ids, sims = _best_first(self.ids, self.sims.astype(np.float64))
        ids = np.where(np.isfinite(sims), ids, -1)
        m = ids.shape[0]
        out_i = np.full((m, limit), -1, np.int64)
        out_s = np.full((m, limit), -np.inf)
        n = min(limit, ids.shape[1])
        out_i[:, :n], out_s[:, :n] = ids[:, :n], sims[:, :n]
        np.clip(out_s, -1.0, 1.0, out=out_s, where=np.isfinite(out_s))
        return out_i, out_s


class VectorMirror:
    """Memory-mapped copies of one store's rows, per table (see the module docstring).

    A segment is ``seg-<time>-<uuid>.vec.npy`` (rows: float16 as stored in LanceDB, or
    float32 unit rows for tables of older versions) + ``.ids.npy`` (record ids), the ids
    file written last under a temporary name and renamed: a segment without it is
    unfinished and ignored. For an id in several segments the newest wins.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache: dict[str, tuple] = {}  # table -> (segment names, ids, raw rows, sorted ids, order)
        self._units: dict[str, tuple] = {}  # table -> (segment names, float32 unit rows)
        self._lock = threading.Lock()

    def _dir(self, table: str) -> Path:
        return self.path / table

    def _segments(self, table: str) -> tuple[str, ...]:
        d = self._dir(table)
        if not d.is_dir():
            return ()
        return tuple(sorted(n[: -len(".ids.npy")] for n in os.listdir(d)
                            if n.startswith(_SEG) and n.endswith(".ids.npy")))

    def n_rows(self, table: str) -> int:
        d = self._dir(table)
        return sum(np.load(d / f"{n}.ids.npy", mmap_mode="r").shape[0] for n in self._segments(table))

    def write(self, table: str, record_ids: np.ndarray, vectors: np.ndarray) -> None:
        """A new segment. float16 rows are stored as given (the bits LanceDB holds);
        anything else as float32 unit rows."""
        if not len(record_ids):
            return
        vectors = np.asarray(vectors)
        if (self.n_rows(table) + len(record_ids)) * vectors.shape[1] > MATRIX_CACHE_FLOATS:
            # too big for a matrix in memory: searches go to LanceDB (its ANN index)
            self.drop(table)
            return
        d = self._dir(table)
        d.mkdir(parents=True, exist_ok=True)
        name = f"{_SEG}{time.time_ns():020d}-{uuid.uuid4().hex}"
        rows = np.ascontiguousarray(vectors) if vectors.dtype == np.float16 else _unit_rows(vectors)
        _save(d / f"{name}.vec.npy", rows)
        tmp = d / f".tmp-{name}.ids.npy"
        _save(tmp, np.asarray(record_ids, dtype=np.int64))
        os.rename(tmp, d / f"{name}.ids.npy")

    def _entry(self, table: str) -> tuple:
        """(segment names, ids, raw rows, ids sorted, their row order), newest row per id."""
        names = self._segments(table)
        cached = self._cache.get(table)
        if cached is not None and cached[0] == names:
            return cached
        d = self._dir(table)
        parts = []
        for n in names:
            try:
                parts.append((np.load(d / f"{n}.ids.npy"), np.load(d / f"{n}.vec.npy", mmap_mode="r")))
            except FileNotFoundError:  # compacted meanwhile: its replacement is listed next time
                self._cache.pop(table, None)
                time.sleep(0.01)
                return self._entry(table)
        if len(parts) == 1:
            ids, rows = parts[0]
        elif parts:
            ids = np.concatenate([p[0] for p in parts])
            rows = np.concatenate([p[1] for p in parts])
        else:
            ids, rows = np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        # newest first, then unique: the newest row of each id
        rev = np.arange(len(ids))[::-1]
        uniq, first = np.unique(ids[rev], return_index=True)
        keep = np.sort(rev[first])
        if len(keep) != len(ids):
            ids, rows = ids[keep], np.asarray(rows[keep])
        order = np.argsort(ids, kind="stable")
        out = (names, ids, rows, ids[order], order)
        with self._lock:
            self._cache[table] = out
        return out

    def dtype(self, table: str):
        """The rows' dtype (None without segments)."""
        rows = self._entry(table)[2]
        return rows.dtype if rows.size else None

    def load(self, table: str):
        """(ids, float32 unit rows, ids sorted, their row order) of every segment, newest
        row per id. float16 segments are converted once per process and kept in memory
        while the segments stay the same (small tables only: see ``write``)."""
        names, ids, rows, sorted_ids, order = self._entry(table)
        if rows.dtype == np.float16:
            cached = self._units.get(table)
            if cached is not None and cached[0] == names:
                rows = cached[1]
            else:
                rows = _unit_rows(rows)
                with self._lock:
                    self._units[table] = (names, rows)
        return ids, rows, sorted_ids, order

    def rows_of(self, table: str, record_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``record_ids`` among the mirror's rows, and a mask of those found."""
        _, ids, _, sorted_ids, order = self._entry(table)
        record_ids = np.asarray(record_ids, dtype=np.int64)
        if not len(ids):
            return np.zeros(len(record_ids), np.int64), np.zeros(len(record_ids), bool)
        pos = np.minimum(np.searchsorted(sorted_ids, record_ids), len(ids) - 1)
        found = sorted_ids[pos] == record_ids
        return order[pos], found

    def compact(self, table: str, live: np.ndarray) -> None:
        """One segment of the live rows instead of many (orphans dropped)."""
        names = self._segments(table)
        if len(names) <= _MAX_SEGMENTS:
            return
        _, ids, rows, _, _ = self._entry(table)
        keep = np.isin(ids, live)
        self.write(table, ids[keep], rows[keep])
        for n in names:
            for suffix in (".ids.npy", ".vec.npy"):
                (self._dir(table) / f"{n}{suffix}").unlink(missing_ok=True)

    def drop(self, table: str) -> None:
        self._cache.pop(table, None)
        self._units.pop(table, None)
        shutil.rmtree(self._dir(table), ignore_errors=True)

    def tables(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_dir()) if self.path.is_dir() else []


class VectorStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.mirror = VectorMirror(self.path.with_name(MIRROR))
        self._db = None
        self._live: dict[str, tuple] = {}  # table -> (mirror segments, live ids, mask of live mirror rows)
        self._handles: dict[str, object] = {}  # table -> open LanceDB table

    @property
    def db(self):
        if self._db is None:
            # lance logs warnings (e.g. "partition index is 5 but the number of partitions
            # is 4, skip loading it" while an index is rebuilt) to stderr: errors only
            os.environ.setdefault("LANCEDB_LOG", "error")
            import lancedb

            # read_consistency_interval=0: always see other processes' latest writes
            self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        return self._db

    def _table(self, name: str):
        """The open table (handles are kept: with read_consistency_interval=0 every read
        still sees the latest version), or None."""
        t = self._handles.get(name)
        if t is not None:
            return t
        try:
            t = self.db.open_table(name)
        except (ValueError, FileNotFoundError):
            return None
        self._handles[name] = t
        return t

    def _read(self, table: str, fn):
        """``fn(table handle)``, once more on a fresh handle if it fails (a concurrent
        maintain may have deleted the files of the version it was reading)."""
        t = self._table(table)
        if t is None:
            return None
        try:
            return fn(t)
        except Exception:
            self._handles.pop(table, None)
            t = self._table(table)
            if t is None:
                raise
            return fn(t)

    @staticmethod
    def _dtype(t):
        """numpy dtype of a table's vector column."""
        import pyarrow as pa

        return np.float16 if t.schema.field("vector").type.value_type == pa.float16() else np.float32

    @staticmethod
    def _ann(t):
        """The table's vector index (an IndexConfig) or None."""
        for cfg in t.list_indices():
            if "vector" in cfg.columns:
                return cfg
        return None

    def _meta_path(self, table: str) -> Path:
        return self.mirror.path / f"{table}.ann.json"

    def add(self, table: str, record_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store rows (unit-normalised float16 in new tables, as given in float32 tables of
        older versions) and, while the table has no ANN index, their mirror segment."""
        import pyarrow as pa

        record_ids = np.asarray(record_ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)

        def data(dtype):
            rows = _unit_rows(vectors).astype(np.float16) if dtype == np.float16 else vectors
            return rows, pa.table({
                "record_id": pa.array(record_ids),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), vectors.shape[1]),
            })

        t = self._table(table)
        if t is None:
            rows, tbl = data(STORE_DTYPE)
            self.mirror.write(table, record_ids, rows)
            # two processes creating one table at once can both "succeed", the second
            # manifest replacing the first and its rows: create under a file lock
            with _file_lock(self.path.with_name(self.path.name + ".create-lock")):
                t = self._table(table)
                if t is None:
                    self.db.create_table(table, tbl)
                    return
            if self._dtype(t) != STORE_DTYPE:  # another process created it otherwise
                rows, tbl = data(self._dtype(t))
            t.add(tbl)
            return
        rows, tbl = data(self._dtype(t))
        if self._ann(t) is None:
            self.mirror.write(table, record_ids, rows)
        t.add(tbl)

    def delete(self, table: str, record_ids) -> None:
        t = self._table(table)
        ids = [int(i) for i in record_ids]
        if t is not None and ids:
            t.delete(f"record_id IN ({', '.join(map(str, ids))})")

    def record_ids(self, table: str) -> np.ndarray:
        got = self._read(table, lambda t: t.search().select(["record_id"]).limit(None).to_arrow())
        return np.zeros(0, dtype=np.int64) if got is None else got.column("record_id").to_numpy()

    def vectors(self, table: str) -> tuple[np.ndarray, np.ndarray]:
        """Every stored row at once, in the table's dtype (float16 or float32): small tables
        only; :meth:`iter_blocks` streams."""
        at = self._read(table, lambda t: t.to_arrow())
        if at is None:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        vec = at.column("vector").combine_chunks()
        dim = vec.type.list_size
        return at.column("record_id").to_numpy(), vec.values.to_numpy().reshape(-1, dim)

    def iter_blocks(self, table: str, rows: int = 65536,
                    reuse: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored row in blocks of at most ``rows``: (record ids int64, float32 unit
        rows). From the mirror when the table has one (its rows: what this store wrote,
        newest per id; rows of deleted records may be among them: filter by the live ids)
        while it holds every row of a table without ANN index, else streamed from LanceDB
        (never the whole table in memory). ``reuse``: LanceDB blocks are converted into one
        buffer, each valid until the next is asked for."""
        t = self._table(table)
        if t is None:
            return
        if self.mirror._segments(table) and self._ann(t) is None:
            _, found = self.mirror.rows_of(table, self.record_ids(table))
            if found.all():
                ids, unit, _, _ = self.mirror.load(table)
                for s in range(0, len(ids), rows):
                    yield ids[s: s + rows], unit[s: s + rows]
                return
        buf = None
        for batch in t.search().select(["record_id", "vector"]).limit(None).to_batches(rows):
            if not batch.num_rows:
                continue
            vec = batch.column("vector")
            mat = vec.values.to_numpy(zero_copy_only=False).reshape(-1, vec.type.list_size)
            if reuse and mat.dtype == np.float16 and (buf is None or len(buf) < len(mat)):
                buf = np.empty((max(rows, len(mat)), mat.shape[1]), np.float32)
            yield batch.column("record_id").to_numpy(), _unit_rows(mat, buf if reuse else None)

    def _mirror_rows(self, table: str, live: np.ndarray, dim: int):
        """The mirror's (ids, unit rows, mask of rows whose record is live), completed
        from LanceDB when a live record is missing; None when the table is too big
        for a matrix (or has an ANN index): search LanceDB then."""
        ids, rows, _, _ = self.mirror.load(table)
        key = (self.mirror._segments(table), len(live), int(live[-1]) if len(live) else -1)
        cached = self._live.get(table)
        if cached is not None and cached[0] == key and np.array_equal(cached[1], live):
            return ids, rows, cached[2]
        _, found = self.mirror.rows_of(table, live)
        if not found.all():
            t = self._table(table)
            if t is None:
                return None
            if self._ann(t) is not None or t.count_rows() * dim > MATRIX_CACHE_FLOATS:
                return None
            all_ids, vecs = self.vectors(table)
            missing = ~np.isin(all_ids, ids)
            self.mirror.write(table, all_ids[missing], vecs[missing])
            ids, rows, _, _ = self.mirror.load(table)
            key = (self.mirror._segments(table), len(live), int(live[-1]) if len(live) else -1)
        mask = np.isin(ids, live)
        self._live[table] = (key, live, mask)
        return ids, rows, mask

    def cosine(self, table: str, record_ids: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of stored vectors of ``record_ids`` with ``vector`` (NaN where missing)."""
        record_ids = np.asarray(record_ids, dtype=np.int64)
        out = np.full(len(record_ids), np.nan)
        if not len(record_ids):
            return out
        got = self._mirror_rows(table, np.unique(record_ids), len(vector))
        if got is None:
            return self._lance_cosine(table, record_ids, vector, out)
        _, rows, _ = got
        pos, found = self.mirror.rows_of(table, record_ids)
        out[found] = np.clip(rows[pos[found]] @ _unit(vector), -1.0, 1.0)
        return out

    def _lance_cosine(self, table, record_ids, vector, out):
        v = _unit(vector)
        pos: dict[int, np.ndarray] = {}
        uniq = np.unique(record_ids)
        for s in range(0, len(uniq), 1000):
            part = uniq[s: s + 1000]
            got = self._read(table, lambda t: t.search().where(
                f"record_id IN ({', '.join(str(int(i)) for i in part)})").select(
                ["record_id", "vector"]).limit(len(part) * 2).to_arrow())
            if got is None:
                return out
            vec = got.column("vector").combine_chunks()
            mat = _unit_rows(vec.values.to_numpy(zero_copy_only=False).reshape(-1, vec.type.list_size))
            pos.update(zip(got.column("record_id").to_numpy().tolist(), mat))
        for i, r in enumerate(record_ids.tolist()):
            if r in pos:
                out[i] = float(np.clip(pos[r] @ v, -1.0, 1.0))
        return out

    def search(self, table: str, vector: np.ndarray, limit: int, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top ``limit`` live rows by cosine similarity: (record_ids, similarities), best
        first, ties by record id. ``live``: the catalog's record ids, sorted.

        Brute force over the mirror's matrix (numpy only) while the table is small;
        tables with an ANN index (or too big for the matrix) are searched by LanceDB.
        """
        live = np.asarray(live, dtype=np.int64)
        if limit <= 0 or not len(live):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        got = self._mirror_rows(table, live, len(vector))
        if got is None:
            return self._lance_search(table, vector, limit, live)
        ids, rows, mask = got
        if not len(ids):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        # one query: einsum's single-threaded loop; a BLAS gemv spreads over both cores and
        # waits on the busy one (3-5x slower p95 on a loaded 2-core box)
        sims = np.einsum("ij,j->i", rows, _unit(vector))
        sims = np.where(mask, sims, -np.inf)
        k = min(limit, int(mask.sum()))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.flatnonzero(mask)
        top = top[np.lexsort((ids[top], -sims[top]))]
        return ids[top], np.clip(sims[top].astype(np.float64), -1.0, 1.0)

    def _lance_search(self, table, vector, limit, live):
        nprobes = self._nprobes(table)
        got = self._read(table, lambda t: self._lance_topk(t, np.asarray(vector, np.float32)[None, :], limit, live,
                                                           nprobes))
        if got is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        ids, sims = got
        ok = ids[0] >= 0
        return ids[0][ok], sims[0][ok]

    def _lance_topk(self, t, queries: np.ndarray, limit: int, live: np.ndarray, nprobes: int | None = None):
        """Top ``limit`` live rows per query from LanceDB: the ANN index (refined with the
        stored rows) when there is one, else a flat scan. Asks for a few more than
        ``limit`` and drops rows of records not in ``live`` (sorted); asks again for 4x
        as many while a query comes back short and the table has more rows. A ``live``
        set much smaller than the table is narrowed by an id-range prefilter."""
        m = len(queries)
        n = t.count_rows()
        ann = self._ann(t) is not None
        live = np.asarray(live, dtype=np.int64)
        where = None
        if len(live) and len(live) < n // 2:  # e.g. truth's targets: the ids above a mark
            where = f"record_id >= {int(live[0])} AND record_id <= {int(live[-1])}"
        ask = max(limit, ANN_MIN_LIMIT if ann else 0) + _ORPHAN_SLACK
        top = _TopK(m, limit)
        while True:
            q = t.search(queries if m > 1 else queries[0]).distance_type("cosine").limit(ask)
            if where is not None:
                q = q.where(where, prefilter=True)
            if ann:
                q = q.refine_factor(ANN_REFINE)
                if nprobes:
                    q = q.nprobes(nprobes)
            res = q.select(["record_id", "_distance"]).to_arrow()
            ids = res.column("record_id").to_numpy()
            sims = 1.0 - res.column("_distance").to_numpy().astype(np.float64)
            qi = res.column("query_index").to_numpy() if m > 1 else np.zeros(len(ids), np.int64)
            keep = np.isin(ids, live)
            counts = np.bincount(qi[keep], minlength=m)
            if counts.min() >= limit or ask >= n:
                break
            ask *= 4
        width = int(counts.max()) if len(counts) else 0
        grid_i = np.full((m, max(width, 1)), -1, np.int64)
        grid_s = np.full((m, max(width, 1)), -np.inf)
        ids, sims, qi = ids[keep], sims[keep], qi[keep]
        o = np.argsort(qi, kind="stable")
        ids, sims, qi = ids[o], sims[o], qi[o]
        col = np.arange(len(qi)) - np.searchsorted(qi, qi)
        grid_i[qi, col], grid_s[qi, col] = ids, sims
        top.sims, top.ids = grid_s, grid_i
        return top.result(limit)

    def search_many(self, table: str, vectors: np.ndarray, limit: int,
                    live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top ``limit`` live rows for each of many query vectors ``(m, d)``: (ids (m, limit)
        int64 padded with -1, sims (m, limit) float64 padded with -inf), best first, ties by
        record id. Brute force in blocks (a matrix product of the queries against each
        block of rows, a running top ``limit`` per query: memory follows the block, not
        the table), unless the table has an ANN index and brute force would cost more
        per query than the index (``_BRUTE_ROW_S`` ...: the rows are read once per call,
        so a call with thousands of queries brute-forces tables where one with a few
        hundred goes to the index); then LanceDB's index, queries in groups of 64."""
        queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        m = len(queries)
        live = np.unique(np.asarray(live, dtype=np.int64))
        if not m or limit <= 0 or not len(live):
            return _TopK(m, max(limit, 0)).result(max(limit, 0))
        qn = _unit_rows(queries)
        tops = [(s, _TopK(len(qn[s: s + _QBLOCK]), limit)) for s in range(0, m, _QBLOCK)]
        buf = np.empty((min(m, _QBLOCK), _RBLOCK), np.float32)

        def push(ids, rows, mask):
            for s, top in tops:  # a (queries x rows) product per block of each: bounded memory
                q = qn[s: s + _QBLOCK]
                sims = np.matmul(q, rows.T, out=buf[: len(q), : len(rows)])
                if mask is not None:
                    sims[:, ~mask] = -np.inf
                top.push(ids, sims)

        def result():
            parts = [top.result(limit) for _, top in tops]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

        got = self._mirror_rows(table, live, queries.shape[1])
        if got is not None:
            ids, rows, mask = got
            for s in range(0, len(ids), _RBLOCK):
                push(ids[s: s + _RBLOCK], rows[s: s + _RBLOCK], None if mask[s: s + _RBLOCK].all()
                     else mask[s: s + _RBLOCK])
            return result()
        t = self._table(table)
        if t is None:
            return result()
        if self._ann(t) is not None:
            n = t.count_rows()
            brute = n <= SEARCH_MANY_BRUTE_ROWS if SEARCH_MANY_BRUTE_ROWS is not None else \
                n * (_BRUTE_ROW_S / m + _BRUTE_ROW_QUERY_S) <= _ANN_QUERY_S
            if not brute:
                npr = self._nprobes(table)
                parts = [self._read(table, lambda t: self._lance_topk(t, queries[s: s + 64], limit, live, npr))
                         for s in range(0, m, 64)]
                return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        for ids, rows in self.iter_blocks(table, _RBLOCK, reuse=True):
            mask = np.isin(ids, live)
            push(ids, rows, None if mask.all() else mask)
        return result()

    # ---- maintenance ------------------------------------------------------------------

    def maintain(self, table: str, live: np.ndarray | None = None, grace: timedelta = CLEANUP_GRACE,
                 final: bool = True) -> dict:
        """Keep ``table`` in shape after records came or went (see the module docstring):
        fold mirror segments (dropping rows not in ``live``) and LanceDB fragments while
        small; build the ANN index at ``ANN_MIN_ROWS``; afterwards rebuild it when the
        table outgrew its training, else fold unindexed rows into it (``optimize``): all
        of them when ``final`` (the end of an ingest or rm: searches are fast again), only
        once they are ``ANN_FOLD_FRACTION`` of the indexed rows otherwise (maintenance in
        the middle of a long ingest: a fold costs a pass over the whole table). Returns
        what it did: ``{"rows", "actions": [...], "seconds": {action: s}}``."""
        rep: dict = {"table": table, "rows": 0, "actions": [], "seconds": {}}

        def timed(name, fn, *a, **kw):
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            rep["actions"].append(name)
            rep["seconds"][name] = round(time.perf_counter() - t0, 3)
            return out

        with _file_lock(self.path.with_name(self.path.name + ".maintain-lock")):
            t = self._table(table)
            if t is None:
                return rep
            n = rep["rows"] = t.count_rows()
            ann = self._ann(t)
            if ann is None:
                if live is not None and self.mirror._segments(table):
                    timed("mirror_compact", self.mirror.compact, table, np.asarray(live, dtype=np.int64))
                if n < ANN_MIN_ROWS:
                    if t.stats()["fragment_stats"]["num_small_fragments"] > _MAX_SMALL_FRAGMENTS:
                        timed("optimize", self._optimize, t, grace)
                    return rep
                timed("build", self._build, t, table, n, grace)
                return rep
            stats = t.index_stats(ann.name)
            trained = self._trained_rows(table) or (stats.num_indexed_rows if stats else n)
            unindexed = stats.num_unindexed_rows if stats else 0
            if n >= ANN_RETRAIN_GROWTH * trained or (stats and stats.num_indices > ANN_MAX_DELTAS):
                timed("rebuild", self._build, t, table, n, grace)
            elif unindexed and (final or unindexed >= ANN_FOLD_FRACTION * max(1, n - unindexed)):
                timed("optimize", self._optimize, t, grace)
            if self.mirror._segments(table):  # a writer that raced the build wrote one
                self.mirror.drop(table)
            rep["index"] = self.ann_stats(table)
        return rep

    def _optimize(self, t, grace: timedelta) -> None:
        """Compact fragments, fold unindexed rows into the indexes (as a delta, no
        retraining), drop versions older than ``grace``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cleanup_older_than=0 warns about concurrent readers
            t.optimize(cleanup_older_than=grace)

    def _build(self, t, table: str, n: int, grace: timedelta) -> None:
        import lancedb

        if self._ann(t) is None:  # first build: few big fragments, deletions materialised
            self._optimize(t, grace)  # (a rebuild skips this: it would first merge into the old index)
        parts = int(min(ANN_MAX_PARTITIONS, max(1, round(n / ANN_PARTITION_ROWS))))
        t.create_index("vector", config=lancedb.index.IvfRq(
            distance_type="cosine", num_bits=ANN_NUM_BITS, max_iterations=ANN_MAX_ITERATIONS,
            num_partitions=parts), name=INDEX_NAME, replace=True)
        if not any("record_id" in c.columns for c in t.list_indices()):
            t.create_index("record_id", config=lancedb.index.BTree(), replace=True)
        self.mirror.path.mkdir(parents=True, exist_ok=True)
        tmp = self._meta_path(table).with_suffix(f".tmp-{uuid.uuid4().hex}")
        tmp.write_text(json.dumps({"trained_rows": int(n), "partitions": parts, "built_at": time.time()}))
        os.replace(tmp, self._meta_path(table))
        self.mirror.drop(table)
        self._optimize(t, grace)  # the replaced index's files

    def _meta(self, table: str) -> dict:
        """What the last build recorded (``trained_rows``, ``partitions``), or {}."""
        try:
            return json.loads(self._meta_path(table).read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _trained_rows(self, table: str) -> int | None:
        got = self._meta(table).get("trained_rows")
        return int(got) if got is not None else None

    def _nprobes(self, table: str) -> int | None:
        return ANN_NPROBES

    def ann_stats(self, table: str) -> dict | None:
        """The ANN index of ``table``: type, indexed / unindexed rows, delta indexes, rows trained on."""
        t = self._table(table)
        ann = self._ann(t) if t is not None else None
        if ann is None:
            return None
        s = t.index_stats(ann.name)
        meta = self._meta(table)
        return {"type": s.index_type, "indexed": s.num_indexed_rows, "unindexed": s.num_unindexed_rows,
                "indices": s.num_indices, "trained_rows": meta.get("trained_rows"),
                "partitions": meta.get("partitions"), "nprobes": self._nprobes(table)}

    def prune(self, table: str, live: set[int]) -> int:
        """Delete rows whose record is not in the catalog; returns how many."""
        ids = self.record_ids(table)
        orphans = sorted({int(i) for i in ids} - live)
        if orphans:
            self.delete(table, orphans)
        return len(orphans)

    def duplicates(self, table: str) -> list[int]:
        ids = self.record_ids(table)
        u, c = np.unique(ids, return_counts=True)
        return [int(i) for i in u[c > 1]]

    def drop(self, table: str) -> None:
        self.mirror.drop(table)
        self._meta_path(table).unlink(missing_ok=True)
        if self._table(table) is not None:
            self.db.drop_table(table)
        self._handles.pop(table, None)

    def tables(self) -> list[str]:
        if not self.path.exists():
            return []
        names, token = [], None
        while True:  # list_tables pages its answer (table_names() is deprecated)
            page = self.db.list_tables(page_token=token)
            names += list(page.tables)
            token = page.page_token
            if not token:
                return names
