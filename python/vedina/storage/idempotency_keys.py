"""``Idempotency-Key`` records: one row per (owner, key), claimed by an INSERT.

The INSERT is the race's referee: of two requests with one key, exactly one
creates the row and runs; the other finds it (running: wait; done: replay).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import idempotency_keys as table


class IdempotencyKeyRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, *, owner: str, key: str, request_hash: str, expires_at: datetime,
                    created_at: datetime | None = None) -> bool:
        """True: this request runs under the key. False: a row exists (see :meth:`get`)."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(sa.insert(table).values(
                    owner=owner, key=key, request_hash=request_hash, state="running",
                    created_at=created_at or utcnow(), expires_at=expires_at,
                ))
        except IntegrityError:
            return False
        return True

    async def get(self, *, owner: str, key: str) -> dict[str, Any] | None:
        query = sa.select(table).where(table.c.owner == owner, table.c.key == key)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else plain(row)

    async def complete(self, *, owner: str, key: str, status: int, body: bytes) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(table).where(table.c.owner == owner, table.c.key == key, table.c.state == "running")
                .values(state="done", response_status=status, response_body=body)
            )

    async def release(self, *, owner: str, key: str) -> None:
        """The request did not finish (an outage): a retry with the key runs again."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(table).where(table.c.owner == owner, table.c.key == key,
                                                      table.c.state == "running"))

    async def drop_stale(self, *, owner: str, key: str, created_at: datetime) -> None:
        """Forget a request that never finished (its process died): the next one with the key runs."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(table).where(table.c.owner == owner, table.c.key == key,
                                                      table.c.state == "running", table.c.created_at == created_at))

    async def drop_expired(self, *, owner: str, key: str, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(table).where(table.c.owner == owner, table.c.key == key,
                                                      table.c.expires_at <= now))

    async def sweep(self, now: datetime | None = None) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.expires_at <= (now or utcnow())))
        return result.rowcount
