"""``media.transcode``: an H.264/AAC ladder, a poster and a thumbnail sprite for a source video.

Payload ``{"asset_id": <source id>}`` (a ready ``video`` asset with no parent;
``media.probe`` enqueues it). Everything is written under
``MEDIA_ROOT/renditions/<source id>/`` and recorded as assets of the same
movie with ``parent_id = <source id>``, found again by (parent, kind, label):

- ``rendition`` ``360p``, ``720p``: the rungs of :data:`LADDER` not above the
  source's height (never upscaled); ``source``: the source's own height,
  unless a named rung already has it (a 720p source gets 360p and 720p, no
  ``source``). Fast-start MP4 (moov before mdat), H.264 + AAC; the ``source``
  rung copies streams that already are H.264 (yuv420p) / AAC.
- ``poster`` ``poster``: a JPEG of the frame at 10% of the duration.
- ``sprite`` ``sprite``: a WebVTT file (the asset) whose cues map time ranges
  to tiles of ``sprite.jpg`` next to it (``sprite.jpg#xywh=x,y,w,h``).

Progress is on the source row: ``transcode_status`` running -> done (or
failed, with ``failure_reason``), ``transcode_progress`` 0..100, written when
it moved 10 points or 2 s have passed.

Idempotent and resumable: ffmpeg writes ``<name>.part.<ext>`` in the same
directory, renamed over the final name only when complete; a step whose row
is ready and whose file exists with the recorded size is skipped, so a job
redelivered after a crash redoes only what is missing. The source row is a
lease (:mod:`vedina.storage.media_assets`): a second job for the same source
gets :class:`~vedina.storage.message_ledger.Busy` (requeued, not failed)
while the first runs; a worker that died leaves a claim that is taken over
once :data:`LEASE_STALE` has passed without a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import BackendUnavailable, translate
from vedina.jobs.ffmpeg import MediaToolError, ProgressCallback, run_ffmpeg
from vedina.jobs.media_files import Unplayable, inspect, probe_info, resolve_media_path, video_stream
from vedina.services.catalog import CatalogService
from vedina.storage.durable import fsync_path
from vedina.storage.media_assets import MediaAsset, MediaAssetRepository, MediaFacts
from vedina.storage.message_ledger import Busy

log = logging.getLogger(__name__)

TOPIC = "media.transcode"

LEASE_STALE = timedelta(seconds=60)  # a claim not refreshed for this long is a dead worker's
HEARTBEAT_S = 15.0  # the lease is refreshed this often while the job runs
PROGRESS_EVERY_S = 2.0
PROGRESS_STEP = 10  # percent


@dataclass(frozen=True)
class Rung:
    label: str
    height: int | None  # None: the source's own height
    max_video_kbps: int  # a cap (-maxrate); quality comes from CRF 23
    audio_kbps: int


LADDER = (
    Rung("360p", 360, 800, 96),
    Rung("720p", 720, 2800, 128),
)
SOURCE_RUNG = Rung("source", None, 8000, 160)

SPRITE_TILE_WIDTH = 160
SPRITE_COLUMNS = 10
SPRITE_MAX_TILES = 400


def ladder_for(source_height: int) -> list[Rung]:
    """The rungs for a source: never above its height; 'source' unless a rung has its height.

    >>> [r.label for r in ladder_for(720)], [r.label for r in ladder_for(240)]
    (['360p', '720p'], ['source'])
    """
    rungs = [rung for rung in LADDER if rung.height <= source_height]
    if source_height not in {rung.height for rung in rungs}:
        rungs.append(SOURCE_RUNG)
    return rungs


def sprite_interval(duration_s: float) -> int:
    """Seconds per tile: 1 s for clips under 10 s, 10 s up to ~66 min, then at most 400 tiles."""
    return max(1, min(10, math.ceil(duration_s / 10)), math.ceil(duration_s / SPRITE_MAX_TILES))


def vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


class Progress:
    """Overall percent over weighted steps, written at most every 2 s unless it moved 10 points."""

    def __init__(self, write: Callable[[int], Awaitable[None]], *, total: float, clock=time.monotonic) -> None:
        self._write, self._total, self._clock = write, total or 1.0, clock
        self._done = 0.0
        self._written, self._written_at = 0, clock()

    def step(self, weight: float) -> ProgressCallback:
        async def report(fraction: float) -> None:
            await self._at(self._done + weight * fraction)
        return report

    async def finish_step(self, weight: float) -> None:
        self._done += weight
        await self._at(self._done)

    async def _at(self, done: float) -> None:
        percent = min(99, int(100 * done / self._total))  # 100 is written with 'done'
        if percent <= self._written:
            return
        if percent - self._written >= PROGRESS_STEP or self._clock() - self._written_at >= PROGRESS_EVERY_S:
            self._written, self._written_at = percent, self._clock()
            await self._write(percent)


@contextlib.asynccontextmanager
async def _heartbeat(assets: MediaAssetRepository, asset_id: int):
    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await assets.set_transcode(asset_id=asset_id)
            except Exception:  # an outage: the next beat tries again
                log.warning("transcode heartbeat failed", extra={"asset_id": asset_id})

    task = asyncio.ensure_future(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Transcode:
    """One run over a source: plan the steps, skip the intact ones, make the others."""

    def __init__(
        self, *, assets: MediaAssetRepository, engine: AsyncEngine, media_root: Path, preset: str,
        source: MediaAsset, source_path: Path, info: dict[str, Any],
    ) -> None:
        self.assets, self.engine, self.root, self.preset = assets, engine, media_root.resolve(), preset
        self.source, self.src = source, str(source_path)
        self.info = info
        self.video = video_stream(info) or {}
        self.duration_s = float(info["format"]["duration"])
        self.height, self.width = int(self.video["height"]), int(self.video["width"])
        self.rel_dir = f"renditions/{source.id}"
        self.dir = self.root / self.rel_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.dir.resolve().is_relative_to(self.root):
            raise Unplayable("renditions directory outside MEDIA_ROOT")
        for leftover in self.dir.glob("*.part.*"):  # a dead run's: we hold the lease
            leftover.unlink(missing_ok=True)

    async def run(self) -> None:
        rungs = ladder_for(self.height)
        weights = [self._rung_weight(rung) for rung in rungs] + [0.3, 0.05]
        progress = Progress(self._write_progress, total=sum(weights))
        for rung, weight in zip(rungs, weights, strict=False):
            await self._step(progress, weight, "rendition", rung.label, f"{rung.label}.mp4",
                             lambda path, report, rung=rung: self._encode(rung, path, report))
        await self._step(progress, weights[-2], "sprite", "sprite", "sprite.vtt", self._sprite,
                         extra=self.dir / "sprite.jpg")
        # The picture the cues point at is an asset too, so players can fetch it with a signed URL.
        await self._step(progress, 0.0, "sprite_image", "sprite", "sprite.jpg", self._sprite_image)
        await self._step(progress, weights[-1], "poster", "poster", "poster.jpg", self._poster)

    def _rung_weight(self, rung: Rung) -> float:
        return 0.2 if rung is SOURCE_RUNG and self._copy_video() else 1.0

    async def _write_progress(self, percent: int) -> None:
        await self.assets.set_transcode(asset_id=self.source.id, progress=percent)

    async def _step(self, progress: Progress, weight: float, kind: str, label: str, name: str, make, *, extra: Path | None = None) -> None:
        rel = f"{self.rel_dir}/{name}"
        existing = await self.assets.find_child(parent_id=self.source.id, kind=kind, label=label)
        if self._intact(existing, rel, extra):
            await progress.finish_step(weight)
            return
        facts = await make(self.root / rel, progress.step(weight))
        async with self.engine.begin() as conn:
            await MediaAssetRepository.save_child(
                conn, parent=self.source, kind=kind, label=label, path=rel, content_type=_CONTENT_TYPES[kind], facts=facts,
            )
        await progress.finish_step(weight)

    def _intact(self, existing: MediaAsset | None, rel: str, extra: Path | None) -> bool:
        if existing is None or existing.status != "ready" or existing.path != rel:
            return False
        try:
            size = (self.root / rel).stat().st_size
        except OSError:
            return False
        return size == existing.size_bytes and (extra is None or extra.is_file())

    async def _finish(self, temp: Path, final: Path, *, playable: bool) -> MediaFacts:
        """Make ``temp`` durable, rename it over ``final`` (atomic), and probe the result."""
        await asyncio.to_thread(fsync_path, temp)
        os.replace(temp, final)
        facts, _ = await inspect(final, playable=playable)
        return facts

    # -- the steps ------------------------------------------------------------

    def _copy_video(self) -> bool:
        return self.video.get("codec_name") == "h264" and self.video.get("pix_fmt") == "yuv420p"

    def _copy_audio(self) -> bool:
        audio = next((s for s in self.info["streams"] if s.get("codec_type") == "audio"), None)
        return audio is None or audio.get("codec_name") == "aac"

    async def _encode(self, rung: Rung, final: Path, report: ProgressCallback) -> MediaFacts:
        temp = final.with_name(f"{rung.label}.part.mp4")
        args = ["-i", self.src, "-map", "0:v:0", "-map", "0:a:0?", "-sn", "-dn", "-map_metadata", "-1"]
        if rung is SOURCE_RUNG and self._copy_video():
            args += ["-c:v", "copy"]
        else:
            scale = f"scale=-2:{rung.height}" if rung.height else "scale=trunc(iw/2)*2:trunc(ih/2)*2"
            args += [
                "-vf", scale, "-c:v", "libx264", "-preset", self.preset, "-crf", "23",
                "-maxrate", f"{rung.max_video_kbps}k", "-bufsize", f"{2 * rung.max_video_kbps}k",
                "-pix_fmt", "yuv420p", "-force_key_frames", "expr:gte(t,n_forced*2)",
            ]
        if rung is SOURCE_RUNG and self._copy_audio():
            args += ["-c:a", "copy"]
        else:
            args += ["-c:a", "aac", "-b:a", f"{rung.audio_kbps}k", "-ac", "2"]
        args += ["-movflags", "+faststart", "-f", "mp4", str(temp)]
        await run_ffmpeg(args, duration_s=self.duration_s, on_progress=report)
        return await self._finish(temp, final, playable=True)

    async def _poster(self, final: Path, report: ProgressCallback) -> MediaFacts:
        temp = final.with_name("poster.part.jpg")
        await run_ffmpeg([
            "-ss", f"{self.duration_s * 0.1:.3f}", "-i", self.src, "-map", "0:v:0", "-frames:v", "1",
            "-vf", "scale=-2:'min(720,ih)'", "-q:v", "3", "-f", "image2", "-update", "1", str(temp),
        ])
        return await self._finish(temp, final, playable=False)

    async def _sprite_image(self, final: Path, report: ProgressCallback) -> MediaFacts:
        """Record the sprite's picture (made by :meth:`_sprite`, renamed into place by it)."""
        facts, _ = await inspect(final, playable=False)
        return facts

    async def _sprite(self, final: Path, report: ProgressCallback) -> MediaFacts:
        interval = sprite_interval(self.duration_s)
        count = max(1, math.ceil(self.duration_s / interval))
        columns = min(count, SPRITE_COLUMNS)
        rows = math.ceil(count / columns)
        tile_w = SPRITE_TILE_WIDTH
        tile_h = max(2, round(tile_w * self.height / self.width / 2) * 2)
        image = final.with_name("sprite.jpg")
        temp_image = final.with_name("sprite.part.jpg")
        # Keyframes only when tiles are far apart: the decode of a long film then costs seconds.
        decode = ["-skip_frame", "nokey"] if interval >= 5 else []
        await run_ffmpeg([
            *decode, "-i", self.src, "-map", "0:v:0", "-an",
            "-vf", f"fps=1/{interval},scale={tile_w}:{tile_h},tile={columns}x{rows}",
            "-frames:v", "1", "-q:v", "5", "-f", "image2", "-update", "1", str(temp_image),
        ])
        await asyncio.to_thread(fsync_path, temp_image)
        os.replace(temp_image, image)
        cues = ["WEBVTT", ""]
        for index in range(count):
            start, end = index * interval, min((index + 1) * interval, self.duration_s)
            x, y = index % columns * tile_w, index // columns * tile_h
            cues += [f"{vtt_time(start)} --> {vtt_time(end)}", f"{image.name}#xywh={x},{y},{tile_w},{tile_h}", ""]
        temp = final.with_name("sprite.part.vtt")
        temp.write_text("\n".join(cues), encoding="utf-8")
        facts = await self._finish(temp, final, playable=False)
        # ffprobe knows a WebVTT file's format, not the picture its cues point at.
        return msgspec.structs.replace(facts, width=tile_w, height=tile_h, duration_ms=round(self.duration_s * 1000))


