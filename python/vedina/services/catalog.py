"""The movie catalog as clients see it: listing and looking up movies."""

from __future__ import annotations

from typing import Any

import msgspec

from vedina.errors import NotFound
from vedina.storage.movies import MovieRepository


class MediaAssetPublic(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    content_type: str
    size_bytes: int | None
    language: str | None
    label: str | None


class MoviePublic(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    title: str
    synopsis: str
    release_year: int | None
    duration_seconds: int | None
    maturity_rating: str
    genres: list[str]


class MovieDetail(MoviePublic, kw_only=True):
    assets: list[MediaAssetPublic]


class MovieList(msgspec.Struct, kw_only=True):
    items: list[MoviePublic]
    total: int
    offset: int
    limit: int


def _public(row: dict[str, Any], cls: type) -> Any:
    return msgspec.convert(row, cls, from_attributes=False, strict=False)


class CatalogService:
    def __init__(self, movies: MovieRepository) -> None:
        self._movies = movies

    async def list_movies(self, *, offset: int, limit: int) -> MovieList:
        rows, total = await self._movies.list(offset=offset, limit=limit)
        return MovieList(items=[_public(r, MoviePublic) for r in rows], total=total, offset=offset, limit=limit)

    async def get_movie(self, *, movie_id: int) -> MovieDetail:
        row = await self._movies.get(movie_id)
        if row is None:
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
        return _public(row, MovieDetail)
