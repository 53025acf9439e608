"""The catalog: a DuckDB file (``catalog.duckdb``) accessed through SQLAlchemy,
its schema owned by the Alembic migrations in ``gidx.migrations``.

DuckDB lets one process write at a time, and a writer locks out readers of
other processes too. So gidx never keeps a connection open: every access is
``open -> one transaction -> close`` (``NullPool``), heavy work (parsing,
embedding, vector and segment writes) happens outside, and a connection that
hits another process's lock retries with backoff for ``lock_timeout`` seconds
before giving up with a clear message.

The schema revision is checked on every open without importing Alembic
(it reads ``alembic_version``): an older catalog is upgraded in place, a
newer one (written by a newer gidx) is refused.
"""

from __future__ import annotations

import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import IndexLockedError, IndexStateError

SCHEMA_HEAD = "0003"  # tests check this equals the Alembic head
KNOWN_REVISIONS = ("0001", "0002", "0003")
LOCK_TIMEOUT = float(os.environ.get("GIDX_LOCK_TIMEOUT", "30"))


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


class Catalog:
    def __init__(self, path: Path, lock_timeout: float = LOCK_TIMEOUT):
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._engines: dict[bool, object] = {}

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

    @contextmanager
    def connect(self, write: bool = False) -> Iterator["object"]:
        """One transaction on a fresh connection; retried while another process holds the lock."""
        from sqlalchemy.exc import DBAPIError

        if not write and not self.path.exists():
            raise IndexStateError(f"{self.path}: catalog not found (is this a gidx index? run: gidx init)")
        engine = self._engine(write)
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                conn = engine.connect()
                break
            except DBAPIError as e:
                if not _is_lock_error(e.orig if e.orig is not None else e):
                    if "read-only" in str(e).lower() or "Permission denied" in str(e):
                        raise IndexStateError(f"{self.path}: cannot open the catalog for writing ({str(e.orig).splitlines()[0]})") from None
                    raise
                if time.monotonic() > deadline:
                    raise IndexLockedError(
                        f"{self.path}: another gidx process has held the catalog for over "
                        f"{self.lock_timeout:.0f} s; try again when it finishes (GIDX_LOCK_TIMEOUT sets the wait)"
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 1.5, 0.2)
        try:
            with conn.begin():
                yield conn
        finally:
            conn.close()

    @staticmethod
    def raw(conn):
        """The DuckDB connection under a SQLAlchemy one (for Arrow bulk I/O)."""
        return conn.connection.driver_connection

    # ---- schema ---------------------------------------------------------

    def revision(self) -> str | None:
        from sqlalchemy import text

        with self.connect(write=False) as conn:
            has = conn.execute(text(
                "select count(*) from information_schema.tables where table_name = 'alembic_version'"
            )).scalar()
            if not has:
                return None
            return conn.execute(text("select version_num from alembic_version")).scalar()

    def ensure_schema(self, create: bool = False) -> None:
        """Create (``create=True``) or check/upgrade the schema."""
        if create:
            self._alembic_upgrade()
            return
        rev = self.revision()
        if rev == SCHEMA_HEAD:
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
