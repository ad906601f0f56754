"""Alembic environment: runs on the connection `edgeyard.server.db.migrate` hands over."""

from __future__ import annotations

from alembic import context

from edgeyard.server.db import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
context.run_migrations()
