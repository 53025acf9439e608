"""The catalog: a DuckDB file (``catalog.duckdb``) accessed through SQLAlchemy,
its schema owned by the Alembic migrations in ``gidx.migrations``.

DuckDB lets one process write at a time, and a writer locks out readers of
other processes too. So gidx never keeps a connection open: every access is
``open -> one transaction -> close`` (``NullPool``), heavy work (parsing,
embedding, vector and segment writes) happens outside, and a connection that
hits another process's lock retries with backoff for ``lock_timeout`` seconds
before giving up with a clear message.

Two ways in: :meth:`Catalog.connect` (SQLAlchemy, for ingest, truth, training
and the Alembic migrations) and :meth:`Catalog.duck` (the DuckDB connection
alone, for the query path: importing SQLAlchemy and duckdb_engine costs ~0.25 s,
half of a one-shot ``gidx query``). Within one process every connection to the
file is taken under one lock: DuckDB refuses a read-only and a read-write
connection to the same file in one process at once, and a server answers
queries from several threads.

The schema revision is checked on every open without importing Alembic or
SQLAlchemy (it reads ``alembic_version``): an older catalog is upgraded in
place, a newer one (written by a newer gidx) is refused.
"""

from __future__ import annotations

import os
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import IndexLockedError, IndexStateError

SCHEMA_HEAD = "0005"  # tests check this equals the Alembic head
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
LOCK_TIMEOUT = float(os.environ.get("GIDX_LOCK_TIMEOUT", "30"))


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


_FILE_LOCKS: dict[str, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    """The process-wide lock of one catalog file (re-entrant: a transaction may read
    the genome through a nested read-only connection)."""
    key = os.path.realpath(path)
    with _FILE_LOCKS_GUARD:
        lock = _FILE_LOCKS.get(key)
        if lock is None:
            lock = _FILE_LOCKS[key] = threading.RLock()
        return lock


class Catalog:
    def __init__(self, path: Path, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._engines: dict[bool, object] = {}
        self._lock = _file_lock(self.path)

    def _engine(self, write: bool):
        # Engines are cached (the dialect's first-connect set-up runs once); NullPool
        # still closes the DuckDB connection, and so its file lock, after every use.
        engine = self._engines.get(write)
        if engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            engine = self._engines[write] = create_engine(
                f"duckdb:///{self.path}", poolclass=NullPool, connect_args={"read_only": not write}
            )
        return engine

    def signature(self) -> tuple:
        """Changes whenever a transaction commits (the WAL or the file changes)."""
        sig = []
        for p in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = p.stat()
                sig.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    def _open(self, opener, write: bool, timeout: float | None = None):
        """``opener()`` under this process's lock of the file, retried while another
        process holds the file (for ``timeout`` seconds, default ``lock_timeout``).
        Returns the connection with the process lock held (release it when the
        connection is closed); between tries the lock is free, so this process's other
        threads are not held up by another process's writer."""
        if not write and not self.path.exists():
            raise IndexStateError(f"{self.path}: catalog not found (is this a gidx index? run: gidx init)")
        timeout = self.lock_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            # this process's transactions are short: wait for them, within the deadline
            if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()) if timeout else 0.05):
                raise IndexLockedError(f"{self.path}: busy in this process for over {timeout:.0f} s")
            try:
                return opener()
            except Exception as e:
                self._lock.release()
                orig = getattr(e, "orig", None) or e  # SQLAlchemy wraps the DuckDB error
                if not _is_lock_error(orig):
                    if "read-only" in str(e).lower() or "Permission denied" in str(e):
                        raise IndexStateError(f"{self.path}: cannot open the catalog for writing "
                                              f"({str(orig).splitlines()[0]})") from None
                    raise
                if time.monotonic() > deadline:
                    raise IndexLockedError(
                        f"{self.path}: another gidx process has held the catalog for over "
                        f"{timeout:.0f} s; try again when it finishes (GIDX_LOCK_TIMEOUT sets the wait)"
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.5, 0.2)

    @contextmanager
    def connect(self, write: bool = False) -> Iterator["object"]:
        """One transaction on a fresh SQLAlchemy connection; retried while another process holds the lock."""
        engine = self._engine(write)
        conn = self._open(engine.connect, write)
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()
            self._lock.release()

    @contextmanager
    def duck(self, write: bool = False, timeout: float | None = None,
             config: dict | None = None) -> Iterator["object"]:
        """One transaction on a fresh DuckDB connection (no SQLAlchemy), same rules as
        :meth:`connect`; ``timeout``: seconds to wait for another process's lock;
        ``config``: DuckDB settings of the connection (e.g. no external access)."""
        import duckdb

        conn = self._open(lambda: duckdb.connect(str(self.path), read_only=not write, config=config or {}),
                          write, timeout)
        try:
            conn.begin()
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
            self._lock.release()

    @staticmethod
    def raw(conn):
        """The DuckDB connection under a SQLAlchemy one (for Arrow bulk I/O)."""
        return conn.connection.driver_connection

    # ---- schema ---------------------------------------------------------

    @staticmethod
    def _revision(conn) -> str | None:
        has = conn.execute(
            "select count(*) from information_schema.tables where table_name = 'alembic_version'").fetchall()[0][0]
        if not has:
            return None
        return conn.execute("select version_num from alembic_version").fetchall()[0][0]

    def revision(self) -> str | None:
        with self.duck() as conn:
            return self._revision(conn)

    def ensure_schema(self, create: bool = False, then=None) -> None:
        """Create (``create=True``) or check/upgrade the schema. ``then(conn)``: more
        reads in the same transaction when the schema is current (a connection less
        for a one-shot command)."""
        if create:
            self._alembic_upgrade()
            return
        with self.duck() as conn:
            rev = self._revision(conn)
            if rev == SCHEMA_HEAD:
                if then is not None:
                    then(conn)
                return
        if rev is None:
            raise IndexStateError(f"{self.path}: not a gidx catalog (no schema revision)")
        if rev not in KNOWN_REVISIONS:
            raise IndexStateError(
                f"{self.path}: schema revision {rev!r} is newer than this gidx knows "
                f"(latest {SCHEMA_HEAD!r}); upgrade gidx to open this index"
            )
        import sys

        print(f"gidx: upgrading catalog schema {rev} -> {SCHEMA_HEAD}", file=sys.stderr)
        self._alembic_upgrade()

    def _alembic_upgrade(self, target: str = "head") -> None:
        from alembic import command
        from alembic.config import Config

        from . import migrations_path

        cfg = Config()
        cfg.set_main_option("script_location", str(migrations_path()))
        with self.connect(write=True) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, target)
