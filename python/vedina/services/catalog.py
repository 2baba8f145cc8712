"""The movie catalog as clients see it: listing, search and movie details.

Reads are served from memory: answers are kept *encoded* (JSON bytes and a
content tag for ETag) in a per-worker :class:`NearCache`, backed on the real
profile by a :class:`SharedCache` in Redis, so the database is asked only when
neither holds the answer. Each answer depends on invalidation keys
(``catalog:movie:<id>`` for a movie and its media, ``catalog:list`` for every
page and search); writers (:mod:`vedina.services.catalog_editor`, the media
jobs, ratings) call :meth:`CatalogService.movies_changed` after their commit
and every worker of every host drops what it held.

Who sees what is :mod:`vedina.services.visibility`: a page is cached per
audience (editor or viewer, parental limit); a movie's detail is one document
for everyone, with its :class:`MovieGate` checked per request. Availability
windows open and close with time, not with writes: the next such moment is
cached with the pages, and the first read after it invalidates them.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import msgspec

from vedina.errors import NotFound, ValidationFailed
from vedina.services.media import asset_key
from vedina.services.visibility import Audience, MovieGate, ratings_up_to
from vedina.storage import search
from vedina.storage.catalog_queries import SORTS, CatalogQueries, Filters, Keyset, Page
from vedina.storage.clock import utcnow
from vedina.storage.invalidation import Invalidations
from vedina.storage.movies import GenreRepository, MovieRepository
from vedina.storage.near_cache import NearCache
from vedina.storage.shared_cache import SharedCache

LIST_KEY = "catalog:list"
MAX_PAGE = 100


def movie_key(movie_id: int) -> str:
    return f"catalog:movie:{movie_id}"


# -- answers ------------------------------------------------------------------------------


class Rating(msgspec.Struct, kw_only=True):
    average: float
    count: int


class MovieSummary(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    title: str
    original_title: str
    synopsis: str
    release_year: int | None
    runtime_minutes: int | None
    duration_seconds: int | None
    maturity_rating: str
    genres: list[str]
    spoken_languages: list[str]
    subtitle_languages: list[str]
    poster_url: str | None
    backdrop_url: str | None
    plan_tier: str
    status: str
    published_at: datetime | None
    available_from: datetime | None
    available_until: datetime | None
    version: int
    popularity: int
    rating: Rating


class Credit(msgspec.Struct, kw_only=True):
    person_id: int
    name: str
    role: str
    position: int


class MediaAssetPublic(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    parent_id: int | None
    status: str
    content_type: str
    size_bytes: int | None
    language: str | None
    label: str | None
    container: str | None
    video_codec: str | None
    audio_codec: str | None
    duration_ms: int | None
    width: int | None
    height: int | None
    bitrate: int | None
    transcode_status: str
    transcode_progress: int


class MovieDetail(MovieSummary, kw_only=True):
    cast: list[Credit]
    crew: list[Credit]
    assets: list[MediaAssetPublic]


class MovieList(msgspec.Struct, kw_only=True):
    items: list[MovieSummary]
    next_cursor: str | None
    limit: int
    corrected_query: str | None = None  # set when a search found nothing and a typo-corrected one did


class Document(msgspec.Struct, frozen=True):
    """An encoded answer and its tag (a digest of the bytes: equal tags, equal bytes)."""

    body: bytes
    tag: str

    @classmethod
    def of(cls, body: bytes, *, version: int | None = None) -> Document:
        digest = hashlib.blake2b(body, digest_size=12).hexdigest()
        # A movie's tag starts with its version: If-Match on an edit names the version it read.
        return cls(body=body, tag=digest if version is None else f"{version}.{digest}")


class MovieQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A listing or search request, as parsed from the query string."""

    q: str | None = None
    sort: str = "newest"
    cursor: str | None = None
    limit: int = 20
    genre: str | None = None
    year_from: int | None = None
    year_to: int | None = None
    language: str | None = None
    age_ratings: tuple[str, ...] | None = None
    person: int | None = None
    status: str | None = None  # editors: draft | published | deleted | all (offset pages)

    def cache_key(self) -> str:
        return msgspec.json.encode(self).decode()


_encode = msgspec.json.Encoder().encode


def summary_of(row: dict[str, Any]) -> dict[str, Any]:
    count = row.get("rating_count") or 0
    return {**row, "rating": {"average": round((row.get("rating_avg") or 0) / 100, 2) if count else 0.0,
                              "count": count}}


