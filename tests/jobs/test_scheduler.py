"""The scheduler: each tick of each periodic task runs exactly once across many processes, and a
leader that lost its lease (paused past it, or taken over) cannot claim a tick: fencing."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from tests.conftest import query_rows
from vedina.config import load_settings
from vedina.jobs.scheduler import EPOCH, Lease, PeriodicTask, Scheduler
from vedina.storage.clock import utcnow
from vedina.storage.database import create_engine
from vedina.storage.schema import scheduled_tasks, scheduler_leases

START = datetime(2030, 1, 1)  # a multiple of every interval below
TTL = timedelta(seconds=20)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tick(at: datetime, interval: float) -> int:
    return math.floor((at - EPOCH).total_seconds() / interval)


class Recorder:
    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []

    def task(self, name: str, interval: float, *, fail: bool = False) -> PeriodicTask:
        async def run(now: datetime) -> None:
            self.ran.append((name, tick(now, interval)))
            await asyncio.sleep(0.01)  # let the others poll meanwhile
            if fail:
                raise RuntimeError(f"{name} failed")

        return PeriodicTask(name, interval, run)


@pytest.fixture
async def engines(settings):
    made = [create_engine(settings) for _ in range(4)]  # one per "process": separate connections
    yield made
    for engine in made:
        await engine.dispose()


def schedulers(engines, tasks, clock) -> list[Scheduler]:
    return [Scheduler(engine, tasks, lease=Lease(engine, holder=f"process-{n}", ttl=TTL), clock=clock)
            for n, engine in enumerate(engines)]


async def test_many_schedulers_run_each_tick_exactly_once(engines):
    clock, recorder = Clock(), Recorder()
    tasks = [recorder.task("test.every10", 10), recorder.task("test.every30", 30)]
    group = schedulers(engines, tasks, clock)
    seen = []
    for _ in range(24):  # two minutes in steps of 5 s, every scheduler polling at once
        seen.append(clock.now)
        await asyncio.gather(*(s.run_once() for s in group))
        clock.advance(5)
    expected = {(t.name, tick(at, t.interval_seconds)) for t in tasks for at in seen}
    assert sorted(recorder.ran) == sorted(expected)  # every tick, none twice
    assert len(expected) == 12 + 4
    assert sum(s.lease.fence is not None for s in group) == 1  # one leader


async def test_a_new_leader_takes_over_an_expired_lease_and_the_old_one_is_fenced_off(engines):
    clock, recorder = Clock(), Recorder()
    task = recorder.task("test.fenced", 10)
    old, new = schedulers(engines[:2], [task], clock)
    assert await old.run_once() == ["test.fenced"] and await new.run_once() == []
    old_fence = old.lease.fence

    clock.advance(TTL.total_seconds() + 1)  # the old leader is paused past its lease
    # Expired and not yet taken over: it may not claim with it either.
    assert not await old._claim(task, tick(clock.now, 10), old_fence, clock.now)
    assert await new.run_once() == ["test.fenced"]  # taken over: a new fence
    assert new.lease.fence == old_fence + 1

    clock.advance(10)  # a fresh tick; the old leader wakes up and tries its stale fence
    assert not await old._claim(task, tick(clock.now, 10), old_fence, clock.now)
    assert await old.run_once() == []  # its renewal fails: it knows it lost the lease
    assert old.lease.fence is None
    assert await new.run_once() == ["test.fenced"]
    assert recorder.ran == [("test.fenced", tick(START, 10) + n) for n in (0, 2, 3)]
    async with engines[0].connect() as conn:
        row = (await conn.execute(sa.select(scheduled_tasks).where(scheduled_tasks.c.name == "test.fenced"))).one()
    assert (row.last_tick, row.fence) == (tick(clock.now, 10), old_fence + 1)


async def test_a_closed_leader_hands_over_at_once_and_a_failing_task_keeps_its_error(engines):
    clock, recorder = Clock(), Recorder()
    tasks = [recorder.task("test.failing", 10, fail=True)]
    first, second = schedulers(engines[:2], tasks, clock)
    failed_before = REGISTRY.get_sample_value("vedina_scheduled_task_runs_total",
                                              {"task": "test.failing", "outcome": "failed"}) or 0
    assert await first.run_once() == ["test.failing"]
    assert REGISTRY.get_sample_value("vedina_scheduled_task_runs_total",
                                     {"task": "test.failing", "outcome": "failed"}) == failed_before + 1
    async with engines[0].connect() as conn:
        row = (await conn.execute(sa.select(scheduled_tasks).where(scheduled_tasks.c.name == "test.failing"))).one()
    assert "test.failing failed" in row.last_error and row.finished_at is not None
    await first.close()  # gives the lease up: no waiting for it to expire
    clock.advance(10)
    assert await second.run_once() == ["test.failing"]
    assert second.lease.fence == 2 and len(recorder.ran) == 2


async def test_the_background_loop_runs_a_due_task(engines):
    recorder = Recorder()
    scheduler = Scheduler(engines[0], [recorder.task("test.loop", 3600)], poll_seconds=0.05)
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while not recorder.ran:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await scheduler.close()
    assert len(recorder.ran) == 1
    async with engines[0].connect() as conn:
        expires = (await conn.execute(sa.select(scheduler_leases.c.expires_at))).scalar_one()
    assert expires == EPOCH  # released


def test_the_services_schedule_the_sweeps(services):
    names = {task.name for task in services.periodic_tasks()}
    assert {"message_ledger.sweep", "uploads.sweep", "idempotency_keys.sweep", "billing.renewals",
            "billing.expiries", "billing.reconcile", "billing.refunds"} <= names
    assert ("kv_entries.sweep" in names) == (services.settings.storage_profile == "embedded")


@pytest.mark.parametrize("profile", ["embedded"])
def test_an_embedded_server_runs_the_scheduler_in_one_of_its_workers(live_servers, profile):
    live = live_servers("granian", profile)
    settings = load_settings(live.env)
    deadline = time.monotonic() + 20
    while not (rows := query_rows(settings, sa.select(scheduled_tasks))):
        assert time.monotonic() < deadline, "no periodic task ran"
        time.sleep(0.2)
    assert {"uploads.sweep", "message_ledger.sweep"} <= {row["name"] for row in rows}
    assert all(row["started_at"] is not None and row["last_tick"] > 0 for row in rows)
    leases = query_rows(settings, sa.select(scheduler_leases))
    assert len(leases) == 1 and leases[0]["expires_at"] > utcnow()
