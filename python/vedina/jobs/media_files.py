"""What the media jobs know about a file: where it safely is, and what it holds.

Path safety is the rule of :mod:`vedina.services.media`: a stored path is
relative to MEDIA_ROOT, is resolved with symlinks followed, and must stay
inside MEDIA_ROOT; a path that leaves it is refused before anything opens the
file. :func:`inspect` runs ffprobe, then hashes the file (SHA-256 in 1 MiB
reads, in a thread so the event loop keeps serving), and returns the columns
to record, or raises :class:`Unplayable` with a short reason.

>>> path = resolve_media_path(Path("/srv/media"), "demo/a.mp4")
>>> facts = await inspect(path, playable=True)
>>> facts.video_codec, facts.height, facts.duration_ms
('h264', 240, 8000)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from pathlib import Path
from typing import Any

from vedina.jobs.ffmpeg import MediaToolError, ffprobe
from vedina.storage.media_assets import MediaFacts

CHUNK = 1024 * 1024
# Kinds that must hold a video stream and a duration to be playable.
PLAYABLE_KINDS = frozenset({"video", "rendition"})


class Unplayable(Exception):
    """The file cannot be used; ``str(exc)`` is the reason stored on the asset."""


def resolve_media_path(root: Path, stored: str) -> Path:
    """The absolute, resolved path of ``stored`` under ``root``; raises Unplayable."""
    root = root.resolve()
    if not stored or any(ord(c) < 0x20 or c == "\x7f" for c in stored) or os.path.isabs(stored):
        raise Unplayable("path outside MEDIA_ROOT")
    try:
        resolved = (root / stored).resolve(strict=True)
    except FileNotFoundError:
        resolved = (root / stored).resolve(strict=False)
        if not resolved.is_relative_to(root):
            raise Unplayable("path outside MEDIA_ROOT") from None
        raise Unplayable("file not found") from None
    except (OSError, RuntimeError):  # unreadable, symlink loop
        raise Unplayable("file not readable") from None
    # Checked on the resolved path: a symlink cannot lead out of the root.
    if not resolved.is_relative_to(root):
        raise Unplayable("path outside MEDIA_ROOT")
    if not stat.S_ISREG(resolved.stat().st_mode):
        raise Unplayable("not a regular file")
    return resolved


def sha256_file(path: Path) -> tuple[str, int]:
    """Hex SHA-256 and byte count of the file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def video_stream(info: dict[str, Any]) -> dict[str, Any] | None:
    """The first real video stream (cover art is a 'video' stream too: skipped)."""
    for stream in info["streams"]:
        if stream.get("codec_type") == "video" and not (stream.get("disposition") or {}).get("attached_pic"):
            return stream
    return None


def audio_stream(info: dict[str, Any]) -> dict[str, Any] | None:
    return next((s for s in info["streams"] if s.get("codec_type") == "audio"), None)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


async def probe_info(path: Path, *, playable: bool) -> dict[str, Any]:
    """ffprobe's answer, checked: raises Unplayable when a playable kind is not playable."""
    try:
        info = await ffprobe(path)
    except MediaToolError as exc:
        raise Unplayable(str(exc)) from None
    if playable:
        if video_stream(info) is None:
            raise Unplayable("no video stream")
        duration = _number(info["format"].get("duration"))
        if not duration or duration <= 0:
            raise Unplayable("zero duration")
    return info


def facts_from(info: dict[str, Any], *, checksum: str, size: int) -> MediaFacts:
    fmt, video, audio = info["format"], video_stream(info), audio_stream(info)
    duration = _number(fmt.get("duration"))
    bitrate = _number(fmt.get("bit_rate"))
    return MediaFacts(
        container=(fmt.get("format_name") or None) and fmt["format_name"][:64],
        video_codec=video and video.get("codec_name"),
        audio_codec=audio and audio.get("codec_name"),
        duration_ms=round(duration * 1000) if duration else None,
        width=video and video.get("width"),
        height=video and video.get("height"),
        bitrate=int(bitrate) if bitrate else None,
        size_bytes=size,
        checksum_sha256=checksum,
    )


async def inspect(path: Path, *, playable: bool) -> tuple[MediaFacts, dict[str, Any]]:
    """The facts to record for ``path`` and ffprobe's raw answer; raises Unplayable."""
    info = await probe_info(path, playable=playable)
    checksum, size = await asyncio.to_thread(sha256_file, path)
    return facts_from(info, checksum=checksum, size=size), info