def _detail(row: dict[str, Any]) -> MovieDetail:
    credits = row.pop("credits")
    cast = [c for c in credits if c["department"] == "cast"]
    crew = [c for c in credits if c["department"] == "crew"]
    return msgspec.convert({**summary_of(row), "cast": cast, "crew": crew}, MovieDetail, strict=False)


# -- cursors: opaque to clients, validated like any input --------------------------------


def encode_cursor(sort: str, page: Page) -> str | None:
    if page.next_keyset is not None:
        value = page.next_keyset.value
        if isinstance(value, datetime):
            value = value.isoformat()
        state: list[Any] = [sort, value, page.next_keyset.id]
    elif page.next_offset is not None:
        state = [sort, None, None, page.next_offset]
    else:
        return None
    return base64.urlsafe_b64encode(msgspec.json.encode(state)).rstrip(b"=").decode()


def decode_cursor(cursor: str, sort: str) -> tuple[Keyset | None, int]:
    """(keyset, offset) from a cursor made by :func:`encode_cursor` for this sort."""
    bad = ValidationFailed("cursor is not one this listing made", details={"field": "cursor"})
    try:
        state = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, msgspec.DecodeError):
        raise bad from None
    if not isinstance(state, list) or len(state) not in (3, 4) or state[0] != sort:
        raise bad
    if len(state) == 4:
        if not isinstance(state[3], int) or not 0 <= state[3] <= 10**6:
            raise bad
        return None, state[3]
    value, last_id = state[1], state[2]
    if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 <= last_id < 2**63:
        raise bad
    expected = {"newest": str, "title": str, "popularity": int, "rating": int}[sort]
    if not isinstance(value, expected) or isinstance(value, bool):
        raise bad
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise bad
    if isinstance(value, str) and len(value) > 200:
        raise bad
    if sort == "newest":
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise bad from None
    return Keyset(value=value, id=last_id), 0


