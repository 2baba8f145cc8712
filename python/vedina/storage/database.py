"""The async SQLAlchemy engine for either profile."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from vedina.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    url = sa.make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url.set(password=settings.db_password or None),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_recycle=1800,
        pool_pre_ping=True,
    )


def create_replica_engine(settings: Settings, host: str, port: int) -> AsyncEngine:
    """A read replica's pool (vedina.storage.replicas): the primary's URL and credentials on another
    host. A replica that does not answer is given up quickly: the primary is there to serve."""
    url = sa.make_url(settings.database_url).set(host=host, port=port, password=settings.db_password or None)
    return create_async_engine(
        url, pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size, pool_recycle=1800,
        pool_pre_ping=True, connect_args={"connect_timeout": 2},
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers in other worker processes go on while one writes;
    # busy_timeout makes a writer wait for the lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
