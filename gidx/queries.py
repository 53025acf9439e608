"""Stored queries: each search can be kept in the catalog (tables ``queries`` and
``query_results``) so that results can be joined with SQL later.

Saving is a write transaction and takes DuckDB's file lock, so it never sits
between a search and its answer:

* :meth:`QueryLog.save` writes any number of finished searches in one
  transaction: a batch query saves all its queries at once, a one-shot
  ``gidx query`` saves after it has printed its answer;
* :meth:`QueryLog.start` runs a background committer for a server: ids are
  reserved in blocks from ``query_id_seq`` (one transaction per block), so an
  answer carries its query id at once, and finished searches are written in group
  commits, a few per second (each commit opens the file, writes, checkpoints:
  ~15 ms of CPU, too much to pay per query). :meth:`QueryLog.flush` writes what
  is queued now (reads of this process call it), :meth:`QueryLog.close` before
  stopping.

Ids come from the catalog's sequence either way, so each saved search has exactly
one row whoever wrote it; ids reserved by a process that dies are skipped, never
reused.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

RESULT_COLUMNS = ("rank", "record_id", "record", "score", "exact_score", "n_intervals")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class QueryRun:
    """One finished search: its ranked records and what the ``queries`` row keeps."""

    table: "object"  # pyarrow Table with RESULT_COLUMNS
    name: str
    source_path: str
    content_hash: str
    n_intervals: int
    k: int
    encoder_id: int
    mode: str  # vector | rerank | exact
    elapsed_ms: float
    warnings: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=_now)
    query_id: int | None = None

    def result(self):
        """The ranked table, with the query id, time, mode and warnings as schema metadata."""
        meta = {b"gidx.query_id": str(self.query_id).encode() if self.query_id else b"",
                b"gidx.elapsed_ms": f"{self.elapsed_ms:.2f}".encode(), b"gidx.mode": self.mode.encode(),
                b"gidx.warnings": "\n".join(self.warnings).encode()}
        return self.table.replace_schema_metadata(meta)


class QueryLog:
    """Writes :class:`QueryRun` rows into one catalog (see the module docstring)."""

    def __init__(self, catalog, block: int = 256, interval: float = 0.25):
        self.catalog = catalog
        self.block = block
        self.interval = interval
        self._ids: list[int] = []
        self._queue: list[QueryRun] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._writing = 0
        self._urgent = False
        self.error: BaseException | None = None

    # ---- synchronous --------------------------------------------------------

    def save(self, runs: list[QueryRun]) -> list[int]:
        """Write ``runs`` (ids assigned to those without one) in one transaction."""
        import pyarrow as pa

        if not runs:
            return []
        with self.catalog.duck(write=True) as conn:
            need = [r for r in runs if r.query_id is None]
            if need:
                fresh = conn.execute(f"select nextval('query_id_seq') from range({len(need)})").fetchall()
                for r, (qid,) in zip(need, fresh):
                    r.query_id = int(qid)
            queries = pa.table({
                "id": pa.array([r.query_id for r in runs], pa.int32()),
                "created_at": pa.array([r.created_at for r in runs], pa.timestamp("us")),
                "name": [r.name for r in runs],
                "source_path": [r.source_path for r in runs],
                "content_hash": [r.content_hash for r in runs],
                "n_intervals": pa.array([r.n_intervals for r in runs], pa.int64()),
                "k": pa.array([r.k for r in runs], pa.int32()),
                "encoder_id": pa.array([r.encoder_id for r in runs], pa.int32()),
                "mode": [r.mode for r in runs],
                "elapsed_ms": pa.array([r.elapsed_ms for r in runs], pa.float64()),
            })
            results = pa.concat_tables([
                pa.table({"query_id": pa.array([r.query_id] * r.table.num_rows, pa.int32()),
                          "rank": r.table["rank"], "record_id": r.table["record_id"],
                          "score": r.table["score"], "exact_score": r.table["exact_score"]})
                for r in runs])
            conn.register("gidx_new_queries", queries)
            conn.register("gidx_new_results", results)
            conn.execute("insert into queries by name select * from gidx_new_queries")
            conn.execute("insert into query_results by name select * from gidx_new_results")
            conn.unregister("gidx_new_queries")
            conn.unregister("gidx_new_results")
        return [r.query_id for r in runs]

    # ---- background ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is None:
            if not self._ids:
                self._ids = self._reserve()[::-1]
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="gidx-query-log", daemon=True)
            self._thread.start()

    def _reserve(self) -> list[int]:
        with self.catalog.duck(write=True) as conn:
            return [int(r[0]) for r in conn.execute(
                f"select nextval('query_id_seq') from range({self.block})").fetchall()]

    def submit(self, run: QueryRun) -> int:
        """Queue ``run`` for the background committer; returns its query id at once."""
        while True:
            with self._cond:
                if self._ids:
                    run.query_id = self._ids.pop()
                    self._queue.append(run)
                    self._cond.notify()
                    return run.query_id
            # out of ids (the committer tops them up, so rarely): reserve a block without
            # holding the queue, which other threads keep using meanwhile
            fresh = self._reserve()
            with self._cond:
                self._ids[:0] = fresh[::-1]

    def pending(self, query_id: int) -> QueryRun | None:
        """A submitted run not yet written (reads in this process can answer from it)."""
        with self._cond:
            return next((r for r in self._queue if r.query_id == query_id), None)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted so far is written."""
        if self._thread is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            while self._queue or self._writing:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"{len(self._queue)} stored queries still waiting for the catalog")
                self._cond.wait(0.05 if left is None else min(0.05, left))

    def close(self) -> None:
        """Write what is queued and stop the committer."""
        if self._thread is None:
            return
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        self._thread = None
        if self._queue:  # the committer gave up (e.g. a full disk): one last try, loudly
            runs, self._queue = self._queue, []
            self.save(runs)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait(1.0)
                    if not self._queue and len(self._ids) < self.block // 2 and not self._stop:
                        break  # idle: top up the ids
                if not self._queue and self._stop:
                    return
                runs, self._queue = self._queue, []
                self._writing = len(runs)
            try:
                self.save(runs)
                with self._cond:
                    low = len(self._ids) < self.block // 2
                if low:  # keep ids in hand, so that submit never waits for the catalog
                    fresh = self._reserve()
                    with self._cond:
                        self._ids[:0] = fresh[::-1]
                self.error = None
            except Exception as e:  # locked for long, disk full: keep them and retry
                self.error = e
                with self._cond:
                    self._queue[:0] = runs
                    self._writing = 0
                    if self._stop:
                        return
                time.sleep(0.5)
                continue
            with self._cond:
                self._writing = 0
                self._cond.notify_all()
            with self._cond:  # let the next group gather (a flush cuts it short)
                self._cond.wait_for(lambda: self._stop or self._urgent, timeout=self.interval)
                self._urgent = False
