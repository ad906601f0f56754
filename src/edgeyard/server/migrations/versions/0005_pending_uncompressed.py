"""PostgreSQL stores the pending rows' parts without compressing them (STORAGE EXTERNAL): a row
lives for a second or so, and compressing its ~20 kB of merged counts on insert cost the
database backends CPU that the group commit waited on (benchmarks/ingest.py: 64 connections
1,746 -> 2,019 uploads/s, means of two runs each). SQLite does not compress.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pending ALTER COLUMN parts SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE pending ALTER COLUMN parts SET STORAGE EXTENDED")
