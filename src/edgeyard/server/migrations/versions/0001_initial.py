"""The first schema: releases, uploads, aggregates, counters, api_keys, findings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("reference", sa.Text, nullable=False),
        sa.Column("accuracy", sa.Float, nullable=True),
        sa.UniqueConstraint("model", "release", name="uq_releases_model_release"),
    )
    op.create_table(
        "uploads",
        sa.Column("upload_id", sa.String(128), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
    )
    op.create_index("ix_uploads_model_release_received", "uploads",
                    ["model", "release", "received_at"])
    op.create_table(
        "aggregates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("signal", sa.String(300), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("sketch", sa.LargeBinary, nullable=False),
        sa.Column("uploads", sa.Integer, nullable=False),
        sa.UniqueConstraint("model", "release", "profile", "signal", "bucket",
                            name="uq_aggregates_key"),
    )
    op.create_index("ix_aggregates_query", "aggregates", ["model", "release", "bucket"])
    op.create_table(
        "counters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("attrs", sa.String(1000), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("model", "release", "profile", "bucket", "name", "attrs",
                            name="uq_counters_key"),
    )
    op.create_index("ix_counters_query", "counters", ["model", "release", "bucket"])
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("app", sa.String(200), nullable=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("signal", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("notified", sa.Boolean, nullable=False),
        sa.UniqueConstraint("model", "release", "profile", "signal", "kind",
                            name="uq_findings_key"),
    )


def downgrade() -> None:
    for table in ("findings", "api_keys", "counters", "aggregates", "uploads", "releases"):
        op.drop_table(table)
