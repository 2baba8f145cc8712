"""Editing the catalog: movies (with optimistic concurrency), genres, people and credits.

Every movie edit names the version it was made from (``If-Match``); the write
is one compare-and-set on ``movies.version``, so of two editors who read
version 4, one gets version 5 and the other ``412``, never a silent
overwrite. Publishing, unpublishing and deleting are edits too.

A movie's parts change in the movie's transaction: its genres
(``movie_genres`` and the ``genres`` copy answers show), spoken and subtitle
languages (``movie_languages``, which the language filter uses), credits and
the ``people_text`` that full-text search covers, and the search vocabulary.
After the commit :meth:`CatalogService.movies_changed` drops the cached
answers on every worker of every host.

    >>> movie_id, version = await editor.create(MovieCreate(title="The Matrix"))
    >>> version = await editor.update(movie_id, MoviePatch(release_year=1999), if_version=version)
    >>> await editor.publish(movie_id, if_version=version)
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from vedina.services.catalog import CatalogService
from vedina.storage import search
from vedina.storage.clock import utcnow
from vedina.storage.movies import GenreRepository, MovieRepository, PersonRepository, VersionMismatch
from vedina.storage.schema import credits, movies, people

AgeRating = Literal["G", "PG", "PG-13", "R", "NC-17"]
PlanTier = Literal["basic", "standard", "premium"]
# Printable text (HTML and SQL included: stored verbatim, answered as JSON).
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
OptionalTitle = Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*\Z")]
Synopsis = Annotated[str, msgspec.Meta(max_length=10_000)]
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")]
GenreSlug = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")]
Language = Annotated[str, msgspec.Meta(min_length=2, max_length=16, pattern=r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*\Z")]
Year = Annotated[int, msgspec.Meta(ge=1870, le=2200)]
Minutes = Annotated[int, msgspec.Meta(ge=1, le=2000)]
ImageUrl = Annotated[str, msgspec.Meta(max_length=500, pattern=r"^(?:https?://[^\s\x00-\x1f\"'<>]+|/[^\s\x00-\x1f\"'<>]*)\Z")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+\Z")]
Role = Annotated[str, msgspec.Meta(max_length=100, pattern=r"^[^\x00-\x1f\x7f]*\Z")]
PersonId = Annotated[int, msgspec.Meta(ge=1, le=2**62)]

MAX_CREDITS = 200
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class CreditEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    person_id: PersonId
    role: Role = ""


class MovieCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Title
    slug: Slug | None = None  # made from the title when absent
    original_title: OptionalTitle = ""
    synopsis: Synopsis = ""
    release_year: Year | None = None
    runtime_minutes: Minutes | None = None
    maturity_rating: AgeRating = "G"
    genres: Annotated[list[GenreSlug], msgspec.Meta(max_length=10)] = []
    spoken_languages: Annotated[list[Language], msgspec.Meta(max_length=30)] = []
    subtitle_languages: Annotated[list[Language], msgspec.Meta(max_length=60)] = []
    poster_url: ImageUrl | None = None
    backdrop_url: ImageUrl | None = None
    available_from: datetime | None = None
    available_until: datetime | None = None
    plan_tier: PlanTier = "basic"
    cast: Annotated[list[CreditEntry], msgspec.Meta(max_length=MAX_CREDITS)] = []
    crew: Annotated[list[CreditEntry], msgspec.Meta(max_length=MAX_CREDITS)] = []


class MoviePatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields to change; absent fields stay as they are."""

    title: Title | Unset = UNSET
    slug: Slug | Unset = UNSET
    original_title: OptionalTitle | Unset = UNSET
    synopsis: Synopsis | Unset = UNSET
    release_year: Year | None | Unset = UNSET
    runtime_minutes: Minutes | None | Unset = UNSET
    maturity_rating: AgeRating | Unset = UNSET
    genres: Annotated[list[GenreSlug], msgspec.Meta(max_length=10)] | Unset = UNSET
    spoken_languages: Annotated[list[Language], msgspec.Meta(max_length=30)] | Unset = UNSET
    subtitle_languages: Annotated[list[Language], msgspec.Meta(max_length=60)] | Unset = UNSET
    poster_url: ImageUrl | None | Unset = UNSET
    backdrop_url: ImageUrl | None | Unset = UNSET
    available_from: datetime | None | Unset = UNSET
    available_until: datetime | None | Unset = UNSET
    plan_tier: PlanTier | Unset = UNSET
    cast: Annotated[list[CreditEntry], msgspec.Meta(max_length=MAX_CREDITS)] | Unset = UNSET
    crew: Annotated[list[CreditEntry], msgspec.Meta(max_length=MAX_CREDITS)] | Unset = UNSET


class GenreCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    slug: GenreSlug
    name: Name


class GenreUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name


class PersonCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: Name


_MOVIE_FIELDS = (
    "title", "slug", "original_title", "synopsis", "release_year", "runtime_minutes", "maturity_rating",
    "poster_url", "backdrop_url", "available_from", "available_until", "plan_tier",
)
_ARTICLES = ("the ", "a ", "an ")


def sort_title(title: str) -> str:
    """Lower case, leading article last: "The Matrix" sorts as "matrix, the"."""
    lowered = unicodedata.normalize("NFKC", title).strip().lower()
    for article in _ARTICLES:
        if lowered.startswith(article) and len(lowered) > len(article):
            return f"{lowered[len(article):]}, {article.strip()}"[:200]
    return lowered[:200]


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title).strip("-")[:100] or "movie"


def _naive_utc(value: datetime | None) -> datetime | None:
    """Stored datetimes are naive UTC at second precision."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.replace(microsecond=0)


class CatalogEditor:
    def __init__(self, *, engine: AsyncEngine, catalog: CatalogService) -> None:
        self._engine = engine
        self._catalog = catalog

    # -- movies --------------------------------------------------------------------------

    async def create(self, body: MovieCreate) -> tuple[int, int]:
        """A new draft; returns (id, version)."""
        values = {name: getattr(body, name) for name in _MOVIE_FIELDS}
        values["slug"] = body.slug or slugify(body.title)
        self._check_window(values["available_from"], values["available_until"])
        values["available_from"] = _naive_utc(values["available_from"])
        values["available_until"] = _naive_utc(values["available_until"])
        try:
            async with self._engine.begin() as conn:
                movie_id = await MovieRepository.insert(conn, status="draft", sort_title=sort_title(body.title),
                                                         **values)
                await self._set_parts(conn, movie_id, genres=body.genres, spoken=body.spoken_languages,
                                      subtitle=body.subtitle_languages, cast=body.cast, crew=body.crew)
                await search.add_to_vocabulary(conn, [body.title, body.original_title])
        except IntegrityError:
            raise Conflict("A movie with this slug exists", details={"field": "slug", "slug": values["slug"]}) from None
        await self._catalog.movies_changed(movie_id)
        return movie_id, 1

    async def update(self, movie_id: int, patch: MoviePatch, *, if_version: int | None) -> int:
        values = {name: getattr(patch, name) for name in _MOVIE_FIELDS if getattr(patch, name) is not UNSET}
        if "title" in values:
            values["sort_title"] = sort_title(values["title"])
        for name in ("available_from", "available_until"):
            if name in values:
                values[name] = _naive_utc(values[name])
        try:
            async with self._engine.begin() as conn:
                current = await MovieRepository.lock(conn, movie_id)
                if current is None or current["status"] == "deleted":
                    raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
                self._check_window(values.get("available_from", current["available_from"]),
                                   values.get("available_until", current["available_until"]))
                version = await self._write(conn, movie_id, if_version, **values)
                await self._set_parts(
                    conn, movie_id,
                    genres=None if patch.genres is UNSET else patch.genres,
                    spoken=None if patch.spoken_languages is UNSET else patch.spoken_languages,
                    subtitle=None if patch.subtitle_languages is UNSET else patch.subtitle_languages,
                    cast=None if patch.cast is UNSET else patch.cast,
                    crew=None if patch.crew is UNSET else patch.crew,
                    current=current,
                )
                await search.add_to_vocabulary(conn, [values.get("title", ""), values.get("original_title", "")])
        except IntegrityError:
            raise Conflict("A movie with this slug exists", details={"field": "slug"}) from None
        await self._catalog.movies_changed(movie_id)
        return version

    async def publish(self, movie_id: int, *, if_version: int | None) -> int:
        return await self._set_status(movie_id, "published", if_version=if_version,
                                      published_at=sa.func.coalesce(movies.c.published_at, utcnow()))

    async def unpublish(self, movie_id: int, *, if_version: int | None) -> int:
        return await self._set_status(movie_id, "draft", if_version=if_version)

    async def delete(self, movie_id: int, *, if_version: int | None) -> None:
        await self._set_status(movie_id, "deleted", if_version=if_version, deleted_at=utcnow())

    async def detach_asset(self, movie_id: int, asset_id: int) -> None:
        async with self._engine.begin() as conn:
            if not await MovieRepository.delete_asset(conn, movie_id, asset_id):
                raise NotFound(f"Media asset {asset_id} of movie {movie_id} not found", details={"id": asset_id})
        await self._catalog.assets_changed(movie_id, asset_id)

    async def _set_status(self, movie_id: int, status: str, *, if_version: int | None, **values: Any) -> int:
        async with self._engine.begin() as conn:
            version = await self._write(conn, movie_id, if_version, status=status, **values)
        await self._catalog.movies_changed(movie_id)
        return version

    async def _write(self, conn: AsyncConnection, movie_id: int, if_version: int | None, **values: Any) -> int:
        try:
            return await MovieRepository.update_versioned(conn, movie_id, version=if_version, **values)
        except VersionMismatch:
            exists = (await conn.execute(sa.select(movies.c.version).where(
                movies.c.id == movie_id, movies.c.status != "deleted"))).scalar_one_or_none()
            if exists is None:
                raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id}) from None
            raise PreconditionFailed(
                f"Movie {movie_id} is at version {exists}, not {if_version}",
                details={"id": movie_id, "version": exists},
            ) from None

    @staticmethod
    def _check_window(start: datetime | None, end: datetime | None) -> None:
        if start is not None and end is not None and _naive_utc(end) <= _naive_utc(start):
            raise ValidationFailed("available_until must be after available_from", details={"field": "available_until"})

    async def _set_parts(
        self, conn: AsyncConnection, movie_id: int, *, genres: list[str] | None, spoken: list[str] | None,
        subtitle: list[str] | None, cast: list[CreditEntry] | None, crew: list[CreditEntry] | None,
        current: dict[str, Any] | None = None,
    ) -> None:
        if genres is not None:
            unique = list(dict.fromkeys(genres))
            ids = await GenreRepository.ids_by_slug(conn, unique)
            unknown = [slug for slug in unique if slug not in ids]
            if unknown:
                raise ValidationFailed(f"Unknown genre {unknown[0]!r}", details={"field": "genres", "value": unknown[0]})
            await MovieRepository.set_genres(conn, movie_id, [ids[slug] for slug in unique])
            await MovieRepository.update(conn, movie_id, genres=unique)
        if spoken is not None or subtitle is not None:
            spoken = list(dict.fromkeys(spoken if spoken is not None else current["spoken_languages"]))  # type: ignore[index]
            subtitle = list(dict.fromkeys(subtitle if subtitle is not None else current["subtitle_languages"]))  # type: ignore[index]
            await MovieRepository.set_languages(conn, movie_id, spoken=spoken, subtitle=subtitle)
            await MovieRepository.update(conn, movie_id, spoken_languages=spoken, subtitle_languages=subtitle)
        if cast is not None or crew is not None:
            await self._set_credits(conn, movie_id, cast=cast, crew=crew)

    async def _set_credits(
        self, conn: AsyncConnection, movie_id: int, *, cast: list[CreditEntry] | None, crew: list[CreditEntry] | None
    ) -> None:
        existing = (await conn.execute(
            sa.select(credits.c.person_id, credits.c.department, credits.c.role, credits.c.position)
            .where(credits.c.movie_id == movie_id).order_by(credits.c.department, credits.c.position)
        )).mappings().all()
        entries: list[dict[str, Any]] = []
        for department, given in (("cast", cast), ("crew", crew)):
            if given is None:
                entries += [dict(e) for e in existing if e["department"] == department]
            else:
                entries += [{"person_id": c.person_id, "department": department, "role": c.role, "position": i}
                            for i, c in enumerate(given)]
        names = await PersonRepository.names(conn, list({e["person_id"] for e in entries}))
        unknown = [e["person_id"] for e in entries if e["person_id"] not in names]
        if unknown:
            raise ValidationFailed(f"Unknown person {unknown[0]}", details={"field": "cast/crew", "value": unknown[0]})
        await MovieRepository.set_credits(conn, movie_id, entries)
        await refresh_people_text(conn, [movie_id])
        await search.add_to_vocabulary(conn, names.values())

    # -- genres --------------------------------------------------------------------------

    async def create_genre(self, body: GenreCreate) -> None:
        try:
            async with self._engine.begin() as conn:
                await GenreRepository.insert(conn, slug=body.slug, name=body.name)
        except IntegrityError:
            raise Conflict("This genre exists", details={"field": "slug", "slug": body.slug}) from None

    async def rename_genre(self, slug: str, body: GenreUpdate) -> None:
        async with self._engine.begin() as conn:
            if not await GenreRepository.update(conn, slug, name=body.name):
                raise NotFound(f"Genre {slug!r} not found", details={"slug": slug})

    async def delete_genre(self, slug: str) -> None:
        async with self._engine.begin() as conn:
            try:
                movie_ids = await GenreRepository.delete(conn, slug)
            except LookupError:
                raise NotFound(f"Genre {slug!r} not found", details={"slug": slug}) from None
            for movie_id in movie_ids:  # the answers' copy of the genre list
                current = await MovieRepository.lock(conn, movie_id)
                if current is not None:
                    await MovieRepository.update(conn, movie_id, genres=[g for g in current["genres"] if g != slug])
        await self._catalog.movies_changed(*movie_ids)

    # -- people --------------------------------------------------------------------------

    async def create_person(self, body: PersonCreate) -> int:
        async with self._engine.begin() as conn:
            person_id = await PersonRepository.insert(conn, name=body.name)
            await search.add_to_vocabulary(conn, [body.name])
        return person_id

    async def rename_person(self, person_id: int, body: PersonCreate) -> None:
        async with self._engine.begin() as conn:
            try:
                movie_ids = await PersonRepository.rename(conn, person_id, name=body.name)
            except LookupError:
                raise NotFound(f"Person {person_id} not found", details={"id": person_id}) from None
            await refresh_people_text(conn, movie_ids)
            await search.add_to_vocabulary(conn, [body.name])
        await self._catalog.movies_changed(*movie_ids)

    async def delete_person(self, person_id: int) -> None:
        async with self._engine.begin() as conn:
            try:
                movie_ids = await PersonRepository.delete(conn, person_id)
            except LookupError:
                raise NotFound(f"Person {person_id} not found", details={"id": person_id}) from None
            await refresh_people_text(conn, movie_ids)
        await self._catalog.movies_changed(*movie_ids)


async def refresh_people_text(conn: AsyncConnection, movie_ids: list[int]) -> None:
    """Recompute the credited names that full-text search covers."""
    if not movie_ids:
        return
    rows = (await conn.execute(
        sa.select(credits.c.movie_id, people.c.name).join(people, people.c.id == credits.c.person_id)
        .where(credits.c.movie_id.in_(movie_ids)).order_by(credits.c.movie_id, credits.c.department, credits.c.position)
    )).all()
    names: dict[int, list[str]] = {movie_id: [] for movie_id in movie_ids}
    for movie_id, name in rows:
        names[movie_id].append(name)
    for movie_id, credited in names.items():
        await MovieRepository.update(conn, movie_id, people_text=" ".join(dict.fromkeys(credited))[:60_000])
