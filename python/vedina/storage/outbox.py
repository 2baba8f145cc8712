"""The transactional outbox: jobs written with the data, relayed to a broker after commit.

``enqueue`` runs inside the caller's transaction, so a job exists exactly when
the change it is about was committed. ``OutboxRelay`` claims unpublished rows
(an UPDATE with a lease, which works the same on MariaDB and SQLite and lets
several relays run at once without taking a row twice), publishes them with
confirmation, and marks them published. A relay that dies mid-way leaves
claimed rows whose lease expires, so another relay publishes them again:
delivery is at-least-once and consumers are idempotent by message id.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.broker import Broker
from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import outbox

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=30)
# After this many failed publishes a row stays in the table as dead, with its
# last error, for an operator to inspect (the outbox's dead-letter queue).
MAX_ATTEMPTS = 5


async def enqueue(conn: AsyncConnection, *, topic: str, payload: dict[str, Any]) -> int:
    result = await conn.execute(
        sa.insert(outbox).values(topic=topic, payload=payload, created_at=utcnow(), attempts=0)
    )
    return int(result.inserted_primary_key[0])


class OutboxRelay:
    def __init__(self, engine: AsyncEngine, broker: Broker, *, batch_size: int = 100) -> None:
        self._engine = engine
        self._broker = broker
        self._batch_size = batch_size
        self._relay_id = uuid.uuid4().hex

    async def pending(self) -> int:
        async with self._engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            return (await conn.execute(query)).scalar_one()

    async def relay_once(self) -> int:
        """Publish one batch; returns how many rows were published."""
        rows = await self._claim()
        published = 0
        for row in rows:
            try:
                await self._broker.publish(row["topic"], row["payload"], message_id=f"outbox-{row['id']}")
            except Exception as exc:  # the broker is down: leave the row for the next lease
                log.warning("outbox publish failed", extra={"outbox_id": row["id"], "error": str(exc)})
                await self._release(row["id"], error=str(exc))
                continue
            await self._mark_published(row["id"])
            published += 1
        return published

    async def _claim(self) -> list[dict[str, Any]]:
        now = utcnow()
        async with self._engine.begin() as conn:
            candidates = (
                await conn.execute(
                    sa.select(outbox.c.id)
                    .where(
                        outbox.c.published_at.is_(None),
                        outbox.c.attempts < MAX_ATTEMPTS,
                        sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                    )
                    .order_by(outbox.c.id)
                    .limit(self._batch_size)
                )
            ).scalars().all()
            if not candidates:
                return []
            # The lease condition is repeated in the UPDATE, so a row another relay
            # claimed between the SELECT and here is not taken twice.
            await conn.execute(
                sa.update(outbox)
                .where(
                    outbox.c.id.in_(candidates),
                    outbox.c.published_at.is_(None),
                    sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
                )
                .values(claimed_by=self._relay_id, claimed_until=now + LEASE, attempts=outbox.c.attempts + 1)
            )
            rows = (
                await conn.execute(
                    sa.select(outbox.c.id, outbox.c.topic, outbox.c.payload)
                    .where(outbox.c.id.in_(candidates), outbox.c.claimed_by == self._relay_id)
                    .order_by(outbox.c.id)
                )
            ).mappings().all()
        return [plain(r) for r in rows]

    async def _mark_published(self, row_id: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(outbox).where(outbox.c.id == row_id).values(published_at=utcnow(), claimed_until=None)
            )

    async def _release(self, row_id: int, *, error: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(outbox).where(outbox.c.id == row_id).values(claimed_until=None, last_error=error[:2000])
            )
