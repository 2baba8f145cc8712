"""Retries with exponential back-off and full jitter, then the dead letters, and `vedina jobs dead`.

A poison message (a handler that always raises) is tried its topic's
``max_attempts`` times, lands in the dead letters, shows in ``vedina jobs
dead list``, and once the handler is fixed, ``replay`` runs it exactly once;
``drop`` removes another for good. On both profiles: the outbox row is the
retry carrier in-process, RabbitMQ's retry and dead queues in the real one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.conftest import TEST_REDIS_DB, VEDINA, profile_env
from vedina.jobs.dead_letters import dead_letters_for
from vedina.jobs.monitoring import JobGauges
from vedina.jobs.retry import DEFAULT, POLICIES, RetryPolicies, RetryPolicy
from vedina.storage.broker import RETRY_LEVELS_MS, InProcessBroker, RabbitBroker, retry_level_ms
from vedina.storage.message_ledger import MessageLedger
from vedina.storage.outbox import OutboxRelay, enqueue

TOPIC = "test.poison"  # not in POLICIES: the default policy's limit, also what the CLI process uses


def fast(policy: RetryPolicy) -> RetryPolicy:
    return RetryPolicy(max_attempts=policy.max_attempts, base_delay=0.05, max_delay=0.1)


# The production limits (the `vedina jobs dead` process uses them too) with delays short enough to test.
FAST = RetryPolicies(default=fast(DEFAULT), topics={topic: fast(p) for topic, p in POLICIES.items()})


# -- the policy ------------------------------------------------------------------------------


def test_full_jitter_draws_below_an_exponentially_growing_cap():
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=10.0)
    assert [policy.delay(n, draw=lambda: 1.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay(4, draw=lambda: 0.0) == 0
    draws = [policy.delay(3) for _ in range(200)]
    assert all(0 <= d <= 4 for d in draws) and len(set(draws)) > 100  # jittered, not one value
    assert not policy.exhausted(5) and policy.exhausted(6)


def test_each_topic_has_its_policy_and_unknown_topics_the_default():
    policies = RetryPolicies()
    assert policies.for_topic("media.transcode") == POLICIES["media.transcode"]
    assert policies.for_topic("no.such.topic") == DEFAULT
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_a_delay_goes_to_the_nearest_retry_queue_of_the_grid():
    assert retry_level_ms(0) == retry_level_ms(0.01) == 50
    assert retry_level_ms(0.1) == 100 and retry_level_ms(0.13) == 100 and retry_level_ms(0.16) == 200
    assert retry_level_ms(10**6) == RETRY_LEVELS_MS[-1]
    assert list(RETRY_LEVELS_MS) == sorted(set(RETRY_LEVELS_MS))


# -- a poison message, both profiles ------------------------------------------------------------


class Poison:
    """Raises until fixed; counts its tries per message."""

    def __init__(self) -> None:
        self.fixed = False
        self.tries: dict[str, int] = {}
        self.handled: list[str] = []

    async def __call__(self, payload: dict) -> None:
        name = payload["name"]
        self.tries[name] = self.tries.get(name, 0) + 1
        if not self.fixed:
            raise RuntimeError(f"poisoned {name}")
        self.handled.append(name)


def vedina_jobs(settings, *args: str) -> subprocess.CompletedProcess:
    env = profile_env(settings.storage_profile, Path(settings.data_dir), database=settings.db_name,
                      redis_db=TEST_REDIS_DB, amqp_prefix=settings.amqp_queue_prefix)
    return subprocess.run([VEDINA, "jobs", "dead", *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def listed(settings) -> list[dict]:
    run = vedina_jobs(settings, "list")
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


async def wait_for(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_poison_message_is_retried_then_dead_lettered_listed_replayed_and_dropped(profile, resources):
    engine, limit = resources.engine, DEFAULT.max_attempts
    poison, ledger = Poison(), MessageLedger(engine)
    retries_before = sample("vedina_job_retries_total", {"topic": TOPIC})
    dead_before = sample("vedina_job_dead_letters_total", {"topic": TOPIC})
    async with engine.begin() as conn:
        ids = {name: f"outbox-{await enqueue(conn, topic=TOPIC, payload={'name': name})}" for name in ("a", "b")}
    gauges = JobGauges(resources.relay, resources.broker)
    consumer = stop = None
    if profile == "real":
        rabbit: RabbitBroker = resources.broker
        rabbit.retry_policies = FAST
        rabbit.attach_handlers({TOPIC: poison}, ledger=ledger)
        assert await resources.relay.relay_once() == 2
        stop = asyncio.Event()
        consumer = asyncio.create_task(rabbit.consume(stop=stop))
        relay = resources.relay
    else:
        relay = OutboxRelay(engine, InProcessBroker({TOPIC: poison}, ledger=ledger), policies=FAST)

    async def both_dead() -> bool:
        if profile == "embedded":
            await relay.relay_once()
        return (await gauges.refresh())["dead"] == 2

    try:
        await wait_for(both_dead, "both messages dead-lettered")
        assert poison.tries == {"a": limit, "b": limit}  # every try of the policy, no more
        assert sample("vedina_job_retries_total", {"topic": TOPIC}) - retries_before == 2 * (limit - 1)
        assert sample("vedina_job_dead_letters_total", {"topic": TOPIC}) - dead_before == 2
        if profile == "embedded":
            for _ in range(5):
                await relay.relay_once()
            assert poison.tries == {"a": limit, "b": limit}  # a dead row is not claimed again

        letters = listed(settings=resources.settings)
        assert sorted(letter["id"] for letter in letters) == sorted(ids.values())
        for letter in letters:
            assert letter["topic"] == TOPIC and letter["attempts"] == limit
            assert letter["source"] == ("queue" if profile == "real" else "outbox")
            assert "poisoned" in letter["error"]
        assert listed(settings=resources.settings) == letters  # listing takes nothing away

        refused = vedina_jobs(resources.settings, "replay")
        assert refused.returncode == 2 and "--id" in refused.stderr
        poison.fixed = True
        replay = vedina_jobs(resources.settings, "replay", "--id", ids["a"])
        assert replay.returncode == 0 and "replayed 1" in replay.stdout, replay.stderr

        async def replayed_once() -> bool:
            if profile == "embedded":
                await relay.relay_once()
            return poison.handled == ["a"]

        await wait_for(replayed_once, "the replayed message handled")
        drop = vedina_jobs(resources.settings, "drop", "--id", ids["b"])
        assert drop.returncode == 0 and "dropped 1" in drop.stdout, drop.stderr
        assert listed(settings=resources.settings) == []
        await asyncio.sleep(0.3)
        if profile == "embedded":
            await relay.relay_once()
        assert poison.handled == ["a"] and poison.tries == {"a": limit + 1, "b": limit}
        depths = await gauges.refresh()
        assert depths["dead"] == 0 and depths["jobs"] == 0 and depths["retry"] == 0
        assert await dead_letters_for(resources).list() == []
    finally:
        if consumer is not None:
            stop.set()
            await asyncio.wait_for(consumer, 30)


async def test_an_outage_is_not_counted_as_a_try(profile, resources):
    """A handler that meets a down backing service is postponed, not retried towards the dead letters."""
    from vedina.errors import BackendUnavailable

    calls = []

    async def outage(payload):
        calls.append(payload)
        if len(calls) < 8:
            raise BackendUnavailable("database")

    async with resources.engine.begin() as conn:
        await enqueue(conn, topic=TOPIC, payload={"n": 1})
    policies = RetryPolicies(default=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0), topics={})
    relay = OutboxRelay(resources.engine, InProcessBroker({TOPIC: outage}), policies=policies)
    for _ in range(8):
        await relay.relay_once()
    assert len(calls) == 8 and (await relay.backlog()) == {"ready": 0, "waiting": 0, "dead": 0}


async def test_a_counted_failure_waits_its_back_off_in_the_outbox_row(resources):
    import sqlalchemy as sa

    from vedina.storage.outbox import precise_utcnow
    from vedina.storage.schema import outbox

    poison = Poison()
    policies = RetryPolicies(default=RetryPolicy(max_attempts=3, base_delay=30, max_delay=60), topics={})
    relay = OutboxRelay(resources.engine, InProcessBroker({TOPIC: poison}), policies=policies)
    async with resources.engine.begin() as conn:
        await enqueue(conn, topic=TOPIC, payload={"name": "slow"})
    before = precise_utcnow()
    assert await relay.relay_once() == 0
    after = precise_utcnow()
    async with resources.engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox))).mappings().one()
    assert row["attempts"] == 1 and row["claimed_by"] is None and "poisoned slow" in row["last_error"]
    # Full jitter below the first cap (30 s); MariaDB keeps whole seconds.
    assert before.replace(microsecond=0) <= row["claimed_until"] <= after + timedelta(seconds=31)
    if row["claimed_until"] > precise_utcnow() + timedelta(seconds=1):
        assert await relay.relay_once() == 0 and poison.tries == {"slow": 1}  # not before its time
        assert (await relay.backlog())["waiting"] == 1
