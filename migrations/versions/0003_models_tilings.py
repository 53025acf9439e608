"""Tilings of the tile memo and trained M models.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("tiling_id_seq")))
    op.execute(sa.schema.CreateSequence(sa.Sequence("model_id_seq")))
    op.create_table(
        "tilings",
        sa.Column("id", sa.Integer, primary_key=True, server_default=sa.text("nextval('tiling_id_seq')")),
        sa.Column("identity", sa.String, nullable=False, unique=True),
        sa.Column("params", sa.String, nullable=False),  # JSON of Tiling.params()
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True, server_default=sa.text("nextval('model_id_seq')")),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),  # training | ready | failed
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("config", sa.String, nullable=False),  # JSON: model architecture
        sa.Column("hyperparams", sa.String, nullable=False),  # JSON: training settings
        sa.Column("data_version", sa.String, nullable=False),  # which records / ground truth it saw
        sa.Column("metrics", sa.String, nullable=True),  # JSON: validation recall, tau, ...
        sa.Column("checkpoint", sa.String, nullable=True),  # path under models/
        sa.Column("sequence_encoder_id", sa.Integer, nullable=True),
        sa.Column("tiling_id", sa.Integer, nullable=True),
        sa.Column("set_encoder_id", sa.Integer, nullable=True),  # its row in encoders once ready
    )


def downgrade() -> None:
    op.drop_table("models")
    op.drop_table("tilings")
    op.execute(sa.schema.DropSequence(sa.Sequence("model_id_seq")))
    op.execute(sa.schema.DropSequence(sa.Sequence("tiling_id_seq")))
