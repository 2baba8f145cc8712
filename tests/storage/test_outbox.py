"""Transactional outbox and brokers: in-process (embedded) and RabbitMQ (real)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import orjson
import pytest
import sqlalchemy as sa

from vedina.jobs.retry import RetryPolicies, RetryPolicy
from vedina.storage.broker import InProcessBroker, RabbitBroker
from vedina.storage.outbox import MAX_ATTEMPTS, OutboxRelay, enqueue
from vedina.storage.schema import outbox


class Recorder:
    def __init__(self, fail_times: int = 0) -> None:
        self.seen: list[dict] = []
        self.fail_times = fail_times

    async def __call__(self, payload: dict) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("handler failed")
        self.seen.append(payload)


async def test_job_exists_only_if_its_transaction_commits(resources):
    async with resources.engine.begin() as conn:
        await enqueue(conn, topic="test.topic", payload={"n": 1})
    with pytest.raises(ZeroDivisionError):
        async with resources.engine.begin() as conn:
            await enqueue(conn, topic="test.topic", payload={"n": 2})
            1 / 0
    relay = OutboxRelay(resources.engine, InProcessBroker({}))
    assert await relay.pending() == 1


async def test_relay_runs_in_process_handlers_once(resources):
    recorder = Recorder()
    relay = OutboxRelay(resources.engine, InProcessBroker({"test.topic": recorder}))
    async with resources.engine.begin() as conn:
        for n in range(3):
            await enqueue(conn, topic="test.topic", payload={"n": n})
    assert await relay.relay_once() == 3
    assert await relay.relay_once() == 0
    assert [p["n"] for p in recorder.seen] == [0, 1, 2]
    assert await relay.pending() == 0


async def test_two_relays_never_publish_a_row_twice(resources):
    recorder = Recorder()
    broker = InProcessBroker({"test.topic": recorder})
    async with resources.engine.begin() as conn:
        for n in range(40):
            await enqueue(conn, topic="test.topic", payload={"n": n})
    relays = [OutboxRelay(resources.engine, broker, batch_size=7) for _ in range(2)]

    async def drain(relay):
        while await relay.relay_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    assert sorted(p["n"] for p in recorder.seen) == list(range(40))


NO_BACKOFF = RetryPolicies(default=RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=0, max_delay=0), topics={})


async def test_failed_job_is_retried_then_parked_with_its_error(resources):
    flaky = Recorder(fail_times=1)
    relay = OutboxRelay(resources.engine, InProcessBroker({"flaky": flaky, "broken": Recorder(fail_times=99)}),
                        policies=NO_BACKOFF)
    async with resources.engine.begin() as conn:
        await enqueue(conn, topic="flaky", payload={"n": 1})
        await enqueue(conn, topic="broken", payload={"n": 2})
    for _ in range(MAX_ATTEMPTS + 1):
        await relay.relay_once()
    assert flaky.seen == [{"n": 1}]
    async with resources.engine.connect() as conn:
        parked = (await conn.execute(sa.select(outbox).where(outbox.c.topic == "broken"))).mappings().one()
    assert parked["published_at"] is None
    assert parked["attempts"] == MAX_ATTEMPTS
    assert "handler failed" in parked["last_error"]


REAL_ONLY = pytest.mark.parametrize("profile", ["real"], indirect=True)


@pytest.fixture
async def rabbit(settings):
    broker = RabbitBroker(settings.amqp_url, prefix=f"vt-{uuid.uuid4().hex[:8]}")
    await broker.connect()
    yield broker
    channel = broker._channel
    await channel.queue_delete(broker.queue_name)
    await channel.queue_delete(broker.dead_queue_name)
    await broker.close()


@REAL_ONLY
async def test_rabbitmq_round_trip_through_the_outbox(resources, rabbit):
    async with resources.engine.begin() as conn:
        await enqueue(conn, topic="test.topic", payload={"movie": 7})
    assert await OutboxRelay(resources.engine, rabbit).relay_once() == 1

    recorder, stop = Recorder(), asyncio.Event()

    async def handle(payload):
        await recorder(payload)
        stop.set()

    await asyncio.wait_for(rabbit.consume({"test.topic": handle}, stop=stop), timeout=10)
    assert recorder.seen == [{"movie": 7}]


@REAL_ONLY
async def test_rabbitmq_failed_job_goes_to_the_dead_letter_queue(rabbit):
    rabbit.retry_policies = RetryPolicies(default=RetryPolicy(max_attempts=1), topics={})  # no retry (tests/jobs)
    await rabbit.publish("test.topic", {"poison": True}, message_id="m-1")
    stop = asyncio.Event()

    async def explode(payload):
        stop.set()
        raise ValueError("cannot process")

    await asyncio.wait_for(rabbit.consume({"test.topic": explode}, stop=stop), timeout=10)
    dead = await rabbit._channel.declare_queue(rabbit.dead_queue_name, durable=True, passive=True)
    message = None
    for _ in range(40):
        message = await dead.get(no_ack=True, fail=False)
        if message is not None:
            break
        await asyncio.sleep(0.05)
    assert message is not None
    assert orjson.loads(message.body) == {"topic": "test.topic", "payload": {"poison": True}}
    assert message.message_id == "m-1"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


# -- a broker that is down is not a poison message (issue 8, item 8) ------------------------


class DownBroker:
    """Refuses every publish as unavailable for its first ``outage`` calls, then takes them."""

    def __init__(self, outage: int) -> None:
        self.outage = outage
        self.published: list[str] = []

    def attach_handlers(self, handlers) -> None:
        return None

    async def publish(self, topic, payload, *, message_id):
        from vedina.storage.broker import BrokerUnavailable

        if self.outage > 0:
            self.outage -= 1
            raise BrokerUnavailable("ConnectionError: broker is down")
        self.published.append(message_id)


async def test_an_outage_longer_than_max_attempts_loses_nothing(resources):
    from vedina.storage.broker import BrokerUnavailable

    broker = DownBroker(outage=5 * MAX_ATTEMPTS)
    relay = OutboxRelay(resources.engine, broker)
    async with resources.engine.begin() as conn:
        ids = [await enqueue(conn, topic="mail", payload={"n": n}) for n in range(3)]
    for _ in range(5 * MAX_ATTEMPTS):
        with pytest.raises(BrokerUnavailable):
            await relay.relay_once()
    async with resources.engine.connect() as conn:
        rows = (await conn.execute(sa.select(outbox.c.attempts, outbox.c.last_error))).mappings().all()
    assert [r["attempts"] for r in rows] == [0, 0, 0]  # the outage counted nothing
    assert all("broker is down" in (r["last_error"] or "") for r in rows[:1])
    assert await relay.relay_once() == 3
    assert broker.published == [f"outbox-{i}" for i in ids]


async def test_one_relay_per_host_and_a_standby_takes_over(resources, tmp_path):
    from vedina.storage.outbox import HostLock, RelayLoop

    recorder = Recorder()
    broker = InProcessBroker({"test.topic": recorder})
    path = tmp_path / "relay.lock"
    first = RelayLoop(OutboxRelay(resources.engine, broker), HostLock(path), interval=0.05)
    second = RelayLoop(OutboxRelay(resources.engine, broker), HostLock(path), interval=0.05)
    first.start()
    second.start()
    try:
        await asyncio.sleep(0.2)
        assert first.lock.held != second.lock.held  # exactly one of them relays
        holder, standby = (first, second) if first.lock.held else (second, first)
        async with resources.engine.begin() as conn:
            await enqueue(conn, topic="test.topic", payload={"n": 1})
        for _ in range(100):
            if recorder.seen:
                break
            await asyncio.sleep(0.02)
        assert recorder.seen == [{"n": 1}]
        await holder.close()  # the holder exits: the standby takes the lock and relays
        async with resources.engine.begin() as conn:
            await enqueue(conn, topic="test.topic", payload={"n": 2})
        for _ in range(100):
            if len(recorder.seen) == 2:
                break
            await asyncio.sleep(0.02)
        assert standby.lock.held and recorder.seen == [{"n": 1}, {"n": 2}]
    finally:
        await first.close()
        await second.close()


@REAL_ONLY
async def test_rabbitmq_errors_become_broker_unavailable(settings):
    from vedina.storage.broker import BrokerUnavailable

    closed_port = RabbitBroker("amqp://guest:guest@127.0.0.1:1/", prefix="vt-down")
    with pytest.raises(BrokerUnavailable):
        await closed_port.publish("test.topic", {}, message_id="m")
    with pytest.raises(BrokerUnavailable):
        await closed_port.ping()


# -- a message delivered twice is handled once (issue 8, item 13) ----------------------------


async def test_a_repeated_message_id_is_skipped_in_process(resources):
    from vedina.storage.message_ledger import MessageLedger

    recorder = Recorder()
    broker = InProcessBroker({"mail": recorder}, ledger=MessageLedger(resources.engine))
    for _ in range(3):
        await broker.publish("mail", {"user_id": 7}, message_id="outbox-993")
    await broker.publish("mail", {"user_id": 8}, message_id="outbox-994")
    assert recorder.seen == [{"user_id": 7}, {"user_id": 8}]


async def test_a_failed_handler_is_not_recorded_and_runs_again(resources):
    from vedina.storage.message_ledger import MessageLedger

    flaky = Recorder(fail_times=1)
    broker = InProcessBroker({"mail": flaky}, ledger=MessageLedger(resources.engine))
    with pytest.raises(RuntimeError):
        await broker.publish("mail", {"n": 1}, message_id="outbox-1")
    await broker.publish("mail", {"n": 1}, message_id="outbox-1")
    assert flaky.seen == [{"n": 1}]


@REAL_ONLY
async def test_rabbitmq_redelivered_message_runs_its_handler_once(resources, rabbit):
    from vedina.storage.message_ledger import MessageLedger

    rabbit.attach_handlers({}, ledger=MessageLedger(resources.engine))
    for _ in range(2):  # the same outbox row published twice (a relay stopped before marking it)
        await rabbit.publish("mail", {"user_id": 7}, message_id="outbox-993")
    await rabbit.publish("mail", {"user_id": 8}, message_id="outbox-994")
    recorder, stop = Recorder(), asyncio.Event()

    async def handle(payload):
        await recorder(payload)
        if payload["user_id"] == 8:
            stop.set()

    await asyncio.wait_for(rabbit.consume({"mail": handle}, stop=stop), timeout=10)  # waits for the jobs in hand
    await asyncio.sleep(0.2)  # a late duplicate would have arrived by now
    assert sorted(p["user_id"] for p in recorder.seen) == [7, 8]  # handlers run concurrently: any order


async def test_a_message_busy_elsewhere_costs_no_attempt(resources):
    """A job whose id another consumer holds (or held when it died) is not the message's failure."""
    from vedina.storage.message_ledger import MessageLedger

    ledger = MessageLedger(resources.engine)
    recorder = Recorder()
    relay = OutboxRelay(resources.engine, InProcessBroker({"mail": recorder}, ledger=ledger))
    async with resources.engine.begin() as conn:
        row_id = await enqueue(conn, topic="mail", payload={"n": 1})
    assert await ledger.claim(f"outbox-{row_id}", "mail")  # someone else is running it
    for _ in range(MAX_ATTEMPTS + 2):
        assert await relay.relay_once() == 0
    async with resources.engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox).where(outbox.c.id == row_id))).mappings().one()
    assert row["attempts"] == 0 and row["published_at"] is None and "busy" in row["last_error"]
    await ledger.release(f"outbox-{row_id}")  # that consumer gave up: the job runs here, once
    assert await relay.relay_once() == 1 and recorder.seen == [{"n": 1}]
