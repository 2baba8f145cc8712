"""Refresh-token rows: one per token, grouped into families (one family = one login)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import sessions


def _current(now: datetime):
    """The live head of a family: not rotated, not revoked, not expired."""
    return sa.and_(sessions.c.rotated_at.is_(None), sessions.c.revoked_at.is_(None), sessions.c.expires_at > now)


# Built once (bound parameters): see storage/movies.py.
_ACTIVE_FAMILY = sa.select(sessions.c.user_id, sessions.c.expires_at).where(
    sessions.c.family_id == sa.bindparam("family_id"), _current(sa.bindparam("now"))
)


class SessionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list_active(self, user_id: int) -> list[dict[str, Any]]:
        query = (
            sa.select(sessions)
            .where(sessions.c.user_id == user_id, _current(utcnow()))
            .order_by(sessions.c.started_at.desc(), sessions.c.id.desc())
        )
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    async def active_family(self, family_id: str) -> dict[str, Any] | None:
        """The live head of ``family_id`` (user_id, expires_at), or None once revoked/expired."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_ACTIVE_FAMILY, {"family_id": family_id, "now": utcnow()})).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        result = await conn.execute(sa.insert(sessions).values(created_at=utcnow(), **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def get_by_hash(conn: AsyncConnection, token_hash: str) -> dict[str, Any] | None:
        row = (await conn.execute(sa.select(sessions).where(sessions.c.refresh_token_hash == token_hash))).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def mark_rotated(conn: AsyncConnection, row_id: int) -> bool:
        """Use a refresh token: True for the one caller that got to it first."""
        now = utcnow()
        result = await conn.execute(
            sa.update(sessions)
            .where(sessions.c.id == row_id, sessions.c.rotated_at.is_(None), sessions.c.revoked_at.is_(None))
            .values(rotated_at=now, last_used_at=now)
        )
        return result.rowcount == 1

    @staticmethod
    async def revoke_family(conn: AsyncConnection, family_id: str, *, user_id: int | None = None) -> bool:
        """Revoke every token of a family; with ``user_id`` only if it is theirs. True if one was live."""
        condition = [sessions.c.family_id == family_id, sessions.c.revoked_at.is_(None)]
        if user_id is not None:
            condition.append(sessions.c.user_id == user_id)
        result = await conn.execute(sa.update(sessions).where(*condition).values(revoked_at=utcnow()))
        return result.rowcount > 0

    @staticmethod
    async def revoke_user(conn: AsyncConnection, user_id: int, *, keep_family: str | None = None) -> list[str]:
        """Revoke all of a user's families (but ``keep_family``); returns the families revoked."""
        condition = [sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)]
        if keep_family is not None:
            condition.append(sessions.c.family_id != keep_family)
        families = (await conn.execute(sa.select(sessions.c.family_id).where(*condition).distinct())).scalars().all()
        await conn.execute(sa.update(sessions).where(*condition).values(revoked_at=utcnow()))
        return list(families)
