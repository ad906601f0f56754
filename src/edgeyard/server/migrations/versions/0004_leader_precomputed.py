"""The leader of the service's workers, drift results precomputed when a bucket closes, and the
windows appended by ingestion that the compactor has yet to merge.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "leader",
        sa.Column("role", sa.String(40), primary_key=True),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("beat", sa.Float, nullable=False),
    )
    op.create_table(
        "drift_results",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("release", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("span_s", sa.Float, primary_key=True),
        sa.Column("step_s", sa.Float, primary_key=True),
        sa.Column("end", sa.Float, nullable=False),
        sa.Column("computed_at", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )


    op.create_table(
        "pending",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("upload_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("profile", sa.String(100), nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("parts", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pending")
    op.drop_table("drift_results")
    op.drop_table("leader")
