"""API key rows: the secret is stored encrypted (see vedina.security.secretbox)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import api_keys

_PUBLIC = (
    api_keys.c.id,
    api_keys.c.access_key_id,
    api_keys.c.name,
    api_keys.c.scopes,
    api_keys.c.owner_id,
    api_keys.c.created_at,
    api_keys.c.rotated_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)



class ApiKeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, **values: Any) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.insert(api_keys).values(created_at=utcnow(), **values))
        return int(result.inserted_primary_key[0])

    async def get(self, key_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(*_PUBLIC).where(api_keys.c.id == key_id))).mappings().first()
        return None if row is None else plain(row)

    async def get_for_signing(self, access_key_id: str) -> dict[str, Any] | None:
        """id, scopes and the encrypted secret of a live (not revoked) key."""
        query = sa.select(api_keys.c.id, api_keys.c.scopes, api_keys.c.secret_ciphertext).where(
            api_keys.c.access_key_id == access_key_id, api_keys.c.revoked_at.is_(None)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else plain(row)

    async def owner_of(self, access_key_id: str) -> int | None:
        """The account owning a live key (None: unknown, revoked, or its owner is gone)."""
        query = sa.select(api_keys.c.owner_id).where(
            api_keys.c.access_key_id == access_key_id, api_keys.c.revoked_at.is_(None)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def list(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        page = sa.select(*_PUBLIC).order_by(api_keys.c.id).offset(offset).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(page)).mappings().all()
            total = (await conn.execute(sa.select(sa.func.count()).select_from(api_keys))).scalar_one()
        return [plain(r) for r in rows], total

    async def replace_secret(self, key_id: int, *, secret_ciphertext: bytes) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(secret_ciphertext=secret_ciphertext, rotated_at=utcnow())
            )
        return result.rowcount == 1

    async def revoke(self, key_id: int) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=utcnow())
            )
        return result.rowcount == 1

    async def record_last_used(self, used: dict[int, datetime]) -> None:
        """One transaction for a batch of ``key id -> last use``; never moves a time backwards."""
        if not used:
            return
        async with self._engine.begin() as conn:
            for key_id, when in used.items():
                await conn.execute(
                    sa.update(api_keys)
                    .where(
                        api_keys.c.id == key_id,
                        sa.or_(api_keys.c.last_used_at.is_(None), api_keys.c.last_used_at < when),
                    )
                    .values(last_used_at=when)
                )
