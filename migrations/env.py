"""Alembic environment for the gidx catalog (DuckDB through duckdb_engine).

gidx runs migrations in code with an open connection in
``config.attributes["connection"]``; running ``alembic`` by hand from this
folder uses ``sqlalchemy.url`` from alembic.ini instead.
"""

from alembic import context
from alembic.ddl.impl import DefaultImpl
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool


class DuckDBImpl(DefaultImpl):
    """Alembic has no DuckDB dialect; defining this class registers one.
    DuckDB DDL is transactional, so a failed migration leaves nothing behind."""

    __dialect__ = "duckdb"
    transactional_ddl = True


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"), poolclass=NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run()
