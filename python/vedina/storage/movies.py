"""Movie and media-asset queries (SQLAlchemy Core, bound parameters only)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.rows import plain
from vedina.storage.schema import media_assets, movies

_MOVIE_COLUMNS = (
    movies.c.id,
    movies.c.slug,
    movies.c.title,
    movies.c.synopsis,
    movies.c.release_year,
    movies.c.duration_seconds,
    movies.c.maturity_rating,
    movies.c.genres,
)
_ASSET_COLUMNS = (
    media_assets.c.id,
    media_assets.c.movie_id,
    media_assets.c.kind,
    media_assets.c.path,
    media_assets.c.content_type,
    media_assets.c.size_bytes,
    media_assets.c.language,
    media_assets.c.label,
)


# The statements of the read paths are built once (bound parameters): building a select costs
# more Python than running it from SQLAlchemy's compiled-statement cache.
_GET_MOVIE = sa.select(*_MOVIE_COLUMNS).where(movies.c.id == sa.bindparam("movie_id"))
_MOVIE_ASSETS = (
    sa.select(*_ASSET_COLUMNS).where(media_assets.c.movie_id == sa.bindparam("movie_id")).order_by(media_assets.c.id)
)
_GET_ASSET = sa.select(*_ASSET_COLUMNS).where(media_assets.c.id == sa.bindparam("asset_id"))
_PAGE = sa.select(*_MOVIE_COLUMNS).order_by(movies.c.id).offset(sa.bindparam("offset")).limit(sa.bindparam("limit"))
_COUNT = sa.select(sa.func.count()).select_from(movies)


class MovieRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list(self, *, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """One page of movies ordered by id, and the total count."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_PAGE, {"offset": offset, "limit": limit})).mappings().all()
            total = (await conn.execute(_COUNT)).scalar_one()
        return [plain(r) for r in rows], total

    async def get(self, movie_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET_MOVIE, {"movie_id": movie_id})).mappings().first()
            if row is None:
                return None
            assets = (await conn.execute(_MOVIE_ASSETS, {"movie_id": movie_id})).mappings().all()
        return {**plain(row), "assets": [plain(a) for a in assets]}

    async def get_by_slug(self, slug: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(*_MOVIE_COLUMNS).where(movies.c.slug == slug))).mappings().first()
        return None if row is None else plain(row)

    async def get_asset(self, asset_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET_ASSET, {"asset_id": asset_id})).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        now = utcnow()
        result = await conn.execute(sa.insert(movies).values(created_at=now, updated_at=now, **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def insert_asset(conn: AsyncConnection, **values: Any) -> int:
        result = await conn.execute(sa.insert(media_assets).values(created_at=utcnow(), **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def update_asset(conn: AsyncConnection, asset_id: int, **values: Any) -> None:
        await conn.execute(sa.update(media_assets).where(media_assets.c.id == asset_id).values(**values))

    @staticmethod
    async def update(conn: AsyncConnection, movie_id: int, **values: Any) -> None:
        await conn.execute(sa.update(movies).where(movies.c.id == movie_id).values(updated_at=utcnow(), **values))
