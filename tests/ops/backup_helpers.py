"""Fingerprints of a database (every table's row count and content checksum) for restore tests."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import msgspec
import sqlalchemy as sa

from vedina.config import Settings
from vedina.storage.database import create_engine


def on_database(settings: Settings, target: str) -> Settings:
    """The same settings pointed at a restored database name (real) or SQLite file (embedded)."""
    if settings.storage_profile == "real":
        return msgspec.structs.replace(settings, db_name=target)
    return msgspec.structs.replace(settings, sqlite_path=target)


async def fingerprints(settings: Settings) -> dict[str, tuple[int, str]]:
    """Table -> (row count, checksum): CHECKSUM TABLE on MariaDB, an ordered content hash on SQLite."""
    if settings.storage_profile == "embedded":
        return sqlite_fingerprints(Path(sa.make_url(settings.database_url).database))
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            names = (await conn.exec_driver_sql(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
                "AND table_type = 'BASE TABLE' ORDER BY table_name")).scalars().all()
            result = {}
            for name in names:
                count = (await conn.exec_driver_sql(f"SELECT COUNT(*) FROM `{name}`")).scalar_one()
                checksum = (await conn.exec_driver_sql(f"CHECKSUM TABLE `{name}`")).one()[1]
                result[name] = (count, str(checksum))
            return result
    finally:
        await engine.dispose()


def sqlite_fingerprints(path: Path) -> dict[str, tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        names = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        result = {}
        for name in names:
            width = len(conn.execute(f'SELECT * FROM "{name}" LIMIT 0').description)
            order = ", ".join(str(i) for i in range(1, width + 1))
            rows = conn.execute(f'SELECT * FROM "{name}" ORDER BY {order}').fetchall()
            result[name] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
        return result
    finally:
        conn.close()


async def drop_database(settings: Settings, name: str) -> None:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        await engine.dispose()


async def database_exists(settings: Settings, name: str) -> bool:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(sa.text("SELECT COUNT(*) FROM information_schema.schemata "
                                               "WHERE schema_name = :name"), {"name": name})
            return found.scalar_one() == 1
    finally:
        await engine.dispose()


def scratch_target(settings: Settings, tmp_path: Path, suffix: str) -> str:
    """A restore target of a test's own: a scratch database (real) or SQLite file (embedded)."""
    if settings.storage_profile == "real":
        return f"{settings.db_name}_restore_{suffix}"
    return str(tmp_path / f"restored-{suffix}.sqlite3")


async def cleanup(settings: Settings, *targets: str) -> None:
    """Drop the scratch databases (the SQLite files go with tmp_path)."""
    if settings.storage_profile == "real":
        for target in targets:
            await drop_database(settings, target)
