"""Alembic migrations of the configured database: apply, check, and write new ones.

- ``vedina migrate``: upgrade to head.
- ``vedina migrate --check``: exit non-zero when a migration is pending or the
  database differs from ``storage/schema.py`` (tables, columns, types, indexes,
  constraints): a deploy gate. A database at a revision this release does not
  know (a newer release migrated it) passes: migrations are expand/contract (ADR 0015).
- ``vedina migrate --autogenerate "add genres table"``: write the next revision
  by comparing an up-to-date database with ``storage/schema.py`` (Alembic
  autogenerate); review it, then commit it. Migrations are frozen snapshots
  (ADR 0002): a revision never imports the schema module.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from vedina.config import Settings
from vedina.storage.database import create_engine
from vedina.storage.schema import metadata, outside_metadata

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection=None, *, new_versions: Path | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if new_versions is not None:  # write a revision elsewhere (it still follows the package's head)
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join([str(MIGRATIONS / "versions"), str(new_versions)]))
    config.attributes["connection"] = connection
    return config


async def _run(settings: Settings, operation, *, transaction: bool = True):
    engine = create_engine(settings)
    try:
        async with engine.begin() if transaction else engine.connect() as conn:
            return await conn.run_sync(operation)
    finally:
        await engine.dispose()


async def upgrade(settings: Settings, revision: str = "head") -> None:
    await _run(settings, lambda sync_conn: command.upgrade(_alembic_config(sync_conn), revision))


async def downgrade(settings: Settings, revision: str) -> None:
    await _run(settings, lambda sync_conn: command.downgrade(_alembic_config(sync_conn), revision))


async def pending(settings: Settings) -> list[str]:
    """Revisions between the database's and head (empty when up to date)."""

    def read(sync_conn) -> list[str]:
        current = MigrationContext.configure(sync_conn).get_current_revision()
        script = ScriptDirectory.from_config(_alembic_config())
        return [r.revision for r in script.iterate_revisions("head", current)]

    return await _run(settings, read, transaction=False)


async def newer_revision(settings: Settings) -> str | None:
    """The database's revision when this release does not know it (a newer release has
    already migrated it), else None. Migrations only expand the schema (ADR 0015), so this
    release still runs on it: a rollback, or the old half of a rolling deploy."""

    def read(sync_conn) -> str | None:
        current = MigrationContext.configure(sync_conn).get_current_revision()
        if current is None:
            return None
        try:
            ScriptDirectory.from_config(_alembic_config()).get_revision(current)
        except CommandError:  # "Can't locate revision"
            return current
        return None

    return await _run(settings, read, transaction=False)


async def drift(settings: Settings) -> list[str]:
    """What differs between the database and ``storage/schema.py``, as Alembic sees it."""

    def compare(sync_conn) -> list[str]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True, "include_object": outside_metadata})
        return [repr(difference) for difference in compare_metadata(context, metadata)]

    return await _run(settings, compare, transaction=False)


async def autogenerate(settings: Settings, message: str, *, directory: Path | None = None) -> str:
    """Write the next revision (into ``directory``, default the package's versions folder)
    from the difference between the database (at head) and the schema; returns its path."""
    waiting = await pending(settings)
    if waiting:
        raise RuntimeError(f"apply the pending migrations first: {', '.join(waiting)}")

    def write(sync_conn) -> str:
        config = _alembic_config(sync_conn, new_versions=directory)
        head = ScriptDirectory.from_config(config).get_current_head()
        script = command.revision(
            config, message=message, autogenerate=True, rev_id=f"{int(head) + 1:04d}",  # revisions are numbered
            version_path=str(directory) if directory is not None else None,
        )
        return script.path

    return await _run(settings, write)
