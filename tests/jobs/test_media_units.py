"""The pure parts of the media jobs: the ladder, the sprite's timing, progress throttling, tool errors."""

from __future__ import annotations

import pytest

from vedina.jobs.ffmpeg import MediaToolError, _reason, run_ffmpeg
from vedina.jobs.media_files import Unplayable, resolve_media_path
from vedina.jobs.media_transcode import Progress, ladder_for, sprite_interval, vtt_time


@pytest.mark.parametrize(("height", "labels"), [
    (240, ["source"]), (360, ["360p"]), (480, ["360p", "source"]), (720, ["360p", "720p"]),
    (1080, ["360p", "720p", "source"]),
])
def test_the_ladder_never_upscales_and_adds_source_only_when_no_rung_has_its_height(height, labels):
    assert [rung.label for rung in ladder_for(height)] == labels


@pytest.mark.parametrize(("duration", "interval"), [(2, 1), (8, 1), (10, 1), (11, 2), (100, 10), (3600, 10), (7200, 18)])
def test_sprite_interval_keeps_short_clips_fine_and_long_films_under_400_tiles(duration, interval):
    assert sprite_interval(duration) == interval
    assert duration / interval <= 400


def test_vtt_times_are_hours_minutes_seconds_millis():
    assert vtt_time(0) == "00:00:00.000"
    assert vtt_time(3723.4567) == "01:02:03.457"


async def test_progress_is_written_every_10_points_or_after_2_seconds_never_backwards():
    now = [0.0]
    written: list[int] = []

    async def write(percent: int) -> None:
        written.append(percent)

    progress = Progress(write, total=2.0, clock=lambda: now[0])
    step = progress.step(1.0)
    for fraction in (0.05, 0.1, 0.15, 0.2, 0.25):  # 2.5% .. 12.5% within the same instant
        await step(fraction)
    assert written == [10]
    now[0] = 2.5
    await step(0.3)  # 15%: under 10 points, but 2 s have passed
    await step(0.2)  # backwards: ignored
    assert written == [10, 15]
    await progress.finish_step(1.0)
    await progress.finish_step(1.0)
    assert written == [10, 15, 50, 99]  # 100 is written with status 'done'


def test_tool_errors_carry_no_file_path():
    reason = _reason("ffprobe", b"[mov @ 0x1] moov atom not found\n/srv/media/a b.mp4: Invalid data found when processing input\n",
                     ["/srv/media/a b.mp4"])
    assert reason == "ffprobe: Invalid data found when processing input"


async def test_ffmpeg_failure_is_a_media_tool_error(tmp_path):
    with pytest.raises(MediaToolError, match="^ffmpeg: ") as caught:
        await run_ffmpeg(["-i", str(tmp_path / "missing.mp4"), "-f", "null", "-"])
    assert str(tmp_path) not in str(caught.value)


def test_paths_are_confined_to_the_media_root(tmp_path):
    root = tmp_path / "media"
    (root / "in").mkdir(parents=True)
    (root / "in/a.mp4").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"x")
    (root / "in/link").symlink_to(tmp_path / "secret")
    assert resolve_media_path(root, "in/a.mp4") == (root / "in/a.mp4").resolve()
    for bad, reason in [("../secret", "path outside MEDIA_ROOT"), ("in/link", "path outside MEDIA_ROOT"),
                        (str(tmp_path / "secret"), "path outside MEDIA_ROOT"), ("in/\nx", "path outside MEDIA_ROOT"),
                        ("", "path outside MEDIA_ROOT"), ("in/none.mp4", "file not found"), ("in", "not a regular file")]:
        with pytest.raises(Unplayable, match=f"^{reason}$"):
            resolve_media_path(root, bad)
