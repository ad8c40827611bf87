"""Initial schema: logs, tree hashes, checkpoints, entries, evidence, peers, manifests,
local content, alerts and witness state (see federation/store/schema.py).

Revision ID: 0001
Revises:
Create Date: 2026-11-29 04:04:36.748618
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("origin", "size"),
    )
    op.create_table(
        "entries",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signal_kind", sa.String(length=8), nullable=True),
        sa.Column("signal_value", sa.String(length=64), nullable=True),
        sa.Column("labels", sa.Text(), nullable=True),
        sa.Column("target_origin", sa.String(length=255), nullable=True),
        sa.Column("target_index", sa.BigInteger(), nullable=True),
        sa.Column("verdict", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("origin", "idx"),
        sa.UniqueConstraint("origin", "entry_id", name="uq_entries_origin_entry_id"),
    )
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_index("ix_entries_signal", ["signal_kind", "signal_value"], unique=False)
        batch_op.create_index("ix_entries_target", ["target_origin", "target_index"], unique=False)

    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("note_a", sa.Text(), nullable=False),
        sa.Column("note_b", sa.Text(), nullable=False),
        sa.Column("proof", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("detected_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "local_content",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(length=256), nullable=False),
        sa.Column("signal_kind", sa.String(length=8), nullable=False),
        sa.Column("signal_value", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ref", "signal_kind", "signal_value", name="uq_local_content"),
    )
    op.create_table(
        "logs",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("frozen_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("origin"),
    )
    op.create_table(
        "manifests",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("accepted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "peers",
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("last_success", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("backoff_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_table(
        "tree_hashes",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("origin", "position"),
    )
    op.create_table(
        "witness_state",
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("origin"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("local_id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=255), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["local_id"], ["local_content.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("local_id", "origin", "idx", name="uq_alerts"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("witness_state")
    op.drop_table("tree_hashes")
    op.drop_table("peers")
    op.drop_table("manifests")
    op.drop_table("logs")
    op.drop_table("local_content")
    op.drop_table("evidence")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_target")
        batch_op.drop_index("ix_entries_signal")

    op.drop_table("entries")
    op.drop_table("checkpoints")
