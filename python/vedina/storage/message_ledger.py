"""Which job messages are being handled or were handled: brokers deliver at least once.

A message can arrive twice: RabbitMQ redelivers what a consumer took but did
not acknowledge, and the outbox publishes a row again when its relay stopped
between publishing and marking it. A consumer *claims* a message id before
running its handler (an INSERT, so two consumers racing on one id cannot both
win), marks it done after, and releases the claim if the handler failed:

- a done id is skipped (the repeat is acknowledged, nothing runs);
- an id claimed moments ago by someone else is :class:`Busy` (the repeat goes
  back to the queue and is looked at again later);
- a claim older than :data:`STALE` belongs to a consumer that died mid-way:
  it is taken over, so the message is not lost.

The effect and the ledger are not one transaction (an email cannot be rolled
back): a consumer killed after the effect and before ``done`` lets the message
run once more after :data:`STALE` — at least once, never silently twice.

>>> ledger = MessageLedger(engine)
>>> await handle_once(ledger, handler, "mail", payload, "outbox-993")   # see vedina.storage.broker
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.schema import handled_messages as table

STALE = timedelta(minutes=2)  # longer than any handler runs
KEEP = timedelta(days=7)  # longer than any redelivery or outbox retry can take; older ids are swept
RUNNING, DONE = "running", "done"


class Busy(Exception):
    """Another consumer is handling this message id right now."""


class MessageLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, message_id: str, topic: str) -> bool:
        """True: run the handler. False: already done. Raises Busy: running elsewhere."""
        now = utcnow()
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.insert(table).values(message_id=message_id, topic=topic[:100], state=RUNNING, updated_at=now)
                )
            return True
        except IntegrityError:
            pass
        async with self._engine.begin() as conn:
            row = (await conn.execute(
                sa.select(table.c.state, table.c.updated_at).where(table.c.message_id == message_id)
            )).first()
            if row is None:  # released meanwhile: claim it again next time
                raise Busy(message_id)
            if row.state == DONE:
                return False
            if row.updated_at > now - STALE:
                raise Busy(message_id)
            # A claim left by a consumer that died: take it over (one taker wins the compare-and-set).
            taken = await conn.execute(
                sa.update(table)
                .where(table.c.message_id == message_id, table.c.state == RUNNING, table.c.updated_at == row.updated_at)
                .values(updated_at=now)
            )
        if taken.rowcount != 1:
            raise Busy(message_id)
        return True

    async def done(self, message_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.update(table).where(table.c.message_id == message_id).values(state=DONE, updated_at=utcnow()))

    async def release(self, message_id: str) -> None:
        """The handler failed: let the next delivery run it."""
        async with self._engine.begin() as conn:
            await conn.execute(sa.delete(table).where(table.c.message_id == message_id, table.c.state == RUNNING))

    async def sweep(self) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(table).where(table.c.state == DONE, table.c.updated_at < utcnow() - KEEP))
        return result.rowcount
