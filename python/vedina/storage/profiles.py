"""Profile queries (SQLAlchemy Core, bound parameters only).

Reads open their own connection; writes are static methods that take the
caller's connection. Writes that must see every other write of the account
first take :meth:`ProfileRepository.lock_account`: a no-op UPDATE of the
user's row, which is a row lock on MariaDB and the write lock on SQLite (a
first statement that writes, so SQLite never has to upgrade a read snapshot).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import profiles, users

_COLUMNS = (profiles.c.id, profiles.c.user_id, profiles.c.name, profiles.c.max_age_rating, profiles.c.is_main)
# Main first, then by creation: the order of the list answer.
_LIST = (
    sa.select(*_COLUMNS)
    .where(profiles.c.user_id == sa.bindparam("user_id"))
    .order_by(profiles.c.is_main.desc(), profiles.c.id)
)


class ProfileRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list(self, user_id: int) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_LIST, {"user_id": user_id})).mappings().all()
        return [plain(r) for r in rows]

    @staticmethod
    async def lock_account(conn: AsyncConnection, user_id: int) -> None:
        await conn.execute(sa.update(users).where(users.c.id == user_id).values(updated_at=users.c.updated_at))

    @staticmethod
    async def lock_profile(conn: AsyncConnection, *, profile_id: int, user_id: int) -> bool:
        """Lock one profile of ``user_id`` (a no-op UPDATE); False when it is not theirs."""
        result = await conn.execute(
            sa.update(profiles)
            .where(profiles.c.id == profile_id, profiles.c.user_id == user_id)
            .values(name=profiles.c.name)
        )
        return result.rowcount > 0

    @staticmethod
    async def names(conn: AsyncConnection, user_id: int) -> dict[int, str]:
        """Profile id -> name, read inside the caller's transaction."""
        query = sa.select(profiles.c.id, profiles.c.name).where(profiles.c.user_id == user_id)
        return {row[0]: row[1] for row in await conn.execute(query)}

    @staticmethod
    async def get(conn: AsyncConnection, *, profile_id: int, user_id: int) -> dict[str, Any] | None:
        query = sa.select(*_COLUMNS).where(profiles.c.id == profile_id, profiles.c.user_id == user_id)
        row = (await conn.execute(query)).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def insert(conn: AsyncConnection, *, user_id: int, name: str, max_age_rating: str | None, is_main: bool) -> int:
        result = await conn.execute(
            sa.insert(profiles).values(
                user_id=user_id, name=name, max_age_rating=max_age_rating, is_main=is_main, created_at=utcnow()
            )
        )
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def update(conn: AsyncConnection, *, profile_id: int, **values: Any) -> None:
        await conn.execute(sa.update(profiles).where(profiles.c.id == profile_id).values(**values))

    @staticmethod
    async def delete(conn: AsyncConnection, *, profile_id: int) -> None:
        """Its progress, watchlist and ratings go with it (ON DELETE CASCADE)."""
        await conn.execute(sa.delete(profiles).where(profiles.c.id == profile_id))