_CONTENT_TYPES = {"rendition": "video/mp4", "poster": "image/jpeg", "sprite": "text/vtt", "sprite_image": "image/jpeg"}



def handler(
    *, assets: MediaAssetRepository, catalog: CatalogService, media_root: Path, engine: AsyncEngine,
    preset: str = "veryfast",
):
    # One transcode at a time per process (the consumer prefetches several messages,
    # and each ffmpeg already uses every core).
    gate = asyncio.Semaphore(1)

    async def handle(payload: dict[str, Any]) -> None:
        source = await assets.get(int(payload["asset_id"]))
        if source is None or source.kind != "video" or source.parent_id is not None or source.status != "ready":
            # Deleted, not a source, or not playable (media.probe recorded why): nothing to make.
            log.info("nothing to transcode", extra={"asset_id": int(payload["asset_id"])})
            return
        async with gate:
            if not await assets.claim_transcode(asset_id=source.id, stale=LEASE_STALE):
                raise Busy(f"transcode of media asset {source.id}")
            await assets.set_transcode(asset_id=source.id, progress=0)
            await catalog.movies_changed(source.movie_id)
            try:
                async with _heartbeat(assets, source.id):
                    path = resolve_media_path(media_root, source.path)
                    info = await probe_info(path, playable=True)
                    await _Transcode(
                        assets=assets, engine=engine, media_root=media_root, preset=preset,
                        source=source, source_path=path, info=info,
                    ).run()
            except (Unplayable, MediaToolError) as exc:
                await assets.set_transcode(asset_id=source.id, status="failed", failure_reason=str(exc))
                await catalog.movies_changed(source.movie_id)
                log.warning("transcode failed", extra={"asset_id": source.id, "reason": str(exc)})
                return
            except BaseException as exc:
                await _give_back(assets, source.id, exc)
                raise
            await assets.set_transcode(asset_id=source.id, status="done", progress=100)
        await catalog.movies_changed(source.movie_id)
        log.info("transcoded media asset", extra={"asset_id": source.id})

    return handle


async def _give_back(assets: MediaAssetRepository, asset_id: int, exc: BaseException) -> None:
    """The run stopped for a reason that is not the file's: say so if the database listens.

    Shutdown or an outage: 'queued' again (the redelivered message resumes at once);
    a bug: 'failed' (the message is dead-lettered).
    """
    retried = isinstance(exc, asyncio.CancelledError) or isinstance(translate(exc), BackendUnavailable)
    status, reason = ("queued", None) if retried else ("failed", f"internal error: {type(exc).__name__}")
    try:
        await asyncio.shield(assets.set_transcode(asset_id=asset_id, status=status, failure_reason=reason))
    except BaseException:  # the database is the outage: the lease goes stale instead
        log.warning("transcode state not recorded", extra={"asset_id": asset_id, "status": status})
