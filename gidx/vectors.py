"""Set embeddings in LanceDB (``vectors.lance/``): one table per set encoder
(``sketch_<identity>``, ``model_<id>``), rows ``record_id, vector``.

The catalog is the source of truth for which records exist: vectors are
written *before* the catalog commit that makes a record visible, so a crash
leaves at most orphan rows, which searches ignore (they are filtered against
the catalog's record ids) and :meth:`VectorStore.prune` deletes.
Brute-force cosine search while a table is small; an ANN index (IVF-PQ with
refine) once it has enough rows to be worth it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

ANN_MIN_ROWS = 50_000
MATRIX_CACHE_FLOATS = 256 * 2**20  # 1 GiB of float32: bigger tables stay in LanceDB


class VectorStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._db = None
        self._matrices: dict[str, tuple] = {}  # table -> (version, ids, row-normalised vectors)
        self._searched: dict[str, int] = {}  # table -> version searched once through LanceDB

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
        t = self._table(table)
        if t is None:
            try:
                self.db.create_table(table, data)
                return
            except ValueError:  # created meanwhile by another process
                t = self.db.open_table(table)
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

    @staticmethod
    def _numpy_search(ids: np.ndarray, mat: np.ndarray, vector: np.ndarray, limit: int):
        v = np.asarray(vector, dtype=np.float32)
        sims = mat @ (v / (np.linalg.norm(v) or 1.0))
        k = min(limit, len(sims))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.lexsort((ids[top], -sims[top]))]
        return ids[top], np.clip(sims[top].astype(np.float64), -1.0, 1.0)

    def cosine(self, table: str, record_ids: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of stored vectors of ``record_ids`` with ``vector`` (NaN where missing)."""
        out = np.full(len(record_ids), np.nan)
        t = self._table(table)
        if t is None or not len(record_ids):
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

    def search(self, table: str, vector: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``limit`` rows by cosine similarity: (record_ids, similarities), best first.

        A process that searches one table version repeatedly (a notebook, a
        benchmark, `gidx eval`) gets it as an in-memory matrix from the second
        search on (a brute-force scan through LanceDB re-reads every vector per
        query: ~80 ms at 10^4 x 4096 against ~8 ms in numpy); a one-shot `gidx
        query` never pays for loading it. Tables with an ANN index always go to LanceDB.
        """
        t = self._table(table)
        if t is None or limit <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        version = t.version
        cached = self._matrices.get(table)
        if cached is not None and cached[0] == version:
            return self._numpy_search(cached[1], cached[2], vector, limit)
        seen = self._searched.get(table)
        if seen == version and not t.list_indices() and t.count_rows() * len(vector) <= MATRIX_CACHE_FLOATS:
            ids, mat = self.vectors(table)
            norms = np.linalg.norm(mat, axis=1)
            mat = mat / np.where(norms > 0, norms, 1.0)[:, None]
            self._matrices[table] = (version, ids, mat)
            return self._numpy_search(ids, mat, vector, limit)
        self._searched[table] = version
        q = t.search(np.asarray(vector, dtype=np.float32)).distance_type("cosine").limit(limit)
        if t.list_indices():
            q = q.refine_factor(10)
        res = q.select(["record_id", "_distance"]).to_arrow()
        return res.column("record_id").to_numpy(), np.clip(1.0 - res.column("_distance").to_numpy(), -1.0, 1.0)

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
