"""Periodic work (sweeps, renewals, reconciliation), run exactly once per tick however many processes run it.

Every ``vedina worker`` (real profile) and every serving process (embedded
profile) runs a :class:`Scheduler` over the same tasks; two tables make one
of them do the work, once:

- ``scheduler_leases``: one row per lease name, ``(holder, fence,
  expires_at)``. A scheduler *leads* while it holds the unexpired lease; it
  renews it when half its time is gone. Taking over a lease that expired adds
  one to ``fence`` (the fencing token), so every leadership has its own number
  and a later one always has a larger one.
- ``scheduled_tasks``: one row per task, the last tick claimed and the fence
  that claimed it. A task's ticks are numbered from the epoch
  (``floor(epoch_seconds / interval_seconds)``); the leader claims a tick
  with one compare-and-set UPDATE: ``last_tick < tick`` *and* the row's fence
  is not newer than the claimer's *and* the claimer still holds the lease with
  that fence, unexpired. A leader that was paused (GC, a stopped VM) past its
  lease and wakes up cannot claim: a new leader has a new fence, or nobody
  holds the lease with it, or the tick is taken. So a tick runs at most once,
  and at least once while some scheduler is alive for the task's interval.

A tick missed while no scheduler ran is not run late: the next one is (the
tasks catch up by nature: a sweep removes everything expired). A task still
running when its next tick comes is not started again. A task that raises
has its error in ``scheduled_tasks.last_error``; its next tick runs as usual.
A leader that loses its lease while a task runs lets the task finish (it
cannot be undone half-way): tasks must tolerate the rare overlap with the
next leader's next tick, as the at-least-once job handlers do.

>>> async def sweep(now): ...
>>> scheduler = Scheduler(engine, [PeriodicTask("uploads.sweep", 60, sweep)])
>>> scheduler.start()            # in the background; or: await scheduler.run_once() (tests)
>>> await scheduler.close()      # lets a running task finish (bounded), gives the lease up
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.background import Background
from vedina.storage.schema import scheduled_tasks, scheduler_leases

log = logging.getLogger(__name__)


def _metrics():
    """vedina.metrics, imported on first use: prometheus_client picks its (multiprocess) mode when
    imported, and `vedina serve` may import this module before it sets PROMETHEUS_MULTIPROC_DIR."""
    from vedina import metrics

    return metrics

LEASE_NAME = "scheduler"
EPOCH = datetime(1970, 1, 1)

Clock = Callable[[], datetime]  # naive UTC, like the DATETIME columns


def system_clock() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class PeriodicTask:
    name: str  # unique, at most 64 characters (the scheduled_tasks key)
    interval_seconds: float
    run: Callable[[datetime], Awaitable[None]]  # called with the scheduler's time of the tick

    def tick(self, now: datetime) -> int:
        return math.floor((now - EPOCH).total_seconds() / self.interval_seconds)


def sweep_task(name: str, interval_seconds: float, sweep: Callable[[], Awaitable[int]]) -> PeriodicTask:
    """A task that calls ``sweep()`` (returning how many rows it removed) and logs the count."""

    async def run(now: datetime) -> None:
        swept = await sweep()
        if swept:
            log.info("swept expired rows", extra={"rows": swept, "task": name})

    return PeriodicTask(name, interval_seconds, run)


def default_holder() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """A named lease with a fencing token (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, *, name: str = LEASE_NAME, holder: str | None = None,
                 ttl: timedelta = timedelta(seconds=30)) -> None:
        self._engine = engine
        self.name = name
        self.holder = holder or default_holder()
        self.ttl = ttl
        self.fence: int | None = None  # while this holder believes it leads
        self._expires: datetime | None = None

    async def acquire(self, now: datetime) -> int | None:
        """Renew or take the lease; its fence while held, else None."""
        if self.fence is not None and self._expires is not None and now < self._expires - self.ttl / 2:
            return self.fence  # fresh enough: no write
        expires = now + self.ttl
        table = scheduler_leases
        async with self._engine.begin() as conn:
            if self.fence is not None:
                renewed = await conn.execute(
                    sa.update(table)
                    .where(table.c.name == self.name, table.c.holder == self.holder, table.c.fence == self.fence)
                    .values(expires_at=expires)
                )
                if renewed.rowcount == 1:
                    self._expires = expires
                    return self.fence
                log.warning("scheduler lease lost", extra={"holder": self.holder, "fence": self.fence})
                self.fence = self._expires = None
            row = (await conn.execute(sa.select(table.c.expires_at).where(table.c.name == self.name))).first()
            if row is not None:
                if row.expires_at > now:
                    return None  # someone else leads
                taken = await conn.execute(
                    sa.update(table)
                    .where(table.c.name == self.name, table.c.expires_at == row.expires_at)
                    .values(holder=self.holder, fence=table.c.fence + 1, expires_at=expires)
                )
                if taken.rowcount != 1:
                    return None  # another taker won
                fence = (await conn.execute(
                    sa.select(table.c.fence).where(table.c.name == self.name, table.c.holder == self.holder)
                )).scalar_one()
        if row is None:
            try:
                async with self._engine.begin() as conn:
                    await conn.execute(sa.insert(table).values(name=self.name, holder=self.holder, fence=1,
                                                               expires_at=expires))
            except IntegrityError:
                return None  # another first leader
            fence = 1
        self.fence, self._expires = fence, expires
        log.info("scheduler lease taken", extra={"holder": self.holder, "fence": fence})
        return fence

    async def release(self) -> None:
        """Give the lease up (a standby takes it at its next poll)."""
        if self.fence is None:
            return
        table = scheduler_leases
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.update(table)
                .where(table.c.name == self.name, table.c.holder == self.holder, table.c.fence == self.fence)
                .values(expires_at=EPOCH)
            )
        self.fence = self._expires = None


