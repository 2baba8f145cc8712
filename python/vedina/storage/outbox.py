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
only failures of the message itself (a handler that raises, in-process) count.

A counted failure is retried with the topic's back-off
(:mod:`vedina.jobs.retry`): the row's ``claimed_until`` is set to the time
of the next try, which the claim condition already waits for. A row whose
``attempts`` reached its topic's ``max_attempts`` is not claimed any more: it
is the embedded profile's dead letter (see :mod:`vedina.jobs.dead_letters`).
:class:`RelayLoop` runs one relay per host (a lock file), backing off while
the broker is down.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.background import Background
from vedina.jobs.retry import DEFAULT, RetryPolicies
from vedina.storage.broker import Broker, BrokerUnavailable, is_outage
from vedina.storage.clock import utcnow
from vedina.storage.message_ledger import Busy
from vedina.storage.rows import plain
from vedina.storage.schema import outbox

log = logging.getLogger(__name__)


def _metrics():
    """vedina.metrics, imported on first use: prometheus_client picks its (multiprocess) mode when
    imported, and `vedina serve` may import this module before it sets PROMETHEUS_MULTIPROC_DIR."""
    from vedina import metrics

    return metrics

LEASE = timedelta(seconds=30)


def precise_utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)

# The default policy's limit (each topic has its own, vedina.jobs.retry): after that many
# failed publishes a row stays in the table as dead, with its last error, for an operator.
MAX_ATTEMPTS = DEFAULT.max_attempts


async def enqueue(conn: AsyncConnection, *, topic: str, payload: dict[str, Any]) -> int:
    result = await conn.execute(
        sa.insert(outbox).values(topic=topic, payload=payload, created_at=utcnow(), attempts=0)
    )
    return int(result.inserted_primary_key[0])


class OutboxRelay:
    def __init__(
        self, engine: AsyncEngine, broker: Broker, *, batch_size: int = 100, policies: RetryPolicies | None = None,
    ) -> None:
        self._engine = engine
        self._broker = broker
        self._batch_size = batch_size
        self._relay_id = uuid.uuid4().hex
        self.policies = policies or RetryPolicies()

    async def pending(self) -> int:
        async with self._engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            return (await conn.execute(query)).scalar_one()

    async def backlog(self) -> dict[str, int]:
        """Unpublished rows: ``ready`` (claimable now or being published), ``waiting`` (a retry's
        back-off), ``dead`` (past their topic's limit)."""
        now = precise_utcnow()
        dead = outbox.c.attempts >= self.policies.attempt_limit(outbox.c.topic)
        waiting = sa.and_(~dead, outbox.c.attempts > 0, outbox.c.claimed_until > now, outbox.c.claimed_by.is_(None))
        state = sa.case((dead, "dead"), (waiting, "waiting"), else_="ready")
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(state.label("bucket"), sa.func.count())
                .where(outbox.c.published_at.is_(None))
                .group_by(sa.literal_column("bucket"))  # by name: MariaDB cannot match two copies of bound values
            )).all()
        return {"ready": 0, "waiting": 0, "dead": 0} | {name: count for name, count in rows}

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
            except Exception as exc:
                if not is_outage(exc):  # the message's own failure: counted, below
                    await self._retry_later(row, error=f"{type(exc).__name__}: {exc}")
                    continue
                # A backing service of the handler is down (in-process): not its failure either.
                await self._release([row["id"]], error=f"outage: {type(exc).__name__}: {exc}", count_attempt=False)
                continue
            await self._mark_published(row["id"])
            published += 1
        return published

    async def _claim(self) -> list[dict[str, Any]]:
        now = precise_utcnow()  # a retry's back-off may be shorter than a second
        async with self._engine.begin() as conn:
            candidates = (
                await conn.execute(
                    sa.select(outbox.c.id)
                    .where(
                        outbox.c.published_at.is_(None),
                        outbox.c.attempts < self.policies.attempt_limit(outbox.c.topic),
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
                    sa.select(outbox.c.id, outbox.c.topic, outbox.c.payload, outbox.c.attempts)
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

    async def _retry_later(self, row: dict[str, Any], *, error: str) -> None:
        """A counted failure (the claim counted it): back off per the topic's policy, or stay dead.

        ``claimed_by`` is cleared, so the row is claimable again once ``claimed_until`` passes."""
        log.warning("outbox job failed", extra={"outbox_id": row["id"], "topic": row["topic"], "error": error[:300]})
        policy = self.policies.for_topic(row["topic"])
        if policy.exhausted(row["attempts"]):
            _metrics().JOB_DEAD_LETTERS.labels(row["topic"]).inc()
            log.error("job dead-lettered in the outbox", extra={"outbox_id": row["id"], "topic": row["topic"]})
            retry_at = None
        else:
            _metrics().JOB_RETRIES.labels(row["topic"]).inc()
            retry_at = precise_utcnow() + timedelta(seconds=policy.delay(row["attempts"]))
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(outbox)
                .where(outbox.c.id == row["id"], outbox.c.claimed_by == self._relay_id)
                .values(claimed_by=None, claimed_until=retry_at, last_error=error[:2000])
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
    and counts nothing against the messages. (Periodic work such as sweeps runs on
    the scheduler: vedina.jobs.scheduler.)

    ``close`` lets the batch in hand finish (in-process, that is the jobs running
    in it), up to ``grace`` seconds, before it stops the loop.
    """

    def __init__(self, relay: OutboxRelay, lock: HostLock, *, interval: float = 1.0, max_backoff: float = 5.0) -> None:
        self.relay = relay
        self.lock = lock
        self.interval = interval
        self.max_backoff = max_backoff
        self._task = Background("outbox relay")
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task.start(self._run)

    async def close(self, *, grace: float = 30.0) -> None:
        self._closing = True
        if self._task.running:
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except TimeoutError:
                log.warning("outbox relay stopped mid-batch: its rows are relayed again after their lease")
        await self._task.stop()
        self.lock.release()

    async def _run(self) -> None:
        delay = self.interval
        while not self._closing:
            if self.lock.try_acquire():
                self._idle.clear()
                try:
                    delay = await self._pass(delay)
                finally:
                    self._idle.set()
            await asyncio.sleep(delay)

    async def _pass(self, delay: float) -> float:
        """One pass; returns how long to wait before the next."""
        try:
            while not self._closing and await self.relay.relay_once():
                pass
        except BrokerUnavailable as exc:
            if delay == self.interval:
                log.warning("broker unavailable: outbox rows wait", extra={"error": str(exc)[:200]})
            return min(delay * 2, self.max_backoff)
        except Exception:
            log.exception("outbox relay pass failed")
        return self.interval
