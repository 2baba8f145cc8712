"""media.probe on both profiles: what it records, what it refuses, what it queues."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from tests.jobs.media_helpers import add_video, asset_row, make_clip, movie_duration, outbox_rows, place
from vedina.jobs import media_files, media_probe, media_transcode


async def test_probe_records_every_fact_of_a_playable_video_and_queues_its_transcode(services, jobs, media_dir, clips):
    file = place(clips["small"], media_dir, "in/clip.mp4")
    engine = services.resources.engine
    movie_id, asset_id = await add_video(engine, path="in/clip.mp4")

    await jobs[media_probe.TOPIC]({"asset_id": asset_id})

    row = await asset_row(engine, asset_id)
    assert row["status"] == "ready" and row["failure_reason"] is None
    assert "mp4" in row["container"].split(",")
    assert (row["video_codec"], row["audio_codec"]) == ("h264", "aac")
    assert (row["width"], row["height"]) == (320, 240)
    assert 1900 <= row["duration_ms"] <= 2100
    assert row["bitrate"] > 0
    assert row["size_bytes"] == file.stat().st_size
    assert row["checksum_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert row["updated_at"] is not None
    assert await movie_duration(engine, movie_id) == 2
    # The transcode is queued in the same transaction.
    assert row["transcode_status"] == "queued"
    assert await outbox_rows(engine) == [{"topic": media_transcode.TOPIC, "payload": {"asset_id": asset_id}}]


async def test_probe_queues_no_transcode_when_transcode_on_ingest_is_off(services, media_dir, clips):
    from vedina.composition import build_services

    quiet = build_services(msgspec.structs.replace(services.settings, transcode_on_ingest=False), services.resources)
    place(clips["small"], media_dir, "in/clip.mp4")
    engine = services.resources.engine
    _, asset_id = await add_video(engine, path="in/clip.mp4")

    await quiet.job_handlers()[media_probe.TOPIC]({"asset_id": asset_id})

    row = await asset_row(engine, asset_id)
    assert row["status"] == "ready" and row["transcode_status"] == "none"
    assert await outbox_rows(engine) == []


async def test_garbage_file_is_failed_with_a_reason_and_nothing_is_queued(services, jobs, media_dir):
    (media_dir / "in").mkdir()
    (media_dir / "in/garbage.mp4").write_bytes(b"this is not a movie, only words.\n" * 2000)
    engine = services.resources.engine
    movie_id, asset_id = await add_video(engine, path="in/garbage.mp4")

    await jobs[media_probe.TOPIC]({"asset_id": asset_id})  # not a job failure: no exception, no retry

    row = await asset_row(engine, asset_id)
    assert row["status"] == "failed"
    assert row["failure_reason"] == "ffprobe: Invalid data found when processing input"
    assert str(media_dir) not in row["failure_reason"]
    assert row["transcode_status"] == "none" and row["checksum_sha256"] is None
    assert await outbox_rows(engine) == []
    assert await movie_duration(engine, movie_id) is None


async def test_video_without_a_video_stream_is_failed(services, jobs, media_dir, tmp_path):
    make_clip(media_dir / "in/tone.mp4", width=0, height=0, video=False)
    engine = services.resources.engine
    _, asset_id = await add_video(engine, path="in/tone.mp4")

    await jobs[media_probe.TOPIC]({"asset_id": asset_id})

    row = await asset_row(engine, asset_id)
    assert (row["status"], row["failure_reason"]) == ("failed", "no video stream")
    assert await outbox_rows(engine) == []


async def test_missing_file_is_failed_and_missing_row_is_nothing_to_do(services, jobs):
    engine = services.resources.engine
    _, asset_id = await add_video(engine, path="in/never-uploaded.mp4")

    await jobs[media_probe.TOPIC]({"asset_id": asset_id})
    await jobs[media_probe.TOPIC]({"asset_id": asset_id + 1000})  # no row: returns quietly

    assert (await asset_row(engine, asset_id))["failure_reason"] == "file not found"
    assert await asset_row(engine, asset_id + 1000) is None
    assert await outbox_rows(engine) == []


async def test_paths_leaving_media_root_are_refused_and_never_read(services, jobs, media_dir, clips, monkeypatch):
    outside = place(clips["small"], media_dir.parent, "outside/secret.mp4")  # a playable file, outside the root
    (media_dir / "in").mkdir()
    (media_dir / "in/link.mp4").symlink_to(outside)
    opened = []

    async def spy_ffprobe(path):
        opened.append(path)
        raise AssertionError("ffprobe ran on a refused path")

    monkeypatch.setattr(media_files, "ffprobe", spy_ffprobe)
    monkeypatch.setattr(media_files, "sha256_file", lambda path: opened.append(path))
    engine = services.resources.engine
    ids = []
    for index, path in enumerate(["../outside/secret.mp4", "in/link.mp4", str(outside), "in/../../outside/secret.mp4"]):
        ids.append((await add_video(engine, path=path, slug=f"escape-{index}"))[1])

    for asset_id in ids:
        await jobs[media_probe.TOPIC]({"asset_id": asset_id})

    for asset_id in ids:
        row = await asset_row(engine, asset_id)
        assert (row["status"], row["failure_reason"]) == ("failed", "path outside MEDIA_ROOT")
        assert row["size_bytes"] is None and row["checksum_sha256"] is None
    assert opened == []
    assert await outbox_rows(engine) == []


async def test_a_playlist_pulling_in_other_files_is_unplayable_not_followed(services, settings, tmp_path):
    """An uploaded HLS playlist naming a local file is refused by the input whitelist."""
    from vedina.jobs.ffmpeg import MediaToolError, ffprobe

    playlist = tmp_path / "trick.mp4"
    playlist.write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
    with pytest.raises(MediaToolError):
        await ffprobe(playlist)