class CatalogService:
    def __init__(
        self, *, movies: MovieRepository, queries: CatalogQueries, genres: GenreRepository,
        invalidations: Invalidations, near: NearCache, shared: SharedCache | None,
    ) -> None:
        self._movies = movies
        self._queries = queries
        self._genres = genres
        self._invalidations = invalidations
        self._near = near
        self._shared = shared

    # -- listing and search -------------------------------------------------------------

    def cached_page(self, *, request_key: str, audience: Audience) -> Document | None:
        """The page a request for ``request_key`` (its query string as sent) was answered with, if
        still valid: a hit costs no parsing. Only answers are cached, never refusals, so a key
        found here was a valid query; a passed availability window means no hit."""
        boundary = self._near.peek("window", (LIST_KEY,))
        if boundary is None or time.time() >= boundary:
            return None
        return self._near.peek(_page_key(audience, boundary, request_key), (LIST_KEY,))

    async def list_movies(self, *, query: MovieQuery, audience: Audience, request_key: str | None = None) -> Document:
        """``request_key``: the query string as sent, the page's cache key (default: the parsed query)."""
        if query.sort not in SORTS:
            raise ValidationFailed(f"sort must be one of {', '.join(SORTS)}", details={"field": "sort"})
        if query.status is not None and not audience.sees_unpublished:
            raise ValidationFailed("status filters are for editors", details={"field": "status"})
        boundary = await self._close_passed_windows()
        key = _page_key(audience, boundary, request_key if request_key is not None else query.cache_key())
        return await self._cached(key, LIST_KEY, lambda: self._load_list(query, audience))

    async def _load_list(self, query: MovieQuery, audience: Audience) -> bytes:
        filters = await self._filters(query, audience)
        keyset, offset = decode_cursor(query.cursor, query.sort) if query.cursor else (None, 0)
        corrected = None
        if query.status is not None:
            page = await self._queries.admin_list(filters, offset=offset, limit=query.limit)
        elif query.q is not None and search.terms(query.q):
            page, corrected = await self._search(query, filters, offset=offset)
        else:
            page = await self._queries.list(filters, sort=query.sort, after=keyset, limit=query.limit)
        items = [msgspec.convert(summary_of(r), MovieSummary, strict=False) for r in page.rows]
        answer = MovieList(items=items, next_cursor=encode_cursor(query.sort, page), limit=query.limit,
                           corrected_query=corrected)
        return _encode(answer)

    async def _search(self, query: MovieQuery, filters: Filters, *, offset: int) -> tuple[Page, str | None]:
        assert query.q is not None
        found, prefix = search.terms(query.q), search.prefix_last(query.q)
        page = await self._queries.search(self._expression(found, prefix), filters, offset=offset, limit=query.limit)
        if page.rows or offset:
            return page, None
        # Nothing: try the closest known words (a typo), each word on its own.
        corrected = [await self._queries.correct(word) or word for word in found]
        if corrected == found:
            return page, None
        page = await self._queries.search(self._expression(corrected, False), filters, offset=0, limit=query.limit)
        return page, " ".join(corrected) if page.rows else None

    def _expression(self, found: list[str], prefix: bool) -> str:
        if self._queries.dialect == "sqlite":
            return search.fts5_expression(found, prefix=prefix)
        return search.mariadb_expression(found, prefix=prefix)

    async def _filters(self, query: MovieQuery, audience: Audience) -> Filters:
        genre_id = None
        if query.genre is not None:
            genre_id = await self._genres.id_of(query.genre)
            if genre_id is None:
                raise ValidationFailed(f"Unknown genre {query.genre!r}", details={"field": "genre"})
        allowed = ratings_up_to(audience.max_age_rating)
        ratings = query.age_ratings
        if allowed is not None:
            ratings = tuple(r for r in (ratings or allowed) if r in allowed)
        statuses = ("published",)
        if query.status is not None:
            statuses = ("draft", "published", "deleted") if query.status == "all" else (query.status,)
        return Filters(
            genre_id=genre_id, year_from=query.year_from, year_to=query.year_to, language=query.language,
            ratings=ratings, person_id=query.person, statuses=statuses,
            window_at=None if audience.sees_unpublished else utcnow(),
        )

    async def _close_passed_windows(self) -> float:
        """Invalidate every page once a movie has entered or left its window since they were made;
        returns the next such moment (part of the pages' keys: a page made before a window
        changed is never found by a worker that already knows the next one)."""
        async def load() -> float:
            moment = await self._movies.next_window_change(utcnow())
            return float("inf") if moment is None else moment.replace(tzinfo=timezone.utc).timestamp()

        depends_on = (LIST_KEY,)
        boundary = self._near.peek("window", depends_on)
        if boundary is None:
            boundary = await self._near.get_or_load("window", depends_on, load)
        if time.time() >= boundary:
            await self.movies_changed()
            boundary = await self._near.get_or_load("window", depends_on, load)
        return boundary

    # -- one movie --------------------------------------------------------------------

    async def get_movie(self, *, movie_id: int, audience: Audience) -> Document:
        document, gate = await self._movie(movie_id)
        if gate.refusal(audience) is not None:
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
        return document

    async def gate(self, *, movie_id: int) -> MovieGate:
        """What visibility depends on for this movie (NotFound when there is no such movie)."""
        return (await self._movie(movie_id))[1]

    async def _movie(self, movie_id: int) -> tuple[Document, MovieGate]:
        """A movie's answer and its gate, one cache entry. The gate is read from the answer, so a
        worker that has not seen the movie fills both from Redis, as during a database outage."""
        key, depends_on = f"movie:{movie_id}", (movie_key(movie_id),)
        cached = self._near.peek(key, depends_on)
        if cached is not None:
            return cached

        async def fill() -> tuple[Document, MovieGate]:
            load = lambda: self._load_movie(movie_id)  # noqa: E731
            body = await (self._shared.get_or_load(key, depends_on[0], load) if self._shared is not None else load())
            fields = msgspec.json.decode(body, type=_GateFields)
            gate = MovieGate(movie_id=fields.id, status=fields.status, available_from=fields.available_from,
                             available_until=fields.available_until, maturity_rating=fields.maturity_rating,
                             plan_tier=fields.plan_tier)
            return Document.of(body, version=fields.version), gate

        return await self._near.get_or_load(key, depends_on, fill)

    async def _load_movie(self, movie_id: int) -> bytes:
        row = await self._movies.get(movie_id)
        if row is None:
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
        return _encode(_detail(row))

    # -- invalidation -----------------------------------------------------------------

    async def assets_changed(self, movie_id: int, *asset_ids: int) -> None:
        """A movie's media changed (detached, moved): its answers and the assets' cached locations go."""
        await self.movies_changed(movie_id)
        await self._invalidations.publish(*map(asset_key, asset_ids))

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


def _page_key(audience: Audience, boundary: float, request_key: str) -> str:
    return f"list:{audience.cache_key}:{boundary:.0f}:{request_key}"


class _GateFields(msgspec.Struct):
    """The fields of a movie's answer that visibility (and its ETag's version) depend on."""

    id: int
    version: int
    status: str
    available_from: datetime | None
    available_until: datetime | None
    maturity_rating: str
    plan_tier: str
