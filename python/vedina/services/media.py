"""Locating a media asset's file for streaming: lookup, path safety, metadata.

    >>> media = MediaService(movies, media_root=Path("/srv/media"))
    >>> found = await media.locate(asset_id=7)
    >>> found.path, found.content_type
    ('/srv/media/demo/color-bars.mp4', 'video/mp4')

This is where access rules belong: an entitlement check slots into
:meth:`MediaService.locate` before the file is resolved, so every way of
sending the bytes (direct, X-Accel-Redirect) goes through it.

Path safety: the stored path is relative to MEDIA_ROOT. It is resolved
(symlinks followed) and must stay inside MEDIA_ROOT and be a regular file;
anything else is the same 404 as an unknown asset, so a probe learns nothing.

Resolved locations are kept in a per-worker :class:`NearCache` (a player
sends a request per range, and the catalog lookup would otherwise cost more
than sending the megabyte), invalidated through ``catalog:asset:<id>`` when an
asset's path changes. The file is still stat'ed on every request, so
validators are always current.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vedina.errors import NotFound
from vedina.storage.movies import MovieRepository
from vedina.storage.near_cache import NearCache

# By extension; the asset's stored content_type is the fallback.
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".vtt": "text/vtt",
}


@dataclass(frozen=True, slots=True)
class MediaFile:
    asset_id: int
    movie_id: int  # whose visibility rules govern who may stream it
    path: str  # absolute, resolved, inside the media root
    relative_path: str  # POSIX, relative to the media root
    content_type: str
    stat: os.stat_result
    kind: str = "video"
    height: int | None = None  # a video's frame height (None: not probed): a plan's best quality is checked against it


def content_type_for(path: str, stored: str | None) -> str:
    return CONTENT_TYPES.get(PurePosixPath(path).suffix.lower()) or stored or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class _Location:
    """What an asset row resolves to: cached, so a request costs one ``stat``."""

    path: str
    relative_path: str
    content_type: str
    movie_id: int
    kind: str
    height: int | None


def asset_key(asset_id: int) -> str:
    return f"catalog:asset:{asset_id}"


class MediaService:
    def __init__(self, movies: MovieRepository, *, locations: NearCache[_Location], media_root: Path) -> None:
        self._movies = movies
        self._root = media_root.resolve()
        self._locations = locations

    async def locate(self, *, asset_id: int) -> MediaFile:
        """The asset's file, or NotFound (unknown asset, missing or unsafe path)."""
        location = await self._location(asset_id)
        try:
            info = os.stat(location.path)
        except OSError:
            info = None
        if info is None or not stat.S_ISREG(info.st_mode):
            raise NotFound(f"Media file of asset {asset_id} not found", details={"id": asset_id})
        return MediaFile(
            asset_id=asset_id, movie_id=location.movie_id, path=location.path,
            relative_path=location.relative_path, content_type=location.content_type, stat=info,
            kind=location.kind, height=location.height,
        )

    async def _location(self, asset_id: int) -> _Location:
        key, depends_on = str(asset_id), (asset_key(asset_id),)
        cached = self._locations.peek(key, depends_on)
        return cached or await self._locations.get_or_load(key, depends_on, lambda: self._load(asset_id))

    async def _load(self, asset_id: int) -> _Location:
        asset = await self._movies.get_asset(asset_id)
        if asset is None:  # unknown ids are not cached: a scan cannot fill the cache
            raise NotFound(f"Media asset {asset_id} not found", details={"id": asset_id})
        resolved = self._resolve(asset["path"], asset_id)
        relative = resolved.relative_to(self._root).as_posix()
        return _Location(str(resolved), relative, content_type_for(relative, asset.get("content_type")),
                         asset["movie_id"], asset["kind"], asset.get("height"))

    def _resolve(self, stored_path: str, asset_id: int) -> Path:
        missing = NotFound(f"Media file of asset {asset_id} not found", details={"id": asset_id})
        # Control characters could split the internal sendfile or
        # X-Accel-Redirect header values; no real media path has them.
        if not stored_path or any(ord(c) < 0x20 or c == "\x7f" for c in stored_path):
            raise missing
        try:
            resolved = (self._root / stored_path).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, unreadable, symlink loop
            raise missing from None
        # Confinement is checked on the resolved path: a symlink cannot lead out of the root.
        if not resolved.is_relative_to(self._root):
            raise missing
        return resolved
