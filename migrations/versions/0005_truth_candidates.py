"""Top-K ground truth from vector candidates: per query record, how it was computed.

``seqpare_progress.candidates``: vector candidates per record of the run that wrote
the row (0: every record was searched, as all-pairs runs and runs before this
revision did); ``seqpare_progress.certified``: whether the record's stored top K is
proven equal to an all-pairs search's (always true for candidates = 0). Existing
rows get 0 and true, which is what they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("seqpare_progress", sa.Column("candidates", sa.Integer, nullable=False, server_default="0"))
    op.add_column("seqpare_progress", sa.Column("certified", sa.Boolean, nullable=False, server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("seqpare_progress", "certified")
    op.drop_column("seqpare_progress", "candidates")
