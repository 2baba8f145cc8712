"""The transactional outbox: jobs written with the data, relayed to a broker after commit.

``enqueue`` runs inside the caller's transaction, so a job exists exactly when
the change it is about was committed. ``OutboxRelay`` claims unpublished rows
(an UPDATE with a lease, which works the same on MariaDB and SQLite and lets
several relays run at once without taking a row twice), publishes them with
confirmation, and marks them published. A relay that dies mid-way leaves
claimed rows whose lease expires, so another relay publishes them again:
delivery is at-least-once and consumers are idempotent by message id.

A broker that is down is not a poison message: when a publish fails with
:class:`BrokerUnavailable`, the row goes back without its attempt counted and
the batch stops, so an outage of any length delivers everything after it;
only failures of the message itself (a handler that raises, in-process) count
towards MAX_ATTEMPTS. :class:`RelayLoop` runs one relay per host (a lock
file), backing off while the broker is down.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.background import Background
from vedina.storage.broker import Broker, BrokerUnavailable
from vedina.storage.clock import utcnow
from vedina.storage.message_ledger import Busy
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
        """Publish one batch; returns how many rows were published.

        Raises BrokerUnavailable (after putting the batch back, attempts
        uncounted) when the broker cannot take messages.
        """
        rows = await self._claim()
        published = 0
        for index, row in enumerate(rows):
            try:
                await self._broker.publish(row["topic"], row["payload"], message_id=f"outbox-{row['id']}")
            except BrokerUnavailable as exc:
                await self._release([r["id"] for r in rows[index:]], error=str(exc), count_attempt=False)
                raise
            except Busy as exc:  # handled elsewhere right now (or by a consumer that died): not its failure
                await self._release([row["id"]], error=f"busy: {exc}", count_attempt=False)
                continue
            except Exception as exc:  # the message's own failure (a handler, in-process): counted
                log.warning("outbox publish failed", extra={"outbox_id": row["id"], "error": str(exc)})
                await self._release([row["id"]], error=str(exc), count_attempt=True)
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

    async def _release(self, row_ids: list[int], *, error: str, count_attempt: bool) -> None:
        # The claim counted an attempt (so a row that crashes its relay is not retried forever);
        # a broker outage gives it back.
        attempts = outbox.c.attempts if count_attempt else outbox.c.attempts - 1
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(row_ids), outbox.c.claimed_by == self._relay_id)
                .values(claimed_until=None, last_error=error[:2000], attempts=attempts)
            )


class HostLock:
    """An exclusive lock on a file, held by one process of the host at a time; the
    kernel releases it when the holder exits, however it exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        if self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


class RelayLoop:
    """The outbox relay of a host, in the background of whichever process holds the
    host's relay lock (the others stand by and take over within ``interval`` if it
    exits). While the broker is down it backs off, up to ``max_backoff`` seconds,
    and counts nothing against the messages.

    ``chores`` run after each pass on the lock holder (e.g. sweeping expired rows).
    """

    def __init__(
        self, relay: OutboxRelay, lock: HostLock, *, interval: float = 1.0, max_backoff: float = 5.0,
        chores: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.relay = relay
        self.lock = lock
        self.interval = interval
        self.max_backoff = max_backoff
        self._chores = chores
        self._task = Background("outbox relay")

    def start(self) -> None:
        self._task.start(self._run)

    async def close(self) -> None:
        await self._task.stop()
        self.lock.release()

    async def _run(self) -> None:
        delay = self.interval
        while True:
            if self.lock.try_acquire():
                delay = await self._pass(delay)
            await asyncio.sleep(delay)

    async def _pass(self, delay: float) -> float:
        """One pass; returns how long to wait before the next."""
        try:
            while await self.relay.relay_once():
                pass
        except BrokerUnavailable as exc:
            if delay == self.interval:
                log.warning("broker unavailable: outbox rows wait", extra={"error": str(exc)[:200]})
            return min(delay * 2, self.max_backoff)
        except Exception:
            log.exception("outbox relay pass failed")
        try:
            if self._chores is not None:
                await self._chores()
        except Exception:
            log.exception("background chores failed")
        return self.interval
