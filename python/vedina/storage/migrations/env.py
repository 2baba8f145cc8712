"""Alembic environment: runs migrations on the engine that vedina.storage.migrate hands over."""

from __future__ import annotations

from alembic import context

from vedina.storage.schema import metadata, outside_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True,
    include_object=outside_metadata,
)
with context.begin_transaction():
    context.run_migrations()