class Scheduler:
    def __init__(
        self, engine: AsyncEngine, tasks: list[PeriodicTask], *, lease: Lease | None = None,
        clock: Clock = system_clock, poll_seconds: float = 1.0, grace: float = 5.0,
    ) -> None:
        names = [task.name for task in tasks]
        if len(set(names)) != len(names) or any(len(name) > 64 for name in names):
            raise ValueError(f"periodic task names must be unique and at most 64 characters: {names}")
        self._engine = engine
        self.tasks = tasks
        self.lease = lease or Lease(engine)
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.grace = grace
        self._claimed: dict[str, int] = {}  # task -> the last tick this scheduler claimed
        self._running: dict[str, asyncio.Task] = {}
        self._rows_ready = False
        self._loop = Background("scheduler")

    def start(self) -> None:
        self._loop.start(self._run)

    async def close(self) -> None:
        await self._loop.stop()
        if self._running:
            _, late = await asyncio.wait(set(self._running.values()), timeout=self.grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        with contextlib.suppress(Exception):  # the lease expires by itself anyway
            await self.lease.release()

    async def run_once(self) -> list[str]:
        """One poll, waiting for what it started: the names of the tasks that ran."""
        started = await self._poll()
        if started:
            await asyncio.wait(started.values())
        return list(started)

    async def poll(self) -> list[str]:
        """Lead if possible and start (in the background) every task whose tick this scheduler claims."""
        return list(await self._poll())

    async def _poll(self) -> dict[str, asyncio.Task]:
        now = self.clock()
        fence = await self.lease.acquire(now)
        if fence is None:
            return {}
        await self._ensure_rows()
        started: dict[str, asyncio.Task] = {}
        for task in self.tasks:
            tick = task.tick(now)
            if tick <= self._claimed.get(task.name, -1) or task.name in self._running:
                continue
            if not await self._claim(task, tick, fence, now):
                continue
            self._claimed[task.name] = tick
            started[task.name] = self._running[task.name] = asyncio.get_running_loop().create_task(
                self._execute(task, tick, fence, now), name=f"scheduled {task.name}"
            )
        return started

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # an outage: try again at the next poll
                log.exception("scheduler poll failed")
            await asyncio.sleep(self.poll_seconds)

    async def _ensure_rows(self) -> None:
        if self._rows_ready:
            return
        async with self._engine.connect() as conn:
            have = set((await conn.execute(sa.select(scheduled_tasks.c.name))).scalars())
        for task in self.tasks:
            if task.name not in have:
                with contextlib.suppress(IntegrityError):  # another scheduler made it
                    async with self._engine.begin() as conn:
                        await conn.execute(sa.insert(scheduled_tasks).values(name=task.name, last_tick=0, fence=0))
        self._rows_ready = True

    async def _claim(self, task: PeriodicTask, tick: int, fence: int, now: datetime) -> bool:
        lease, table = scheduler_leases, scheduled_tasks
        holds_lease = sa.exists().where(
            lease.c.name == self.lease.name, lease.c.holder == self.lease.holder, lease.c.fence == fence,
            lease.c.expires_at > now,
        )
        async with self._engine.begin() as conn:
            claimed = await conn.execute(
                sa.update(table)
                .where(table.c.name == task.name, table.c.last_tick < tick, table.c.fence <= fence, holds_lease)
                .values(last_tick=tick, fence=fence, started_at=now, finished_at=None, last_error=None)
            )
        return claimed.rowcount == 1

    async def _execute(self, task: PeriodicTask, tick: int, fence: int, now: datetime) -> None:
        started, error = time.perf_counter(), None
        try:
            await task.run(now)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            log.exception("periodic task failed", extra={"task": task.name, "tick": tick})
        finally:
            self._running.pop(task.name, None)
            _metrics().SCHEDULED_RUNS.labels(task.name, "failed" if error else "ok").inc()
        log.info("periodic task ran", extra={"task": task.name, "tick": tick,
                                             "seconds": round(time.perf_counter() - started, 3)})
        table = scheduled_tasks
        with contextlib.suppress(Exception):  # the record is for operators; the tick is claimed either way
            async with self._engine.begin() as conn:
                await conn.execute(
                    sa.update(table).where(table.c.name == task.name, table.c.last_tick == tick, table.c.fence == fence)
                    .values(finished_at=self.clock(), last_error=error)
                )
