"""Generating small playable clips and subtitles with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


class FfmpegMissing(RuntimeError):
    pass


def make_clip(target: Path, *, source: str, tone_hz: int, seconds: int, faststart: bool) -> None:
    """An H.264/AAC MP4 from one of ffmpeg's synthetic sources.

    ``faststart`` puts the moov atom first (a player can start at once over
    HTTP); without it the moov atom is last and players must fetch the end of
    the file with a range request first: both cases a streaming server meets.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FfmpegMissing("ffmpeg is needed to generate demo media (apt-get install ffmpeg)")
    target.parent.mkdir(parents=True, exist_ok=True)
    video = f"{source}{':' if '=' in source else '='}size=426x240:rate=24"
    command = [
        ffmpeg, "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", video,
        "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=44100",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "48",
        "-c:a", "aac", "-b:a", "64k", "-shortest",
    ]
    if faststart:
        command += ["-movflags", "+faststart"]
    subprocess.run([*command, str(target)], check=True)


def write_subtitles(target: Path, *, title: str, seconds: int) -> None:
    cues = ["WEBVTT", ""]
    for index, start in enumerate(range(0, seconds, 2), start=1):
        end = min(start + 2, seconds)
        cues += [str(index), f"00:00:{start:02d}.000 --> 00:00:{end:02d}.000", f"{title}: second {start}", ""]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(cues), encoding="utf-8")
