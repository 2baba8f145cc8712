"""``media.probe``: read a media file's real size and duration with ffprobe.

Enqueued when an asset is added (for example by ``vedina demo-data``), so the
catalog shows what the file really holds rather than what the uploader said.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.services.catalog import CatalogService
from vedina.storage.movies import MovieRepository

log = logging.getLogger(__name__)

TOPIC = "media.probe"


async def probe(path: str) -> dict[str, Any]:
    """``ffprobe``'s format section for ``path`` as a dict."""
    process = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_format", "-of", "json", path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ffprobe failed for {path}: {err.decode(errors='replace')[:200]}")
    return orjson.loads(out)["format"]


def handler(*, movies: MovieRepository, catalog: CatalogService, media_root: Path, engine: AsyncEngine):
    async def handle(payload: dict[str, Any]) -> None:
        asset = await movies.get_asset(int(payload["asset_id"]))
        if asset is None:  # deleted since: nothing to do
            return
        fmt = await probe(str(media_root / asset["path"]))
        async with engine.begin() as conn:
            await MovieRepository.update_asset(conn, asset["id"], size_bytes=int(fmt["size"]))
            if asset["kind"] == "video" and "duration" in fmt:
                await MovieRepository.update(conn, asset["movie_id"], duration_seconds=round(float(fmt["duration"])))
        await catalog.movies_changed(asset["movie_id"])
        log.info("probed media asset", extra={"asset_id": asset["id"]})

    return handle
