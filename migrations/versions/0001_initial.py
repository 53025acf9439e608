"""Initial catalog: genomes, chromosomes, encoders, records, intervals, queries.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SEQUENCES = ("genome_id_seq", "encoder_id_seq", "record_id_seq", "query_id_seq")


def _id(seq: str) -> sa.Column:
    return sa.Column("id", sa.Integer, primary_key=True, server_default=sa.text(f"nextval('{seq}')"))


def upgrade() -> None:
    for seq in SEQUENCES:
        op.execute(sa.schema.CreateSequence(sa.Sequence(seq)))
    op.create_table(
        "settings",
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("value", sa.String, nullable=False),
    )
    op.create_table(
        "genomes",
        _id("genome_id_seq"),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),  # fasta | synthetic
        sa.Column("source", sa.String, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("digest", sa.String, nullable=False, unique=True),
        sa.Column("n_chroms", sa.Integer, nullable=False),
        sa.Column("total_bp", sa.BigInteger, nullable=False),
        sa.Column("spec", sa.String, nullable=False),  # JSON: names, lengths, ...
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "chromosomes",
        sa.Column("genome_id", sa.Integer, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("genome_id", "code"),
    )
    op.create_table(
        "chrom_aliases",
        sa.Column("genome_id", sa.Integer, nullable=False),
        sa.Column("alias", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("genome_id", "alias"),
    )
    op.create_table(
        "encoders",
        _id("encoder_id_seq"),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),  # set | sequence
        sa.Column("identity", sa.String, nullable=False, unique=True),
        sa.Column("params", sa.String, nullable=False),  # JSON
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "records",
        _id("record_id_seq"),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("source_path", sa.String, nullable=False),
        sa.Column("content_hash", sa.String, nullable=False, unique=True),
        sa.Column("genome_id", sa.Integer, nullable=False),
        sa.Column("n_intervals", sa.BigInteger, nullable=False),
        sa.Column("bp_covered", sa.BigInteger, nullable=False),
        sa.Column("n_chromosomes", sa.Integer, nullable=False),
        sa.Column("chromosomes", sa.String, nullable=False),  # comma-separated, genome order
        sa.Column("format", sa.String, nullable=False),
        sa.Column("ingested_at", sa.DateTime, nullable=False),
        sa.Column("extra", sa.String, nullable=False),  # JSON: file size, columns, header lines, ...
    )
    op.create_table(
        "intervals",
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("i", sa.Integer, nullable=False),  # position in file order (seqpare ties use it)
        sa.Column("chrom", sa.String, nullable=False),
        sa.Column("chrom_start", sa.BigInteger, nullable=False),
        sa.Column("chrom_end", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "queries",
        _id("query_id_seq"),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("source_path", sa.String, nullable=False),
        sa.Column("content_hash", sa.String, nullable=False),
        sa.Column("n_intervals", sa.BigInteger, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("encoder_id", sa.Integer, nullable=False),
        sa.Column("mode", sa.String, nullable=False),  # vector | rerank | exact
        sa.Column("elapsed_ms", sa.Float, nullable=False),
    )
    op.create_table(
        "query_results",
        sa.Column("query_id", sa.Integer, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("query_id", "rank"),
    )


def downgrade() -> None:
    for t in ("query_results", "queries", "intervals", "records", "encoders", "chrom_aliases",
              "chromosomes", "genomes", "settings"):
        op.drop_table(t)
    for seq in SEQUENCES:
        op.execute(sa.schema.DropSequence(sa.Sequence(seq)))
