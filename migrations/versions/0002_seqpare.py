"""Exact seqpare: ground-truth table, its bookkeeping, exact scores in query results.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # seqpare(query record Q, target record R) = the reference's `seqpare R Q`
    op.create_table(
        "seqpare",
        sa.Column("query_id", sa.Integer, nullable=False),
        sa.Column("target_id", sa.Integer, nullable=False),
        sa.Column("n_q", sa.BigInteger, nullable=False),
        sa.Column("n_t", sa.BigInteger, nullable=False),
        sa.Column("teo", sa.Float, nullable=False),
        sa.Column("s", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("query_id", "target_id"),
    )
    # per query record: every target with id <= covered_upto has been compared
    # (record ids only grow, so new records are exactly the ids above it)
    op.create_table(
        "seqpare_progress",
        sa.Column("record_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("covered_upto", sa.Integer, nullable=False),
        sa.Column("top_k", sa.Integer, nullable=False),  # 0 = all pairs with S > 0
        sa.Column("computed_at", sa.DateTime, nullable=False),
    )
    op.add_column("query_results", sa.Column("exact_score", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("query_results", "exact_score")
    op.drop_table("seqpare_progress")
    op.drop_table("seqpare")
