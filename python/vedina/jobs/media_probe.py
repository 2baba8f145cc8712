"""``media.probe``: record what a media file really holds, then queue its transcode.

Payload ``{"asset_id": int}``. Enqueued with the asset (``vedina demo-data``,
uploads), so the catalog shows what the file holds, not what the uploader said.

- Ready: container, codecs, duration, size, dimensions, bitrate and SHA-256
  go on the asset with ``status = 'ready'``; a ``video`` also sets its movie's
  ``duration_seconds``.
- Unplayable (ffprobe refuses it, a video without a video stream or a
  duration, a path that leaves MEDIA_ROOT, a missing file): ``status =
  'failed'`` and a short ``failure_reason``. That is the job's answer, not
  its failure: nothing is retried.
- A ready source video (kind ``video``, no parent) gets a ``media.transcode``
  job in the same transaction (``transcode_status = 'queued'``), unless
  ``TRANSCODE_ON_INGEST=false``.
- A missing asset row (deleted since): nothing to do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.jobs import media_transcode
from vedina.jobs.media_files import PLAYABLE_KINDS, Unplayable, inspect, resolve_media_path
from vedina.services.catalog import CatalogService
from vedina.storage.media_assets import MediaAssetRepository
from vedina.storage.movies import MovieRepository
from vedina.storage.outbox import enqueue

log = logging.getLogger(__name__)

TOPIC = "media.probe"


def handler(
    *, assets: MediaAssetRepository, catalog: CatalogService, media_root: Path, engine: AsyncEngine,
    transcode_on_ingest: bool = True,
):
    async def handle(payload: dict[str, Any]) -> None:
        asset = await assets.get(int(payload["asset_id"]))
        if asset is None:  # deleted since: nothing to do
            return
        try:
            path = resolve_media_path(media_root, asset.path)
            facts, _ = await inspect(path, playable=asset.kind in PLAYABLE_KINDS)
        except Unplayable as exc:
            async with engine.begin() as conn:
                await MediaAssetRepository.record_failed(conn, asset_id=asset.id, reason=str(exc))
            await catalog.movies_changed(asset.movie_id)
            log.warning("media asset unplayable", extra={"asset_id": asset.id, "reason": str(exc)})
            return
        transcode = transcode_on_ingest and asset.kind == "video" and asset.parent_id is None
        async with engine.begin() as conn:
            await MediaAssetRepository.record_ready(conn, asset_id=asset.id, facts=facts)
            if asset.kind == "video" and facts.duration_ms:
                await MovieRepository.update(conn, asset.movie_id, duration_seconds=round(facts.duration_ms / 1000))
            if transcode:
                # Same transaction: the transcode job exists exactly when the probe's answer does.
                await MediaAssetRepository.mark_transcode_queued(conn, asset_id=asset.id)
                await enqueue(conn, topic=media_transcode.TOPIC, payload={"asset_id": asset.id})
        await catalog.movies_changed(asset.movie_id)
        log.info("probed media asset", extra={"asset_id": asset.id, "transcode": transcode})

    return handle
