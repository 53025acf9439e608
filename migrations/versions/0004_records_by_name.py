"""One record per file name: identical contents under two names are two records.

``records.content_hash`` loses its UNIQUE constraint (``name`` keeps its own).
DuckDB cannot drop a constraint with ALTER TABLE, so the table is rebuilt: a
new table with the same columns, the rows copied with their ids, the old table
dropped, the new one renamed. ``record_id_seq`` is left alone, so the next id
follows on. Transactional like every DuckDB DDL: a failure leaves 0003 as it was.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = ("id", "name", "source_path", "content_hash", "genome_id", "n_intervals", "bp_covered",
           "n_chromosomes", "chromosomes", "format", "ingested_at", "extra")


def _records(table: str, unique_hash: bool) -> None:
    """The records table of 0001, with or without a unique content hash."""
    op.create_table(
        table,
        sa.Column("id", sa.Integer, primary_key=True, server_default=sa.text("nextval('record_id_seq')")),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("source_path", sa.String, nullable=False),
        sa.Column("content_hash", sa.String, nullable=False, unique=unique_hash),
        sa.Column("genome_id", sa.Integer, nullable=False),
        sa.Column("n_intervals", sa.BigInteger, nullable=False),
        sa.Column("bp_covered", sa.BigInteger, nullable=False),
        sa.Column("n_chromosomes", sa.Integer, nullable=False),
        sa.Column("chromosomes", sa.String, nullable=False),
        sa.Column("format", sa.String, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("extra", sa.String, nullable=False),
    )


def _rebuild(unique_hash: bool) -> None:
    cols = ", ".join(COLUMNS)
    _records("records_rebuilt", unique_hash)
    op.execute(f"insert into records_rebuilt ({cols}) select {cols} from records order by id")
    op.drop_table("records")
    op.rename_table("records_rebuilt", "records")


def upgrade() -> None:
    _rebuild(unique_hash=False)


def downgrade() -> None:
    dup = op.get_bind().execute(sa.text(
        "select count(*) from (select content_hash from records group by 1 having count(*) > 1)")).scalar()
    if dup:
        raise RuntimeError(f"cannot downgrade to 0003: {dup} content hash(es) are shared by several records "
                           "(0003 allows one record per content); remove the duplicates first")
    _rebuild(unique_hash=True)
