"""User and one-time-token queries (SQLAlchemy Core, bound parameters only).

Reads open their own connection; writes are static methods that take the
caller's connection, so a service can commit a change and its outbox job in
one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import one_time_tokens, users

_PUBLIC = (
    users.c.id,
    users.c.email,
    users.c.display_name,
    users.c.role,
    users.c.status,
    users.c.email_verified_at,
    users.c.created_at,
    users.c.updated_at,
)



_GET_USER = sa.select(*_PUBLIC).where(users.c.id == sa.bindparam("user_id"))  # built once: see storage/movies.py


def _like(term: str) -> str:
    """A LIKE pattern matching ``term`` literally anywhere (``\\`` escapes)."""
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, user_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET_USER, {"user_id": user_id})).mappings().first()
        return None if row is None else plain(row)

    async def get_credentials(self, *, email: str | None = None, user_id: int | None = None) -> dict[str, Any] | None:
        """The public columns plus ``password_hash``, by email or id."""
        query = sa.select(*_PUBLIC, users.c.password_hash)
        query = query.where(users.c.email == email) if email is not None else query.where(users.c.id == user_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else plain(row)

    async def list(
        self, *, offset: int, limit: int, search: str | None = None, role: str | None = None, status: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        conditions = []
        if search:
            pattern = _like(search)
            conditions.append(
                sa.or_(
                    sa.func.lower(users.c.email).like(pattern, escape="\\"),
                    sa.func.lower(users.c.display_name).like(pattern, escape="\\"),
                )
            )
        if role:
            conditions.append(users.c.role == role)
        if status:
            conditions.append(users.c.status == status)
        page = sa.select(*_PUBLIC).where(*conditions).order_by(users.c.id).offset(offset).limit(limit)
        count = sa.select(sa.func.count()).select_from(users).where(*conditions)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(page)).mappings().all()
            total = (await conn.execute(count)).scalar_one()
        return [plain(r) for r in rows], total

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        now = utcnow()
        result = await conn.execute(sa.insert(users).values(created_at=now, updated_at=now, **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def status_and_role(conn: AsyncConnection, user_id: int) -> tuple[str, str] | None:
        """What the account is now, read inside the caller's transaction."""
        row = (await conn.execute(sa.select(users.c.status, users.c.role).where(users.c.id == user_id))).first()
        return None if row is None else (row.status, row.role)

    @staticmethod
    async def update(conn: AsyncConnection, user_id: int, **values: Any) -> bool:
        result = await conn.execute(sa.update(users).where(users.c.id == user_id).values(updated_at=utcnow(), **values))
        return result.rowcount > 0


class OneTimeTokenRepository:
    """Email verification and password reset tokens, by sha256."""

    @staticmethod
    async def insert(
        conn: AsyncConnection, *, user_id: int, purpose: str, token_hash: str, expires_at: datetime
    ) -> None:
        await conn.execute(
            sa.insert(one_time_tokens).values(
                user_id=user_id, purpose=purpose, token_hash=token_hash, created_at=utcnow(), expires_at=expires_at
            )
        )

    @staticmethod
    async def consume(conn: AsyncConnection, *, token_hash: str, purpose: str) -> int | None:
        """Mark the token used and return its user id; None if unknown, used or expired.

        The conditional UPDATE makes use single: of two concurrent attempts one
        changes the row and the other sees rowcount 0.
        """
        now = utcnow()
        used = await conn.execute(
            sa.update(one_time_tokens)
            .where(
                one_time_tokens.c.token_hash == token_hash,
                one_time_tokens.c.purpose == purpose,
                one_time_tokens.c.used_at.is_(None),
                one_time_tokens.c.expires_at > now,
            )
            .values(used_at=now)
        )
        if used.rowcount != 1:
            return None
        query = sa.select(one_time_tokens.c.user_id).where(one_time_tokens.c.token_hash == token_hash)
        user_id = (await conn.execute(query)).scalar_one()
        # Any other outstanding token of the same purpose is void from now on.
        await conn.execute(
            sa.update(one_time_tokens)
            .where(
                one_time_tokens.c.user_id == user_id,
                one_time_tokens.c.purpose == purpose,
                one_time_tokens.c.used_at.is_(None),
            )
            .values(used_at=now)
        )
        return int(user_id)
