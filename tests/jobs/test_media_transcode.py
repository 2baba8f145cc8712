"""media.transcode on both profiles: the ladder, its files, progress, idempotence and crash recovery."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.jobs.media_helpers import (
    add_video,
    asset_row,
    children,
    ffprobe_streams,
    image_size,
    place,
    top_level_boxes,
)
from vedina.jobs import media_probe, media_transcode
from vedina.storage.clock import utcnow
from vedina.storage.message_ledger import Busy
from vedina.storage.schema import media_assets


async def probed_source(services, jobs, media_dir, clip, name="source.mp4") -> tuple[int, int]:
    place(clip, media_dir, f"in/{name}")
    movie_id, asset_id = await add_video(services.resources.engine, path=f"in/{name}")
    await jobs[media_probe.TOPIC]({"asset_id": asset_id})
    return movie_id, asset_id


async def transcode_watching_progress(services, jobs, asset_id) -> list[tuple[str, int]]:
    """Run the job while polling the source row: the (status, progress) pairs a client could see."""
    seen: list[tuple[str, int]] = []

    async def watch() -> None:
        while True:
            row = await asset_row(services.resources.engine, asset_id)
            state = (row["transcode_status"], row["transcode_progress"])
            if not seen or seen[-1] != state:
                seen.append(state)
            await asyncio.sleep(0.02)

    watcher = asyncio.ensure_future(watch())
    try:
        await jobs[media_transcode.TOPIC]({"asset_id": asset_id})
    finally:
        watcher.cancel()
    row = await asset_row(services.resources.engine, asset_id)
    seen.append((row["transcode_status"], row["transcode_progress"]))
    return seen


def mtimes(media_dir, rows) -> dict[str, int]:
    return {row["label"]: (media_dir / row["path"]).stat().st_mtime_ns for row in rows.values()}


async def test_a_720p_source_gets_360p_and_720p_fast_start_h264_aac_a_poster_and_a_sprite(services, jobs, media_dir, clips):
    movie_id, source_id = await probed_source(services, jobs, media_dir, clips["hd"])

    seen = await transcode_watching_progress(services, jobs, source_id)

    made = await children(services.resources.engine, source_id)
    # 720p is the source's height: the '720p' rung is the source's rendition, no duplicate 'source' rung.
    assert set(made) == {("rendition", "360p"), ("rendition", "720p"), ("poster", "poster"), ("sprite", "sprite"), ("sprite_image", "sprite")}
    for label, width, height in [("360p", 640, 360), ("720p", 1280, 720)]:
        row = made[("rendition", label)]
        file = media_dir / row["path"]
        assert row["path"] == f"renditions/{source_id}/{label}.mp4"
        assert (row["movie_id"], row["parent_id"], row["status"], row["content_type"]) == (
            movie_id, source_id, "ready", "video/mp4")
        assert (row["width"], row["height"], row["video_codec"], row["audio_codec"]) == (width, height, "h264", "aac")
        assert 1900 <= row["duration_ms"] <= 2100 and row["bitrate"] > 0 and "mp4" in row["container"]
        assert row["size_bytes"] == file.stat().st_size
        assert row["checksum_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        boxes = top_level_boxes(file)
        assert boxes.index("moov") < boxes.index("mdat"), boxes  # fast start
        streams = ffprobe_streams(file)
        assert (streams["video"], streams["audio"]) == ("h264", "aac")
    assert not list((media_dir / f"renditions/{source_id}").glob("*.part.*"))

    poster = made[("poster", "poster")]
    assert (poster["path"], poster["content_type"]) == (f"renditions/{source_id}/poster.jpg", "image/jpeg")
    assert image_size(media_dir / poster["path"]) == (1280, 720) == (poster["width"], poster["height"])

    sprite = made[("sprite", "sprite")]
    assert (sprite["path"], sprite["content_type"]) == (f"renditions/{source_id}/sprite.vtt", "text/vtt")
    vtt = (media_dir / sprite["path"]).read_text()
    header, first_cue, second_cue = vtt.strip().split("\n\n")
    assert header == "WEBVTT"
    assert first_cue == "00:00:00.000 --> 00:00:01.000\nsprite.jpg#xywh=0,0,160,90"
    assert re.fullmatch(r"00:00:01\.000 --> 00:00:02\.\d{3}\nsprite\.jpg#xywh=160,0,160,90", second_cue), second_cue
    assert image_size(media_dir / f"renditions/{source_id}/sprite.jpg") == (320, 90)
    picture = made[("sprite_image", "sprite")]  # an asset of its own: players fetch it with a signed URL
    assert (picture["path"], picture["content_type"]) == (f"renditions/{source_id}/sprite.jpg", "image/jpeg")

    source = await asset_row(services.resources.engine, source_id)
    assert (source["transcode_status"], source["transcode_progress"], source["failure_reason"]) == ("done", 100, None)
    assert seen[-1] == ("done", 100)
    running = [progress for status, progress in seen if status == "running"]
    assert running and running == sorted(running) and any(0 < p < 100 for p in running), seen


async def test_a_source_below_every_rung_gets_only_a_source_rung_remuxed_fast_start(services, jobs, media_dir, clips):
    _, source_id = await probed_source(services, jobs, media_dir, clips["small"])

    await jobs[media_transcode.TOPIC]({"asset_id": source_id})

    made = await children(services.resources.engine, source_id)
    assert set(made) == {("rendition", "source"), ("poster", "poster"), ("sprite", "sprite"), ("sprite_image", "sprite")}
    row = made[("rendition", "source")]
    assert (row["width"], row["height"], row["video_codec"], row["audio_codec"]) == (320, 240, "h264", "aac")
    boxes = top_level_boxes(media_dir / row["path"])
    assert boxes.index("moov") < boxes.index("mdat")
    assert top_level_boxes(media_dir / "in/source.mp4")[-1] == "moov"  # the source was moov-last


async def test_running_twice_changes_nothing_and_a_deleted_rung_alone_is_redone(services, jobs, media_dir, clips):
    engine = services.resources.engine
    _, source_id = await probed_source(services, jobs, media_dir, clips["hd"])
    await jobs[media_transcode.TOPIC]({"asset_id": source_id})
    first = await children(engine, source_id)
    before = mtimes(media_dir, first)

    await jobs[media_transcode.TOPIC]({"asset_id": source_id})
    assert await children(engine, source_id) == first  # same rows, not even updated_at touched
    assert mtimes(media_dir, await children(engine, source_id)) == before

    gone = first[("rendition", "360p")]
    (media_dir / gone["path"]).unlink()
    async with engine.begin() as conn:
        await conn.execute(sa.delete(media_assets).where(media_assets.c.id == gone["id"]))
    await jobs[media_transcode.TOPIC]({"asset_id": source_id})

    again = await children(engine, source_id)
    assert set(again) == set(first)
    assert again[("rendition", "360p")]["id"] != gone["id"] and (media_dir / gone["path"]).is_file()
    after = mtimes(media_dir, again)
    assert {k: v for k, v in after.items() if k != "360p"} == {k: v for k, v in before.items() if k != "360p"}
    assert (await asset_row(engine, source_id))["transcode_status"] == "done"


async def test_a_truncated_rendition_is_redone(services, jobs, media_dir, clips):
    engine = services.resources.engine
    _, source_id = await probed_source(services, jobs, media_dir, clips["small"])
    await jobs[media_transcode.TOPIC]({"asset_id": source_id})
    row = (await children(engine, source_id))[("rendition", "source")]
    file = media_dir / row["path"]
    with open(file, "r+b") as handle:  # what a crash between write and rename-less copy could leave
        handle.truncate(row["size_bytes"] // 2)

    await jobs[media_transcode.TOPIC]({"asset_id": source_id})

    redone = (await children(engine, source_id))[("rendition", "source")]
    assert redone["id"] == row["id"] and file.stat().st_size == redone["size_bytes"] == row["size_bytes"]
    assert hashlib.sha256(file.read_bytes()).hexdigest() == redone["checksum_sha256"]


async def test_a_crashed_run_left_running_with_temp_files_is_completed_by_the_next(services, jobs, media_dir, clips):
    engine = services.resources.engine
    _, source_id = await probed_source(services, jobs, media_dir, clips["small"])
    # A worker died mid-encode: its lease is stale, half-written temp files remain.
    folder = media_dir / f"renditions/{source_id}"
    folder.mkdir(parents=True)
    (folder / "source.part.mp4").write_bytes(b"\x00" * 1000)
    (folder / "sprite.part.jpg").write_bytes(b"\xff\xd8")
    stale = utcnow() - media_transcode.LEASE_STALE - timedelta(seconds=5)
    async with engine.begin() as conn:
        await conn.execute(sa.update(media_assets).where(media_assets.c.id == source_id).values(
            transcode_status="running", transcode_progress=40, updated_at=stale))

    await jobs[media_transcode.TOPIC]({"asset_id": source_id})

    source = await asset_row(engine, source_id)
    assert (source["transcode_status"], source["transcode_progress"]) == ("done", 100)
    assert sorted(p.name for p in folder.iterdir()) == ["poster.jpg", "source.mp4", "sprite.jpg", "sprite.vtt"]
    made = await children(engine, source_id)
    assert ffprobe_streams(media_dir / made[("rendition", "source")]["path"])["video"] == "h264"


async def test_a_transcode_running_elsewhere_makes_a_second_one_busy(services, jobs, media_dir, clips):
    engine = services.resources.engine
    _, source_id = await probed_source(services, jobs, media_dir, clips["small"])
    async with engine.begin() as conn:
        await conn.execute(sa.update(media_assets).where(media_assets.c.id == source_id).values(
            transcode_status="running", updated_at=utcnow()))

    with pytest.raises(Busy):  # requeued by the broker, not failed
        await jobs[media_transcode.TOPIC]({"asset_id": source_id})

    assert await children(engine, source_id) == {}
    assert not (media_dir / f"renditions/{source_id}").exists()


async def test_a_source_gone_before_its_transcode_is_failed_with_a_reason(services, jobs, media_dir, clips):
    engine = services.resources.engine
    _, source_id = await probed_source(services, jobs, media_dir, clips["small"])
    (media_dir / "in/source.mp4").unlink()

    await jobs[media_transcode.TOPIC]({"asset_id": source_id})

    source = await asset_row(engine, source_id)
    assert (source["transcode_status"], source["failure_reason"]) == ("failed", "file not found")
    assert source["status"] == "ready"  # the probe's answer stands; only the transcode failed
    assert await children(engine, source_id) == {}


async def test_only_ready_source_videos_are_transcoded(services, jobs, media_dir):
    engine = services.resources.engine
    (media_dir / "in").mkdir()
    (media_dir / "in/garbage.mp4").write_bytes(b"not a movie\n" * 100)
    _, failed_id = await add_video(engine, path="in/garbage.mp4")
    await jobs[media_probe.TOPIC]({"asset_id": failed_id})

    await jobs[media_transcode.TOPIC]({"asset_id": failed_id})
    await jobs[media_transcode.TOPIC]({"asset_id": failed_id + 1000})  # no such row

    assert (await asset_row(engine, failed_id))["transcode_status"] == "none"
    assert await children(engine, failed_id) == {}
