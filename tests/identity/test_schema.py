"""Migration 0002 creates exactly the identity tables of vedina.storage.schema."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vedina.storage.schema import metadata

IDENTITY_TABLES = {"users", "sessions", "api_keys", "one_time_tokens"}


def _names(item) -> set[str]:
    """Table names an autogenerate difference mentions (tuples, nested lists, Table/Index objects)."""
    if isinstance(item, (list, tuple)):
        return set().union(*(_names(part) for part in item)) if item else set()
    if isinstance(item, str):
        return {item}
    if isinstance(item, sa.Table):
        return {item.name}
    table = getattr(item, "table", None)
    return {table.name} if isinstance(table, sa.Table) else set()


async def test_migrated_identity_tables_match_the_metadata(resources):
    def diff(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn, opts={"compare_type": True}), metadata)

    async with resources.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert [d for d in differences if _names(d) & IDENTITY_TABLES] == []
