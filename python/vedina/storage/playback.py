"""Playback queries: the assets a movie can be played with, and counting playback starts.

>>> assets = await PlaybackRepository(engine).assets(movie_id=7)
>>> [(a.kind, a.status) for a in assets]
[('video', 'ready'), ('subtitle', 'ready')]
"""

from __future__ import annotations

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.schema import media_assets, movies


class PlayableAsset(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    kind: str  # video | rendition | subtitle | poster | sprite
    status: str
    content_type: str
    size_bytes: int | None
    language: str | None
    label: str | None
    width: int | None
    height: int | None
    bitrate: int | None
    duration_ms: int | None


_ASSETS = (
    sa.select(*(media_assets.c[name] for name in PlayableAsset.__struct_fields__))
    .where(media_assets.c.movie_id == sa.bindparam("movie_id"))
    .order_by(media_assets.c.id)
)
_COUNT_START = (
    sa.update(movies).where(movies.c.id == sa.bindparam("movie_id"))
    .values(popularity=movies.c.popularity + 1)
)


class PlaybackRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def assets(self, *, movie_id: int) -> list[PlayableAsset]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_ASSETS, {"movie_id": movie_id})).mappings().all()
        return [PlayableAsset(**row) for row in rows]

    async def count_start(self, *, movie_id: int) -> None:
        """One more playback start: ``popularity = popularity + 1`` in the database, so
        concurrent starts on any worker or host all count."""
        async with self._engine.begin() as conn:
            await conn.execute(_COUNT_START, {"movie_id": movie_id})
