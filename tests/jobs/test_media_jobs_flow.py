"""The media jobs end to end, through the outbox: in-process (embedded) and `vedina worker` on RabbitMQ (real)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import TEST_REDIS_DB, VEDINA, profile_env, require_profile
from tests.jobs.media_helpers import add_video, asset_row, children, place, top_level_boxes
from vedina.jobs import media_probe
from vedina.storage.outbox import enqueue

EXPECTED = {("rendition", "source"), ("poster", "poster"), ("sprite", "sprite"), ("sprite_image", "sprite")}


async def ingest(services, media_dir, clip) -> int:
    """What an upload or the demo loader does: the asset row and its probe job, in one transaction."""
    place(clip, media_dir, "in/clip.mp4")
    engine = services.resources.engine
    _, asset_id = await add_video(engine, path="in/clip.mp4")
    async with engine.begin() as conn:
        await enqueue(conn, topic=media_probe.TOPIC, payload={"asset_id": asset_id})
    return asset_id


@pytest.mark.parametrize("profile", ["embedded"])
async def test_outbox_relay_runs_probe_then_transcode_in_process(profile, services, media_dir, clips):
    asset_id = await ingest(services, media_dir, clips["small"])

    while await services.resources.relay.relay_once():  # what `vedina demo-data` and the relay loop do
        pass

    source = await asset_row(services.resources.engine, asset_id)
    assert (source["status"], source["transcode_status"], source["transcode_progress"]) == ("ready", "done", 100)
    assert set(await children(services.resources.engine, asset_id)) == EXPECTED


@pytest.mark.parametrize("profile", ["real"])
async def test_vedina_worker_on_rabbitmq_runs_probe_then_transcode(profile, services, media_dir, clips, tmp_path):
    require_profile("real")
    settings = services.settings
    asset_id = await ingest(services, media_dir, clips["hd"])
    env = profile_env("real", tmp_path, database=settings.db_name, redis_db=TEST_REDIS_DB,
                      amqp_prefix=settings.amqp_queue_prefix) | {"TRANSCODE_PRESET": "ultrafast", "LOG_LEVEL": "info"}
    assert env["DATA_DIR"] == settings.data_dir  # the worker sees the same MEDIA_ROOT
    worker = subprocess.Popen([VEDINA, "worker"], env={**os.environ, **env}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "wb"))
    try:
        deadline = time.monotonic() + 120
        while (source := await asset_row(services.resources.engine, asset_id))["transcode_status"] != "done":
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            assert source["transcode_status"] != "failed", source["failure_reason"]
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            await asyncio.sleep(0.3)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)

    assert (source["status"], source["height"], source["transcode_progress"]) == ("ready", 720, 100)
    made = await children(services.resources.engine, asset_id)
    assert set(made) == {("rendition", "360p"), ("rendition", "720p"), ("poster", "poster"), ("sprite", "sprite"), ("sprite_image", "sprite")}
    for key in [("rendition", "360p"), ("rendition", "720p")]:
        boxes = top_level_boxes(media_dir / made[key]["path"])
        assert boxes.index("moov") < boxes.index("mdat")
    assert all(row["status"] == "ready" and row["parent_id"] == asset_id for row in made.values())
