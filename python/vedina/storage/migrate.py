"""Apply the Alembic migrations to the configured database (``vedina migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from vedina.config import Settings
from vedina.storage.database import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def _run(settings: Settings, operation, revision: str) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync_conn: operation(_alembic_config(sync_conn), revision))
    finally:
        await engine.dispose()


async def upgrade(settings: Settings, revision: str = "head") -> None:
    await _run(settings, command.upgrade, revision)


async def downgrade(settings: Settings, revision: str) -> None:
    await _run(settings, command.downgrade, revision)
