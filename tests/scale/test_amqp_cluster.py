"""A RabbitMQ cluster: several node URLs (AMQP_URLS), quorum queues, and the switch to another node.

The real RabbitMQ on 127.0.0.1:5672 is one node; two TCP proxies in front of it
stand in for two nodes: cutting one closes every connection through it, as a
node that stops would. The multi-node drill (a node of a real cluster stopped)
belongs to the network-namespace harness (issue 13, tests/cluster/).
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.conftest import free_port
from tests.reliability.tcp_proxy import TcpProxy
from vedina.config import ConfigError, load_settings
from vedina.jobs.dead_letters import RabbitDeadLetters
from vedina.jobs.queue_migration import migrate_queues
from vedina.jobs.retry import RetryPolicies, RetryPolicy
from vedina.storage.broker import RETRY_LEVELS_MS, BrokerUnavailable, RabbitBroker
from vedina.storage.message_ledger import MessageLedger
from vedina.storage.outbox import OutboxRelay, enqueue
from vedina.storage.resources import open_resources
from vedina.storage.schema import handled_messages, outbox

REAL_ONLY = pytest.mark.parametrize("profile", ["real"], indirect=True)
TOPIC = "test.cluster"


def node_url(settings, port: int) -> str:
    return settings.amqp_url.replace(":5672", f":{port}")


def closed_port() -> int:
    return free_port()  # bound a moment ago and released: nothing listens there


async def wait_for(predicate, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def delete_queues(broker: RabbitBroker) -> None:
    import aio_pika

    connection = await aio_pika.connect(broker_any_url(broker), timeout=5)
    retry_queues = [f"{broker.retry_prefix}{level}" for level in RETRY_LEVELS_MS]
    for name in [broker.queue_name, broker.dead_queue_name, broker.queue_name + ".migrating",
                 broker.dead_queue_name + ".migrating", *retry_queues]:
        channel = await connection.channel()
        await channel.queue_delete(name)
    await connection.close()


def broker_any_url(broker: RabbitBroker) -> str:
    return broker._url or broker._nodes.urls[-1]


def queue_types(prefix: str) -> dict[str, str]:
    listing = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "type", "--no-table-headers"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    return {name: kind for name, kind in (line.split("\t") for line in listing.splitlines() if "\t" in line)
            if name.startswith(prefix + ".")}


# -- settings --------------------------------------------------------------------------------


def test_amqp_urls_lists_the_nodes_and_makes_quorum_queues_the_default():
    settings = load_settings({"AMQP_URLS": "amqp://u:p@mq1:5672/, amqp://u:p@mq2:5672/"})
    assert settings.amqp_nodes == ("amqp://u:p@mq1:5672/", "amqp://u:p@mq2:5672/")
    assert settings.amqp_queue_kind == "quorum"
    single = load_settings({"AMQP_URL": "amqp://u:p@mq1:5672/"})
    assert single.amqp_nodes == ("amqp://u:p@mq1:5672/",) and single.amqp_queue_kind == "classic"
    assert load_settings({"AMQP_URL": "amqp://u:p@mq1/", "AMQP_QUEUE_TYPE": "quorum"}).amqp_queue_kind == "quorum"
    assert load_settings({"AMQP_URLS": "amqp://mq1/", "AMQP_QUEUE_TYPE": "classic"}).amqp_queue_kind == "classic"
    assert load_settings({}).amqp_nodes == ()


@pytest.mark.parametrize(("env", "named"), [
    ({"AMQP_URL": "amqp://mq1/", "AMQP_URLS": "amqp://mq2/"}, "AMQP_URL and AMQP_URLS"),
    ({"AMQP_URLS": "http://u:secret@mq1/"}, "AMQP_URLS"),
    ({"AMQP_URLS": "amqp://mq1/,amqp://mq1/"}, "AMQP_URLS"),
    ({"AMQP_URLS": " , "}, "AMQP_URLS"),
    ({"AMQP_URL": "amqp:///"}, "AMQP_URL"),
    ({"AMQP_QUEUE_TYPE": "mirrored"}, "AMQP_QUEUE_TYPE"),
])
def test_bad_amqp_settings_are_refused_naming_the_variable_and_hiding_passwords(env, named):
    with pytest.raises(ConfigError) as refused:
        load_settings(env)
    assert named in str(refused.value) and "secret" not in str(refused.value)


# -- quorum queues -----------------------------------------------------------------------------


@REAL_ONLY
async def test_the_jobs_dead_and_retry_queues_are_quorum_queues(settings):
    prefix = f"vq-{uuid.uuid4().hex[:8]}"
    resources = await open_resources(load_settings({**_env(settings), "AMQP_URLS": settings.amqp_url,
                                                    "AMQP_QUEUE_PREFIX": prefix}))
    broker: RabbitBroker = resources.broker
    try:
        await broker.publish(TOPIC, {"n": 1}, message_id="m-1")
        await broker.declare_retry(broker._channel, 50)
        assert queue_types(prefix) == {f"{prefix}.jobs": "quorum", f"{prefix}.jobs.dead": "quorum",
                                       f"{prefix}.jobs.retry.q.50": "quorum"}
        depths = await broker.queue_depths()  # redeclares everything with the same arguments
        assert depths == {"jobs": 1, "retry": 0, "dead": 0}
    finally:
        await delete_queues(broker)
        await resources.close()


def _env(settings) -> dict[str, str]:
    """The environment of ``settings`` without its AMQP_URL (the tests give AMQP_URLS)."""
    return {"DB_HOST": settings.db_host, "DB_NAME": settings.db_name, "DB_USER": settings.db_user,
            "DB_PASSWORD": settings.db_password, "DATA_DIR": settings.data_dir, "VEDINA_ENV": "test"}


# -- nodes -------------------------------------------------------------------------------------


@REAL_ONLY
async def test_a_dead_first_node_is_skipped_and_the_live_one_takes_the_jobs(settings):
    dead = node_url(settings, closed_port())
    broker = RabbitBroker([dead, settings.amqp_url], prefix=f"vq-{uuid.uuid4().hex[:8]}", queue_type="quorum",
                          shuffle=False)
    try:
        started = time.monotonic()
        await broker.publish(TOPIC, {"n": 1}, message_id="m-1")
        assert time.monotonic() - started < 5
        assert broker.node == settings.amqp_url.replace("guest:guest", "guest:******")
        assert (await broker.queue_depths())["jobs"] == 1
    finally:
        await delete_queues(broker)
        await broker.close()


@REAL_ONLY
async def test_no_node_answering_is_an_outage_the_outbox_does_not_count(resources):
    broker = RabbitBroker([node_url(resources.settings, closed_port()), node_url(resources.settings, closed_port())],
                          prefix="vq-none", queue_type="quorum")
    async with resources.engine.begin() as conn:
        row_id = await enqueue(conn, topic=TOPIC, payload={"n": 1})
    with pytest.raises(BrokerUnavailable, match="no broker node answered"):
        await OutboxRelay(resources.engine, broker).relay_once()
    async with resources.engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox).where(outbox.c.id == row_id))).mappings().one()
    assert row["attempts"] == 0 and row["published_at"] is None
    await broker.close()


@REAL_ONLY
async def test_a_cut_node_moves_publishing_and_consuming_to_the_other_and_every_job_runs_once(resources):
    """Two proxies = two nodes. Jobs flow through the outbox, the one broker of a worker publishes and
    consumes; the node it uses is cut half-way (jobs in hand at that moment)."""
    engine, total = resources.engine, 120
    runs: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()

    async def handler(payload):
        await asyncio.sleep(0.01)  # a few jobs are always in hand
        runs[payload["n"]] += 1

    with TcpProxy(target_port=5672) as first, TcpProxy(target_port=5672) as second:
        urls = [node_url(resources.settings, first.port), node_url(resources.settings, second.port)]
        broker = RabbitBroker(urls, prefix=f"vq-{uuid.uuid4().hex[:8]}", queue_type="quorum", shuffle=False)
        broker.attach_handlers({TOPIC: handler}, ledger=MessageLedger(engine))
        relay = OutboxRelay(engine, broker)
        consumer = asyncio.create_task(broker.consume(stop=stop))
        message_ids = []

        async def enqueue_and_relay(numbers) -> None:
            async with engine.begin() as conn:
                message_ids.extend([f"outbox-{await enqueue(conn, topic=TOPIC, payload={'n': n})}" for n in numbers])
            while await relay.pending():
                try:
                    await relay.relay_once()
                except BrokerUnavailable:  # a switch in progress: the rows wait, uncounted
                    await asyncio.sleep(0.1)

        try:
            await enqueue_and_relay(range(total // 2))
            await wait_for(lambda: _true(sum(runs.values()) >= total // 4), "the first jobs handled")
            assert broker.node.endswith(f":{first.port}/")
            first.cut()  # the node goes away with jobs queued and in hand
            await enqueue_and_relay(range(total // 2, total))
            await wait_for(lambda: _true(len(runs) == total), "every job handled", timeout=40)
            assert broker.node.endswith(f":{second.port}/")
            await asyncio.sleep(1.5)  # redeliveries of jobs in hand at the cut would show up by now
            assert set(runs) == set(range(total)) and set(runs.values()) == {1}
            async with engine.connect() as conn:
                done = (await conn.execute(
                    sa.select(sa.func.count()).select_from(handled_messages)
                    .where(handled_messages.c.message_id.in_(message_ids), handled_messages.c.state == "done")
                )).scalar_one()
                unpublished = (await conn.execute(
                    sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
                )).scalar_one()
            assert done == total and unpublished == 0
            assert (await broker.queue_depths())["jobs"] == 0
        finally:
            stop.set()
            await asyncio.wait_for(consumer, 30)
            await delete_queues(broker)
            await broker.close()


async def _true(value: bool) -> bool:
    return value


@REAL_ONLY
async def test_a_poison_message_is_retried_then_dead_lettered_in_quorum_queues(settings):
    broker = RabbitBroker([node_url(settings, closed_port()), settings.amqp_url], prefix=f"vq-{uuid.uuid4().hex[:8]}",
                          queue_type="quorum", shuffle=False,
                          policies=RetryPolicies(default=RetryPolicy(max_attempts=3, base_delay=0.05, max_delay=0.1),
                                                 topics={}))
    tries = []

    async def poison(payload):
        tries.append(payload)
        raise ValueError("poisoned")

    stop = asyncio.Event()
    consumer = asyncio.create_task(broker.consume({TOPIC: poison}, stop=stop))
    try:
        await broker.publish(TOPIC, {"n": 1}, message_id="poison-1")

        async def dead() -> bool:
            return (await broker.queue_depths())["dead"] == 1

        await wait_for(dead, "the poison message dead-lettered")
        assert len(tries) == 3
        letters = await RabbitDeadLetters(broker).list()
        assert [(letter.id, letter.attempts) for letter in letters] == [("poison-1", 3)]
        assert "poisoned" in letters[0].error
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 30)
        await delete_queues(broker)
        await broker.close()


# -- the upgrade from classic queues -----------------------------------------------------------


@REAL_ONLY
async def test_classic_queues_are_refused_until_migrated_and_the_migration_keeps_every_message(settings):
    prefix = f"vq-{uuid.uuid4().hex[:8]}"
    classic = RabbitBroker(settings.amqp_url, prefix=prefix)
    quorum = RabbitBroker([settings.amqp_url], prefix=prefix, queue_type="quorum")
    try:
        for n in range(3):
            await classic.publish(TOPIC, {"n": n}, message_id=f"m-{n}")
        await classic._confirmed(classic._channel, classic.message(b"{}", topic=TOPIC, message_id="dead-1"),
                                 classic.dead_queue_name)
        retry = await classic.declare_retry(classic._channel, 819200)  # a long back-off, still waiting
        await classic._confirmed(classic._channel, classic.message(b"{}", topic=TOPIC, message_id="retry-1"), retry.name)
        await classic.close()

        with pytest.raises(BrokerUnavailable, match="PRECONDITION_FAILED"):
            await quorum.publish(TOPIC, {"n": 9}, message_id="m-9")

        report = await migrate_queues(quorum)
        assert report == [f"{retry.name}: 1 message(s) moved to {prefix}.jobs, deleted",
                          f"{prefix}.jobs.dead: now quorum, 1 message(s)", f"{prefix}.jobs: now quorum, 4 message(s)"]
        assert queue_types(prefix) == {f"{prefix}.jobs": "quorum", f"{prefix}.jobs.dead": "quorum"}
        assert await migrate_queues(quorum) == [f"{prefix}.jobs.dead: already quorum", f"{prefix}.jobs: already quorum"]

        await quorum.publish(TOPIC, {"n": 9}, message_id="m-9")
        assert await quorum.queue_depths() == {"jobs": 5, "retry": 0, "dead": 1}
    finally:
        await delete_queues(quorum)
        await quorum.close()


@REAL_ONLY
async def test_a_publish_to_a_missing_queue_is_an_outage_not_a_lost_message(settings):
    broker = RabbitBroker([settings.amqp_url], prefix=f"vq-{uuid.uuid4().hex[:8]}", queue_type="quorum")
    try:
        await broker.publish(TOPIC, {"n": 1}, message_id="m-1")
        other = await broker.open_channel()
        await other.queue_delete(broker.queue_name)  # as `vedina jobs migrate-queues` does for a moment
        await other.close()
        with pytest.raises(BrokerUnavailable, match="unroutable"):
            await broker.publish(TOPIC, {"n": 2}, message_id="m-2")
    finally:
        await delete_queues(broker)
        await broker.close()


@REAL_ONLY
def test_the_migrate_queues_command_reports_each_queue_and_needs_a_broker(settings, tmp_path):
    import os

    from tests.conftest import VEDINA

    prefix = f"vq-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATA_DIR": str(tmp_path), "VEDINA_ENV": "test", "AMQP_URLS": settings.amqp_url,
           "AMQP_QUEUE_PREFIX": prefix, "AMQP_URL": ""}
    done = subprocess.run([VEDINA, "jobs", "migrate-queues"], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"{prefix}.jobs.dead: already quorum", f"{prefix}.jobs: already quorum"]
        assert queue_types(prefix) == {f"{prefix}.jobs": "quorum", f"{prefix}.jobs.dead": "quorum"}
    finally:
        asyncio.run(delete_queues(RabbitBroker(settings.amqp_url, prefix=prefix)))
    refused = subprocess.run([VEDINA, "jobs", "migrate-queues"], env={**env, "AMQP_URLS": ""},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "AMQP_URL" in refused.stderr
