"""Received webhook events (bound parameters only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.outbox import enqueue
from vedina.storage.rows import plain
from vedina.storage.schema import webhook_events

RECEIVED_TOPIC = "webhook.received"


class WebhookEventRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, *, provider: str, event_id: str, event_type: str, payload: dict[str, Any]) -> int | None:
        """Store the event and enqueue its processing in one transaction.

        Returns the row id, or None when this (provider, event id) was already
        received: providers retry deliveries, and a retry must not be processed twice.
        """
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(
                    sa.insert(webhook_events).values(
                        provider=provider, event_id=event_id, event_type=event_type,
                        payload=payload, received_at=utcnow(),
                    )
                )
                row_id = int(result.inserted_primary_key[0])
                await enqueue(conn, topic=RECEIVED_TOPIC, payload={"webhook_event_id": row_id})
        except IntegrityError:
            return None
        return row_id

    async def get(self, row_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(webhook_events).where(webhook_events.c.id == row_id))).mappings().first()
        return None if row is None else plain(row)

    async def mark_processed(self, row_id: int) -> bool:
        """True if this call marked it (False: already processed)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(webhook_events)
                .where(webhook_events.c.id == row_id, webhook_events.c.processed_at.is_(None))
                .values(processed_at=utcnow())
            )
        return result.rowcount == 1
