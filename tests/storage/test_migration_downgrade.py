"""Every migration goes down and up again (a rollback of a release that had to be undone),
on a database of its own: base -> head -> base -> head leaves the schema without drift."""

from __future__ import annotations

import sqlalchemy as sa

from tests.conftest import TEST_DB, profile_env
from vedina.config import load_settings
from vedina.storage import migrate
from vedina.storage.database import create_engine

SCRATCH_DB = "vedina_scratch_migrations"


async def _tables(settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _recreate_scratch_database(profile: str, tmp_path) -> None:
    if profile != "real":
        return
    engine = create_engine(load_settings(profile_env(profile, tmp_path, database=TEST_DB, redis_db=2, amqp_prefix="x")))
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP DATABASE IF EXISTS {SCRATCH_DB}"))
            await conn.execute(sa.text(f"CREATE DATABASE {SCRATCH_DB} CHARACTER SET utf8mb4 "
                                       "COLLATE utf8mb4_unicode_ci"))
    finally:
        await engine.dispose()


async def test_every_migration_goes_down_and_up_again(profile, tmp_path):
    await _recreate_scratch_database(profile, tmp_path)
    settings = load_settings(profile_env(profile, tmp_path, database=SCRATCH_DB, redis_db=2, amqp_prefix="x"))
    await migrate.upgrade(settings)
    at_head = await _tables(settings)
    assert {"movies", "users", "subscriptions", "comments", "blog_posts"} <= at_head

    await migrate.downgrade(settings, "base")
    assert await _tables(settings) <= {"alembic_version"}
    assert len(await migrate.pending(settings)) >= 8

    await migrate.upgrade(settings)
    assert await _tables(settings) == at_head
    assert await migrate.pending(settings) == [] and await migrate.drift(settings) == []
