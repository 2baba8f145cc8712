"""Graceful shutdown of `vedina worker` on RabbitMQ: SIGTERM stops taking messages, the job in hand
finishes and is acknowledged, and nothing is left unacknowledged or lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import TEST_REDIS_DB, VEDINA, free_port, profile_env, require_profile
from tests.jobs.media_helpers import add_video, asset_row, children, place
from vedina.jobs import media_probe, media_transcode
from vedina.storage.message_ledger import MessageLedger
from vedina.storage.outbox import enqueue
from vedina.storage.schema import handled_messages, outbox

REAL = pytest.mark.parametrize("profile", ["real"])


@REAL
async def test_sigterm_lets_the_job_in_hand_finish_once_and_loses_nothing(profile, services, media_dir, clips, tmp_path):
    require_profile("real")
    settings, engine, rabbit = services.settings, services.resources.engine, services.resources.broker
    place(clips["hd"], media_dir, "in/shutdown.mp4")
    _, asset_id = await add_video(engine, path="in/shutdown.mp4", slug="shutdown")
    async with engine.begin() as conn:
        await enqueue(conn, topic=media_probe.TOPIC, payload={"asset_id": asset_id})
    env = profile_env("real", tmp_path, database=settings.db_name, redis_db=TEST_REDIS_DB,
                      amqp_prefix=settings.amqp_queue_prefix) | {"TRANSCODE_PRESET": "ultrafast", "LOG_LEVEL": "info",
                                                                 "WORKER_METRICS_PORT": str(free_port())}
    assert env["DATA_DIR"] == settings.data_dir  # the worker sees the same MEDIA_ROOT
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([VEDINA, "worker"], env={**os.environ, **env}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        deadline = time.monotonic() + 60
        while (await asset_row(engine, asset_id))["transcode_status"] != "running":  # the slow job is in hand
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        scrape = httpx.get(f"http://127.0.0.1:{env['WORKER_METRICS_PORT']}/metrics", timeout=5).text
        assert 'vedina_job_duration_seconds_count{outcome="ok",topic="media.probe"} 1.0' in scrape
        # To the worker only (ffmpeg, its child, would die with a signal to the whole group;
        # systemd: KillMode=mixed, see the README).
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=90) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()

    source = await asset_row(engine, asset_id)
    assert (source["transcode_status"], source["transcode_progress"]) == ("done", 100)
    assert set(await children(engine, asset_id)) == {  # once: children() fails on a (kind, label) made twice
        ("rendition", "360p"), ("rendition", "720p"), ("poster", "poster"), ("sprite", "sprite"), ("sprite_image", "sprite")}
    async with engine.connect() as conn:
        ledger = dict((await conn.execute(sa.select(handled_messages.c.topic, handled_messages.c.state))).all())
        unpublished = (await conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )).scalar_one()
    assert ledger == {media_probe.TOPIC: "done", media_transcode.TOPIC: "done"} and unpublished == 0
    assert await rabbit.queue_depths() == {"jobs": 0, "retry": 0, "dead": 0}  # nothing unacked came back
    assert "finishing the jobs in hand" in log.read_text()


@REAL
async def test_a_job_still_running_after_the_grace_period_goes_back_to_the_queue(profile, resources):
    require_profile("real")
    rabbit, started, finished = resources.broker, asyncio.Event(), []

    async def slow(payload):
        started.set()
        await asyncio.sleep(30)
        finished.append(payload)

    rabbit.attach_handlers({"test.slow": slow}, ledger=MessageLedger(resources.engine))
    await rabbit.publish("test.slow", {"n": 1}, message_id="slow-1")
    stop = asyncio.Event()
    consumer = asyncio.create_task(rabbit.consume(stop=stop, grace=0.2))
    await asyncio.wait_for(started.wait(), 10)
    stop.set()
    await asyncio.wait_for(consumer, 10)
    assert finished == []
    assert (await rabbit.queue_depths())["jobs"] == 1  # back in the queue, not lost, not dead

    async def quick(payload):  # the next worker runs it (the ledger claim was released)
        finished.append(payload)
        stop.set()

    stop.clear()
    await asyncio.wait_for(rabbit.consume({"test.slow": quick}, stop=stop), 10)
    assert finished == [{"n": 1}] and await rabbit.queue_depths() == {"jobs": 0, "retry": 0, "dead": 0}


@pytest.mark.parametrize("profile", ["embedded"])
async def test_an_in_process_job_in_hand_finishes_when_its_process_stops(profile, resources, tmp_path):
    """Embedded: jobs run inside the relay's batch; closing the relay lets the batch finish."""
    from vedina.storage.broker import InProcessBroker
    from vedina.storage.outbox import HostLock, OutboxRelay, RelayLoop

    started, finished = asyncio.Event(), []

    async def slow(payload):
        started.set()
        await asyncio.sleep(0.5)
        finished.append(payload)

    loop = RelayLoop(OutboxRelay(resources.engine, InProcessBroker({"test.slow": slow})),
                     HostLock(tmp_path / "relay.lock"), interval=0.05)
    async with resources.engine.begin() as conn:
        await enqueue(conn, topic="test.slow", payload={"n": 1})
    loop.start()
    await asyncio.wait_for(started.wait(), 10)
    await loop.close(grace=10)
    assert finished == [{"n": 1}]
    async with resources.engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox.c.published_at, outbox.c.attempts))).one()
    assert row.published_at is not None and row.attempts == 1
