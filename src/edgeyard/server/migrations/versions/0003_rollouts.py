"""Releases served to devices (content-addressed files), the stable release per app, rollouts
and their decisions; per-window calls, fallbacks and engine errors on uploads.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    for col in ("calls", "fallbacks", "errors"):
        op.add_column("uploads", sa.Column(col, sa.BigInteger, nullable=False,
                                           server_default="0"))
    op.create_index("ix_uploads_model_release_start", "uploads",
                    ["model", "release", "start_ns"])
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "release_files",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("release", sa.String(100), primary_key=True),
        sa.Column("path", sa.String(500), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "stable",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("previous", sa.String(100), nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("step_started", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_rollouts_model", "rollouts", ["model"])
    op.create_table(
        "rollout_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rollout", sa.String(64), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("why", sa.Text, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
    )
    op.create_index("ix_rollout_decisions_rollout", "rollout_decisions", ["rollout"])


def downgrade() -> None:
    op.drop_index("ix_rollout_decisions_rollout", "rollout_decisions")
    op.drop_table("rollout_decisions")
    op.drop_index("ix_rollouts_model", "rollouts")
    op.drop_table("rollouts")
    op.drop_table("stable")
    op.drop_table("release_files")
    op.drop_table("blobs")
    op.drop_index("ix_uploads_model_release_start", "uploads")
    with op.batch_alter_table("uploads") as batch:  # SQLite drops columns by copying
        for col in ("calls", "fallbacks", "errors"):
            batch.drop_column(col)
