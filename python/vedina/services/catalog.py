"""The movie catalog as clients see it: listing and looking up movies.

Reads are served from memory: answers are kept *encoded* (JSON bytes and a
content tag for ETag) in a per-worker :class:`NearCache`, backed on the real
profile by a :class:`SharedCache` in Redis, so the database is asked only when
neither holds the answer. Each answer depends on invalidation keys
(``catalog:movie:<id>`` for a movie and its media, ``catalog:list`` for every
page); writers call :meth:`CatalogService.movies_changed` after their commit
and every worker of every host drops what it held.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from vedina.errors import NotFound
from vedina.storage.invalidation import Invalidations
from vedina.storage.movies import MovieRepository
from vedina.storage.near_cache import NearCache
from vedina.storage.shared_cache import SharedCache

LIST_KEY = "catalog:list"
# Deeper pages are read from the database each time: offsets are the client's
# choice, and caching every one would let a client fill the caches.
MAX_CACHED_OFFSET = 1000


def movie_key(movie_id: int) -> str:
    return f"catalog:movie:{movie_id}"


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


class Document(msgspec.Struct, frozen=True):
    """An encoded answer and its tag (a digest of the bytes: equal tags, equal bytes)."""

    body: bytes
    tag: str

    @classmethod
    def of(cls, body: bytes) -> Document:
        return cls(body=body, tag=hashlib.blake2b(body, digest_size=12).hexdigest())


_encode = msgspec.json.Encoder().encode


def _public(row: dict[str, Any], cls: type) -> Any:
    return msgspec.convert(row, cls, from_attributes=False, strict=False)


class CatalogService:
    def __init__(
        self, *, movies: MovieRepository, invalidations: Invalidations, near: NearCache[Document],
        shared: SharedCache | None,
    ) -> None:
        self._movies = movies
        self._invalidations = invalidations
        self._near = near
        self._shared = shared

    async def list_movies(self, *, offset: int, limit: int) -> Document:
        async def load() -> bytes:
            rows, total = await self._movies.list(offset=offset, limit=limit)
            return _encode(MovieList(items=[_public(r, MoviePublic) for r in rows], total=total, offset=offset, limit=limit))

        if offset > MAX_CACHED_OFFSET:
            return Document.of(await load())
        return await self._cached(f"list:{offset}:{limit}", LIST_KEY, load)

    async def get_movie(self, *, movie_id: int) -> Document:
        key = f"movie:{movie_id}"
        return self._near.peek(key, (movie_key(movie_id),)) or await self._cached(
            key, movie_key(movie_id), lambda: self._load_movie(movie_id)
        )

    async def _load_movie(self, movie_id: int) -> bytes:
        row = await self._movies.get(movie_id)
        if row is None:  # not cached: probing ids must not fill the caches (the rate limit bounds the cost)
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
        return _encode(_public(row, MovieDetail))

    async def movies_changed(self, *movie_ids: int) -> None:
        """Drop every cached answer about these movies (and every page); call after the commit."""
        keys = (LIST_KEY, *map(movie_key, movie_ids))
        try:
            if self._shared is not None:
                await self._shared.invalidate(*keys)
        finally:  # this host at least, even when Redis fails (publish bumps it before anything else)
            await self._invalidations.publish(*keys)

    async def _cached(self, key: str, depends_on: str, load: Callable[[], Awaitable[bytes]]) -> Document:
        cached = self._near.peek(key, (depends_on,))
        if cached is not None:
            return cached

        async def fill() -> Document:
            body = await (self._shared.get_or_load(key, depends_on, load) if self._shared is not None else load())
            return Document.of(body)

        return await self._near.get_or_load(key, (depends_on,), fill)
