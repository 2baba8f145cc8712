"""Every job topic is idempotent under redelivery: one message id delivered three times has one effect.

Twice as the outbox publishes a row again when its relay stopped between
publishing and marking it; once more as a redelivery (on RabbitMQ a real one:
a consumer took the message and went away without acknowledging it). Each
topic of ``Services.job_handlers()`` needs a sample in :data:`SAMPLES`: a
representative job made the way the application makes it, and a check of its
effect. A new topic without a sample fails
``test_every_job_topic_has_a_redelivery_sample``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.jobs.media_helpers import add_video, asset_row, children, outbox_rows, place
from vedina.jobs import billing_mail, mail, media_probe, media_transcode, webhook_received
from vedina.storage.broker import InProcessBroker, RabbitBroker
from vedina.storage.clock import utcnow
from vedina.storage.outbox import enqueue
from vedina.storage.schema import handled_messages, outbox, webhook_events

Check = Callable[[], Awaitable[None]]
SampleMaker = Callable[..., Awaitable[Check]]  # (services, media_dir, clips) -> check of the effect

SAMPLES: dict[str, SampleMaker] = {}


def sample(topic: str):
    def register(make: SampleMaker) -> SampleMaker:
        SAMPLES[topic] = make
        return make

    return register


@sample(media_probe.TOPIC)
async def probe_sample(services, media_dir: Path, clips) -> Check:
    engine, name = services.resources.engine, uuid.uuid4().hex[:8]
    place(clips["small"], media_dir, f"in/{name}.mp4")
    _, asset_id = await add_video(engine, path=f"in/{name}.mp4", slug=f"probe-{name}")
    async with engine.begin() as conn:
        await enqueue(conn, topic=media_probe.TOPIC, payload={"asset_id": asset_id})

    async def check() -> None:
        assert (await asset_row(engine, asset_id))["status"] == "ready"
        queued = [row for row in await outbox_rows(engine) if row["topic"] == media_transcode.TOPIC]
        assert queued == [{"topic": media_transcode.TOPIC, "payload": {"asset_id": asset_id}}]  # one transcode

    return check


@sample(media_transcode.TOPIC)
async def transcode_sample(services, media_dir: Path, clips) -> Check:
    engine, name = services.resources.engine, uuid.uuid4().hex[:8]
    place(clips["small"], media_dir, f"in/{name}.mp4")
    _, asset_id = await add_video(engine, path=f"in/{name}.mp4", slug=f"transcode-{name}")
    await services.job_handlers()[media_probe.TOPIC]({"asset_id": asset_id})  # queues the transcode, as ingest does

    async def check() -> None:
        source = await asset_row(engine, asset_id)
        assert (source["transcode_status"], source["transcode_progress"]) == ("done", 100)
        made = await children(engine, asset_id)  # asserts no (kind, label) twice
        assert set(made) == {("rendition", "source"), ("poster", "poster"), ("sprite", "sprite"),
                             ("sprite_image", "sprite")}

    return check


@sample(mail.TOPIC)
async def mail_sample(services, media_dir: Path, clips) -> Check:
    email = f"redelivery-{uuid.uuid4().hex[:10]}@example.org"
    await services.accounts.register(email=email, password="correct horse battery staple", display_name="Twice")
    folder = Path(services.settings.data_dir, "mail")

    async def check() -> None:
        sent = [p for p in folder.glob("*.eml") if email in p.read_text(errors="replace")]
        assert len(sent) == 1

    return check


@sample(webhook_received.TOPIC)
async def webhook_sample(services, media_dir: Path, clips) -> Check:
    row_id = await services.webhook_events.record(provider="redelivery-test", event_id=uuid.uuid4().hex,
                                                  event_type="ping", payload={"n": 1})

    async def check() -> None:
        async with services.resources.engine.connect() as conn:
            processed = (await conn.execute(
                sa.select(webhook_events.c.processed_at).where(webhook_events.c.id == row_id)
            )).scalar_one()
        assert processed is not None

    return check


async def _subscribed(services) -> tuple[str, int]:
    """A paid subscription (the session's payment simulator): one receipt and one notice queued."""
    from tests.billing.conftest import make_plans, new_account

    plans = await make_plans(services)
    user_id, email = await new_account(services)
    subscription, _ = await services.subscriptions.subscribe(user_id=user_id, email=email, plan_id=plans["basic"],
                                                             payment_method="pm_card_visa")
    return email, subscription.latest_payment.id


async def _publish_all(engine, topic: str) -> None:
    """Mark every queued job of ``topic`` handled elsewhere (each sample leaves one job of its own topic)."""
    async with engine.begin() as conn:
        await conn.execute(sa.update(outbox).where(outbox.c.topic == topic, outbox.c.published_at.is_(None))
                           .values(published_at=utcnow()))


def _mails_to(services, email: str, subject: str) -> list[Path]:
    folder = Path(services.settings.data_dir, "mail")
    return [p for p in folder.glob("*.eml") if email in (text := p.read_text(errors="replace")) and subject in text]


def billing_sample(topic: str, other: str, subject: Callable[[int], str]) -> SampleMaker:
    """A billing email job: one paid subscription queues a receipt and a notice; the sample keeps
    ``topic``'s and marks ``other``'s handled. Its effect: one email whose subject has ``subject(payment id)``."""

    async def make(services, media_dir: Path, clips) -> Check:
        email, payment_id = await _subscribed(services)
        await _publish_all(services.resources.engine, other)

        async def check() -> None:
            assert len(_mails_to(services, email, subject(payment_id))) == 1

        return check

    return make


sample(billing_mail.RECEIPT_TOPIC)(billing_sample(billing_mail.RECEIPT_TOPIC, billing_mail.NOTICE_TOPIC,
                                                  lambda payment_id: f"receipt #{payment_id}"))
sample(billing_mail.NOTICE_TOPIC)(billing_sample(billing_mail.NOTICE_TOPIC, billing_mail.RECEIPT_TOPIC,
                                                 lambda payment_id: "subscription is active"))


def test_every_job_topic_has_a_redelivery_sample(services):
    missing = set(services.job_handlers()) - set(SAMPLES)
    assert not missing, f"add a sample to tests/jobs/test_redelivery.py for: {sorted(missing)}"


def counted(handlers: dict) -> tuple[dict, dict[str, int]]:
    runs = dict.fromkeys(handlers, 0)

    def wrap(topic, handler):
        async def run(payload):
            runs[topic] += 1
            await handler(payload)

        return run

    return {topic: wrap(topic, handler) for topic, handler in handlers.items()}, runs


async def the_job(engine, topic: str) -> tuple[str, dict]:
    """The sample's outbox row: its message id (as the relay names it) and payload; marked published."""
    async with engine.begin() as conn:
        row = (await conn.execute(
            sa.select(outbox.c.id, outbox.c.payload).where(outbox.c.topic == topic, outbox.c.published_at.is_(None))
        )).one()
        await conn.execute(sa.update(outbox).where(outbox.c.id == row.id).values(published_at=utcnow()))
    return f"outbox-{row.id}", row.payload


async def handled(engine, message_id: str) -> bool:
    async with engine.connect() as conn:
        state = (await conn.execute(
            sa.select(handled_messages.c.state).where(handled_messages.c.message_id == message_id)
        )).scalar_one_or_none()
    return state == "done"


async def deliver_three_times_in_process(services, topic: str, message_id: str, payload: dict, handlers) -> None:
    broker = InProcessBroker(handlers, ledger=services.message_ledger)
    for _ in range(3):
        await broker.publish(topic, payload, message_id=message_id)


async def deliver_three_times_on_rabbitmq(services, topic: str, message_id: str, payload: dict, handlers,
                                          runs: dict[str, int]) -> None:
    rabbit: RabbitBroker = services.resources.broker
    for _ in range(3):
        await rabbit.publish(topic, payload, message_id=message_id)
    channel = await rabbit.open_channel()  # a consumer that takes one and goes away: RabbitMQ redelivers it
    queue = await channel.declare_queue(rabbit.queue_name, passive=True)
    taken = await queue.get(no_ack=False, timeout=5)
    assert taken.message_id == message_id
    await channel.close()
    stop = asyncio.Event()
    consumer = asyncio.create_task(rabbit.consume(handlers, stop=stop))
    try:
        deadline = time.monotonic() + 90
        quiet_since = None
        # Once handled, the copies postponed meanwhile (Busy) come back within a requeue delay and are skipped.
        while quiet_since is None or time.monotonic() - quiet_since < 2.5:
            assert time.monotonic() < deadline and not consumer.done()
            drained = await handled(services.resources.engine, message_id) and (await rabbit.queue_depths())["jobs"] == 0
            quiet_since = (quiet_since or time.monotonic()) if drained else None
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(consumer, 30)
    assert (await rabbit.queue_depths()) == {"jobs": 0, "retry": 0, "dead": 0}


@pytest.mark.parametrize("topic", sorted(SAMPLES))
async def test_a_job_delivered_three_times_has_one_effect(topic, profile, services, media_dir, clips):
    check = await SAMPLES[topic](services, media_dir, clips)
    message_id, payload = await the_job(services.resources.engine, topic)
    handlers, runs = counted(services.job_handlers())
    if profile == "real":
        await deliver_three_times_on_rabbitmq(services, topic, message_id, payload, handlers, runs)
    else:
        await deliver_three_times_in_process(services, topic, message_id, payload, handlers)
    assert runs[topic] == 1
    await check()
