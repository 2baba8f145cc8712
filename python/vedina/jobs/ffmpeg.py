"""Running ``ffprobe`` and ``ffmpeg``: the one place their failures are translated.

Every failure of the tools becomes :class:`MediaToolError` whose message is a
short, human-readable reason with no file path in it (it is stored in
``media_assets.failure_reason``), e.g. ``"ffprobe: Invalid data found when
processing input"``.

:func:`run_ffmpeg` reads ffmpeg's ``-progress pipe:1`` key=value blocks and
reports the fraction done (``out_time_us`` against the input's duration).
A cancelled call (worker shutdown) kills ffmpeg, so no orphan keeps encoding.

>>> info = await ffprobe(Path("/srv/media/demo/a.mp4"))
>>> await run_ffmpeg(["-i", src, ..., dst], duration_s=8.0, on_progress=report)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

ProgressCallback = Callable[[float], Awaitable[None]]


class MediaToolError(Exception):
    """ffprobe or ffmpeg refused a file; ``str(exc)`` is the short reason."""


def _reason(tool: str, stderr: bytes, paths: list[str]) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    message = lines[-1] if lines else "failed"
    for path in paths:  # "/abs/file.mp4: Invalid data ..." -> "Invalid data ..."
        message = message.replace(f"{path}: ", "").replace(path, "<file>")
    return f"{tool}: {message}"[:300]


# Inputs are uploads: only local files, read by the demuxers of the formats we accept. A
# playlist (HLS, concat) that would pull in other files or URLs is refused as unreadable.
INPUT_LIMITS = ["-protocol_whitelist", "file",
                "-format_whitelist", "mov,matroska,webm,mpegts,webvtt,image2,jpeg_pipe,png_pipe"]


def _limit_inputs(args: list[str]) -> list[str]:
    limited: list[str] = []
    for arg in args:
        if arg == "-i":
            limited += INPUT_LIMITS
        limited.append(arg)
    return limited


async def ffprobe(path: Path) -> dict[str, Any]:
    """``{"format": {...}, "streams": [...]}`` for ``path``; raises MediaToolError."""
    process = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", *INPUT_LIMITS, "-show_format", "-show_streams", "-of", "json", str(path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate()
    except asyncio.CancelledError:
        _kill(process)
        raise
    if process.returncode != 0:
        raise MediaToolError(_reason("ffprobe", err, [str(path)]))
    try:
        info = orjson.loads(out)
    except orjson.JSONDecodeError:
        raise MediaToolError("ffprobe: unreadable output") from None
    return {"format": info.get("format") or {}, "streams": info.get("streams") or []}


async def run_ffmpeg(args: list[str], *, duration_s: float | None = None, on_progress: ProgressCallback | None = None) -> None:
    """``ffmpeg <args>``; ``on_progress(fraction)`` as it goes. Raises MediaToolError."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y", *_limit_inputs(args)]
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stderr_task = asyncio.ensure_future(_tail(process.stderr))
    try:
        async for line in process.stdout:
            key, _, value = line.decode(errors="replace").strip().partition("=")
            # out_time_ms is in microseconds too (an old ffmpeg misnomer); prefer out_time_us.
            if key in ("out_time_us", "out_time_ms") and on_progress and duration_s and value.isdigit():
                await on_progress(min(1.0, int(value) / 1_000_000 / duration_s))
        await process.wait()
        err = await stderr_task
    except BaseException:  # cancelled (shutdown) or a failing callback: never leave ffmpeg running
        _kill(process)
        stderr_task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.shield(process.wait())
        raise
    if process.returncode != 0:
        raise MediaToolError(_reason("ffmpeg", err, [a for a in args if "/" in a]))


async def _tail(stream: asyncio.StreamReader, keep: int = 4096) -> bytes:
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
