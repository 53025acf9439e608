"""Set embeddings in LanceDB (``vectors.lance/``): one table per set encoder
(``sketch_<identity>``, ``model_<id>``), rows ``record_id, vector``.

The catalog is the source of truth for which records exist: vectors are
written *before* the catalog commit that makes a record visible, so a crash
leaves at most orphan rows, which searches ignore (they are filtered against
the catalog's record ids) and :meth:`VectorStore.prune` deletes.
Brute-force cosine search while a table is small; an ANN index (IVF-PQ with
refine) once it has enough rows to be worth it.

Every row added is also written to a *mirror* (``vectors.mirror/<table>/``):
immutable segments of (record ids, unit-length float32 rows) in ``.npy`` files,
memory-mapped by searches. Importing LanceDB costs ~0.9 s, twice the whole
budget of a one-shot ``gidx query``; a brute-force product over a memory-mapped
matrix needs numpy only and is faster than LanceDB's flat scan at every size
that fits the matrix budget. LanceDB stays the vector store (ANN indexes,
object storage, Ray Data); the mirror is derived from it: a (table, record id)
row never changes (ids are never reused, a table belongs to one encoder), so
segments are written beside LanceDB's rows, before the catalog commit, and a
search that finds a live record missing from the mirror reads the table from
LanceDB and writes what was missing.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np

ANN_MIN_ROWS = 50_000
MATRIX_CACHE_FLOATS = 256 * 2**20  # 1 GiB of float32: bigger tables stay in LanceDB
MIRROR = "vectors.mirror"
_SEG = "seg-"
_MAX_SEGMENTS = 8


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


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    mat = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(mat, axis=1)
    return mat / np.where(norms > 0, norms, 1.0)[:, None].astype(np.float32)


def _save(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr)
        f.flush()
        os.fsync(f.fileno())


class VectorMirror:
    """Memory-mapped copies of one store's rows, per table (see the module docstring).

    A segment is ``seg-<time>-<uuid>.vec.npy`` (rows) + ``.ids.npy`` (record ids),
    the ids file written last under a temporary name and renamed: a segment without
    it is unfinished and ignored. For an id in several segments the newest wins.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache: dict[str, tuple] = {}  # table -> (segment names, ids, rows, sorted ids, order)
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
        if not len(record_ids):
            return
        if (self.n_rows(table) + len(record_ids)) * vectors.shape[1] > MATRIX_CACHE_FLOATS:
            # too big for a matrix in memory: searches go to LanceDB (its ANN index)
            self.drop(table)
            return
        d = self._dir(table)
        d.mkdir(parents=True, exist_ok=True)
        name = f"{_SEG}{time.time_ns():020d}-{uuid.uuid4().hex}"
        _save(d / f"{name}.vec.npy", _unit_rows(vectors))
        tmp = d / f".tmp-{name}.ids.npy"
        _save(tmp, np.asarray(record_ids, dtype=np.int64))
        os.rename(tmp, d / f"{name}.ids.npy")

    def load(self, table: str):
        """(ids, unit rows, ids sorted, their row order) of every segment, newest row per id."""
        names = self._segments(table)
        cached = self._cache.get(table)
        if cached is not None and cached[0] == names:
            return cached[1:]
        d = self._dir(table)
        parts = []
        for n in names:
            try:
                parts.append((np.load(d / f"{n}.ids.npy"), np.load(d / f"{n}.vec.npy", mmap_mode="r")))
            except FileNotFoundError:  # compacted meanwhile: its replacement is listed next time
                return self._reload(table)
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
        out = (ids, rows, ids[order], order)
        with self._lock:
            self._cache[table] = (names, *out)
        return out

    def _reload(self, table: str):
        self._cache.pop(table, None)
        time.sleep(0.01)
        return self.load(table)

    def rows_of(self, table: str, record_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``record_ids`` among the mirror's rows, and a mask of those found."""
        ids, _, sorted_ids, order = self.load(table)
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
        ids, rows, _, _ = self.load(table)
        keep = np.isin(ids, live)
        self.write(table, ids[keep], rows[keep])
        for n in names:
            for suffix in (".ids.npy", ".vec.npy"):
                (self._dir(table) / f"{n}{suffix}").unlink(missing_ok=True)

    def drop(self, table: str) -> None:
        self._cache.pop(table, None)
        shutil.rmtree(self._dir(table), ignore_errors=True)

    def tables(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_dir()) if self.path.is_dir() else []


class VectorStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.mirror = VectorMirror(self.path.with_name(MIRROR))
        self._db = None
        self._live: dict[str, tuple] = {}  # table -> (mirror segments, live ids, mask of live mirror rows)

    @property
    def db(self):
        if self._db is None:
            import lancedb

            # read_consistency_interval=0: always see other processes' latest writes
            self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        return self._db

    def _table(self, name: str):
        try:
            return self.db.open_table(name)
        except (ValueError, FileNotFoundError):
            return None

    def add(self, table: str, record_ids: np.ndarray, vectors: np.ndarray) -> None:
        import pyarrow as pa

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        data = pa.table({
            "record_id": pa.array(np.asarray(record_ids, dtype=np.int64)),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
        })
        self.mirror.write(table, record_ids, vectors)
        t = self._table(table)
        if t is None:
            # two processes creating one table at once can both "succeed", the second
            # manifest replacing the first and its rows: create under a file lock
            with _file_lock(self.path.with_name(self.path.name + ".create-lock")):
                t = self._table(table)
                if t is None:
                    self.db.create_table(table, data)
                    return
        t.add(data)

    def delete(self, table: str, record_ids) -> None:
        t = self._table(table)
        ids = [int(i) for i in record_ids]
        if t is not None and ids:
            t.delete(f"record_id IN ({', '.join(map(str, ids))})")

    def record_ids(self, table: str) -> np.ndarray:
        t = self._table(table)
        if t is None:
            return np.zeros(0, dtype=np.int64)
        return t.to_arrow().column("record_id").to_numpy()

    def vectors(self, table: str) -> tuple[np.ndarray, np.ndarray]:
        t = self._table(table)
        if t is None:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        at = t.to_arrow()
        vec = at.column("vector").combine_chunks()
        dim = vec.type.list_size
        return at.column("record_id").to_numpy(), vec.values.to_numpy().reshape(-1, dim)

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
            if t.list_indices() or t.count_rows() * dim > MATRIX_CACHE_FLOATS:
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
        v = np.asarray(vector, dtype=np.float32)
        v = v / (np.linalg.norm(v) or 1.0)
        out[found] = np.clip(rows[pos[found]] @ v, -1.0, 1.0)
        return out

    def _lance_cosine(self, table, record_ids, vector, out):
        t = self._table(table)
        if t is None:
            return out
        got = t.search().where(f"record_id IN ({', '.join(str(int(i)) for i in record_ids)})").limit(
            len(record_ids) * 2).to_arrow()
        vec = got.column("vector").combine_chunks()
        mat = vec.values.to_numpy().reshape(-1, vec.type.list_size)
        pos = {int(r): j for j, r in enumerate(got.column("record_id").to_numpy())}
        v = np.asarray(vector, dtype=np.float64)
        for i, r in enumerate(record_ids):
            if int(r) in pos:
                m = mat[pos[int(r)]]
                out[i] = float(m @ v / (np.linalg.norm(m) * np.linalg.norm(v) or 1.0))
        return out

    def search(self, table: str, vector: np.ndarray, limit: int, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top ``limit`` live rows by cosine similarity: (record_ids, similarities), best
        first, ties by record id. ``live``: the catalog's record ids, sorted.

        Brute force over the memory-mapped mirror (numpy only); tables too big for
        it, or with an ANN index, are searched by LanceDB.
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
        v = np.asarray(vector, dtype=np.float32)
        sims = rows @ (v / (np.linalg.norm(v) or 1.0))
        sims = np.where(mask, sims, -np.inf)
        k = min(limit, int(mask.sum()))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.flatnonzero(mask)
        top = top[np.lexsort((ids[top], -sims[top]))]
        return ids[top], np.clip(sims[top].astype(np.float64), -1.0, 1.0)

    def _lance_search(self, table, vector, limit, live):
        t = self._table(table)
        if t is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        q = t.search(np.asarray(vector, dtype=np.float32)).distance_type("cosine").limit(limit + 16)
        if t.list_indices():
            q = q.refine_factor(10)
        res = q.select(["record_id", "_distance"]).to_arrow()
        ids = res.column("record_id").to_numpy()
        sims = np.clip(1.0 - res.column("_distance").to_numpy(), -1.0, 1.0)
        keep = np.isin(ids, live)
        return ids[keep][:limit], sims[keep][:limit]

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

    def maybe_index(self, table: str) -> bool:
        """Build an IVF-PQ index once the table is big enough (IVF-PQ under 256 rows indexes nothing)."""
        t = self._table(table)
        if t is None or t.count_rows() < ANN_MIN_ROWS or t.list_indices():
            return False
        import lancedb

        t.create_index("vector", config=lancedb.index.IvfPq(distance_type="cosine"))
        return True

    def drop(self, table: str) -> None:
        self.mirror.drop(table)
        if self._table(table) is not None:
            self.db.drop_table(table)

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
