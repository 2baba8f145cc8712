"""Movie rows and their parts (genres, credits, languages, media assets): reads and writes.

SQLAlchemy Core, bound parameters only. Listing and search live in
:mod:`vedina.storage.catalog_queries`; the search vocabulary in
:mod:`vedina.storage.search`. Writes take the caller's connection so that a
movie and its parts change in one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.reading import read
from vedina.storage.rows import all_rows, plain
from vedina.storage.schema import credits, genres, media_assets, movie_genres, movie_languages, movies, people

if TYPE_CHECKING:
    from vedina.storage.replicas import Reader

MOVIE_COLUMNS = (
    movies.c.id,
    movies.c.slug,
    movies.c.title,
    movies.c.sort_title,
    movies.c.original_title,
    movies.c.synopsis,
    movies.c.release_year,
    movies.c.runtime_minutes,
    movies.c.duration_seconds,
    movies.c.maturity_rating,
    movies.c.genres,
    movies.c.spoken_languages,
    movies.c.subtitle_languages,
    movies.c.poster_url,
    movies.c.backdrop_url,
    movies.c.available_from,
    movies.c.available_until,
    movies.c.plan_tier,
    movies.c.status,
    movies.c.published_at,
    movies.c.version,
    movies.c.popularity,
    movies.c.rating_count,
    movies.c.rating_avg,
)
_ASSET_COLUMNS = tuple(c for c in media_assets.c if c.name not in ("created_at", "updated_at", "failure_reason"))

# The statements of the read paths are built once (bound parameters): building a select costs
# more Python than running it from SQLAlchemy's compiled-statement cache.
_GET_MOVIE = sa.select(*MOVIE_COLUMNS).where(movies.c.id == sa.bindparam("movie_id"))
_MOVIE_ASSETS = (
    sa.select(*_ASSET_COLUMNS).where(media_assets.c.movie_id == sa.bindparam("movie_id")).order_by(media_assets.c.id)
)
_MOVIE_CREDITS = (
    sa.select(credits.c.person_id, people.c.name, credits.c.department, credits.c.role, credits.c.position)
    .join(people, people.c.id == credits.c.person_id)
    .where(credits.c.movie_id == sa.bindparam("movie_id"))
    .order_by(credits.c.department, credits.c.position)
)
_GET_ASSET = sa.select(*_ASSET_COLUMNS).where(media_assets.c.id == sa.bindparam("asset_id"))


class VersionMismatch(Exception):
    """An update named a version the movie no longer has (someone else edited it)."""


class MovieRepository:
    def __init__(self, engine: AsyncEngine, *, reader: Reader | None = None) -> None:
        self._engine = engine
        self._reader = engine if reader is None else reader  # ADR 0017: a replica for the public reads

    # -- reads -------------------------------------------------------------------------

    async def get(self, movie_id: int) -> dict[str, Any] | None:
        """A movie with its credits and media assets (any status)."""
        async def fetch(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(_GET_MOVIE, {"movie_id": movie_id})).mappings().first()
            if row is None:
                return None
            credit_rows = (await conn.execute(_MOVIE_CREDITS, {"movie_id": movie_id})).mappings().all()
            assets = (await conn.execute(_MOVIE_ASSETS, {"movie_id": movie_id})).mappings().all()
            return {**plain(row), "credits": [plain(c) for c in credit_rows], "assets": [plain(a) for a in assets]}

        return await read(self._reader, fetch)

    async def get_by_slug(self, slug: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(*MOVIE_COLUMNS).where(movies.c.slug == slug))).mappings().first()
        return None if row is None else plain(row)

    async def get_asset(self, asset_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_GET_ASSET, {"asset_id": asset_id})).mappings().first()
        return None if row is None else plain(row)

    async def next_window_change(self, now: datetime) -> datetime | None:
        """The next moment a published movie enters or leaves its availability window."""
        published = movies.c.status == "published"
        async def fetch(conn: AsyncConnection) -> datetime | None:
            starts = (await conn.execute(sa.select(sa.func.min(movies.c.available_from)).where(
                published, movies.c.available_from > now))).scalar_one()
            ends = (await conn.execute(sa.select(sa.func.min(movies.c.available_until)).where(
                published, movies.c.available_until > now))).scalar_one()
            return min((t for t in (starts, ends) if t is not None), default=None)

        return await read(self._reader, fetch)

    # -- writes (in the caller's transaction) -------------------------------------------

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        now = utcnow()
        values.setdefault("genres", [])
        values.setdefault("spoken_languages", [])
        values.setdefault("subtitle_languages", [])
        values.setdefault("sort_title", values.get("title", "").lower())
        result = await conn.execute(sa.insert(movies).values(created_at=now, updated_at=now, **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def update(conn: AsyncConnection, movie_id: int, **values: Any) -> None:
        await conn.execute(sa.update(movies).where(movies.c.id == movie_id).values(updated_at=utcnow(), **values))

    @staticmethod
    async def update_versioned(conn: AsyncConnection, movie_id: int, *, version: int | None, **values: Any) -> int:
        """Apply ``values`` if the movie is at ``version`` (None: any); returns the new version.

        One compare-and-set UPDATE: of two concurrent edits from one version, exactly one wins.
        """
        condition = [movies.c.id == movie_id, movies.c.status != "deleted"]
        if version is not None:
            condition.append(movies.c.version == version)
        statement = sa.update(movies).where(*condition).values(
            version=movies.c.version + 1, updated_at=utcnow(), **values
        )
        if (await conn.execute(statement)).rowcount != 1:
            raise VersionMismatch(movie_id)
        return (await conn.execute(sa.select(movies.c.version).where(movies.c.id == movie_id))).scalar_one()

    @staticmethod
    async def lock(conn: AsyncConnection, movie_id: int) -> dict[str, Any] | None:
        """The movie row, locked for update (MariaDB; SQLite writers are serialised anyway)."""
        row = (await conn.execute(_GET_MOVIE.with_for_update(), {"movie_id": movie_id})).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def set_genres(conn: AsyncConnection, movie_id: int, genre_ids: list[int]) -> None:
        await conn.execute(sa.delete(movie_genres).where(movie_genres.c.movie_id == movie_id))
        if genre_ids:
            await conn.execute(sa.insert(movie_genres), [{"movie_id": movie_id, "genre_id": g} for g in genre_ids])

    @staticmethod
    async def set_languages(conn: AsyncConnection, movie_id: int, *, spoken: list[str], subtitle: list[str]) -> None:
        await conn.execute(sa.delete(movie_languages).where(movie_languages.c.movie_id == movie_id))
        rows = [{"movie_id": movie_id, "kind": "spoken", "language": code} for code in spoken]
        rows += [{"movie_id": movie_id, "kind": "subtitle", "language": code} for code in subtitle]
        if rows:
            await conn.execute(sa.insert(movie_languages), rows)

    @staticmethod
    async def set_credits(conn: AsyncConnection, movie_id: int, entries: list[dict[str, Any]]) -> None:
        """Replace the credits: ``entries`` of person_id, department, role, position."""
        await conn.execute(sa.delete(credits).where(credits.c.movie_id == movie_id))
        if entries:
            await conn.execute(sa.insert(credits), [{"movie_id": movie_id, **entry} for entry in entries])

    @staticmethod
    async def insert_asset(conn: AsyncConnection, **values: Any) -> int:
        result = await conn.execute(sa.insert(media_assets).values(created_at=utcnow(), **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def update_asset(conn: AsyncConnection, asset_id: int, **values: Any) -> None:
        await conn.execute(sa.update(media_assets).where(media_assets.c.id == asset_id).values(**values))

    @staticmethod
    async def delete_asset(conn: AsyncConnection, movie_id: int, asset_id: int) -> bool:
        statement = sa.delete(media_assets).where(media_assets.c.id == asset_id, media_assets.c.movie_id == movie_id)
        return (await conn.execute(statement)).rowcount == 1


class GenreRepository:
    def __init__(self, engine: AsyncEngine, *, reader: Reader | None = None) -> None:
        self._engine = engine
        self._reader = engine if reader is None else reader  # ADR 0017: a replica for the public reads

    async def all(self) -> list[dict[str, Any]]:
        async def fetch(conn: AsyncConnection) -> list[dict[str, Any]]:
            return [plain(r) for r in (await conn.execute(sa.select(genres).order_by(genres.c.slug))).mappings().all()]

        return await read(self._reader, fetch)

    @staticmethod
    async def ids_by_slug(conn: AsyncConnection, slugs: list[str]) -> dict[str, int]:
        if not slugs:
            return {}
        rows = await conn.execute(sa.select(genres.c.slug, genres.c.id).where(genres.c.slug.in_(slugs)))
        return dict(rows.all())

    async def id_of(self, slug: str) -> int | None:
        async def fetch(conn: AsyncConnection) -> int | None:
            return (await self.ids_by_slug(conn, [slug])).get(slug)

        return await read(self._reader, fetch)

    @staticmethod
    async def insert(conn: AsyncConnection, *, slug: str, name: str) -> int:
        return int((await conn.execute(sa.insert(genres).values(slug=slug, name=name))).inserted_primary_key[0])

    @staticmethod
    async def update(conn: AsyncConnection, slug: str, *, name: str) -> bool:
        return (await conn.execute(sa.update(genres).where(genres.c.slug == slug).values(name=name))).rowcount == 1

    @staticmethod
    async def delete(conn: AsyncConnection, slug: str) -> list[int]:
        """Delete a genre; returns the ids of the movies that had it."""
        genre_id = (await conn.execute(sa.select(genres.c.id).where(genres.c.slug == slug))).scalar_one_or_none()
        if genre_id is None:
            raise LookupError(slug)
        movie_ids = (await conn.execute(
            sa.select(movie_genres.c.movie_id).where(movie_genres.c.genre_id == genre_id))).scalars().all()
        await conn.execute(sa.delete(movie_genres).where(movie_genres.c.genre_id == genre_id))
        await conn.execute(sa.delete(genres).where(genres.c.id == genre_id))
        return list(movie_ids)


class PersonRepository:
    def __init__(self, engine: AsyncEngine, *, reader: Reader | None = None) -> None:
        self._engine = engine
        self._reader = engine if reader is None else reader  # ADR 0017: a replica for the public reads

    async def get(self, person_id: int, *, now: datetime, ratings: tuple[str, ...] | None) -> dict[str, Any] | None:
        """A person and their credits on movies viewers see now (``ratings``: a parental limit's)."""
        visible = [movies.c.status == "published",
                   sa.or_(movies.c.available_from.is_(None), movies.c.available_from <= now),
                   sa.or_(movies.c.available_until.is_(None), movies.c.available_until > now)]
        if ratings is not None:
            visible.append(movies.c.maturity_rating.in_(ratings))
        async def fetch(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(sa.select(people.c.id, people.c.name).where(people.c.id == person_id))).first()
            if row is None:
                return None
            filmography = (await conn.execute(
                sa.select(credits.c.movie_id, movies.c.title, credits.c.department, credits.c.role)
                .join(movies, movies.c.id == credits.c.movie_id)
                .where(credits.c.person_id == person_id, *visible)
                .order_by(movies.c.release_year.desc(), movies.c.id.desc()).limit(200)
            )).mappings().all()
            return {"id": row.id, "name": row.name, "credits": [plain(f) for f in filmography]}

        return await read(self._reader, fetch)

    async def find(self, *, name_prefix: str, limit: int) -> list[dict[str, Any]]:
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = (sa.select(people.c.id, people.c.name).where(people.c.name.like(f"{escaped}%", escape="\\"))
                 .order_by(people.c.name, people.c.id).limit(limit))
        return await read(self._reader, lambda conn: all_rows(conn, query))

    @staticmethod
    async def names(conn: AsyncConnection, person_ids: list[int]) -> dict[int, str]:
        if not person_ids:
            return {}
        rows = await conn.execute(sa.select(people.c.id, people.c.name).where(people.c.id.in_(person_ids)))
        return dict(rows.all())

    @staticmethod
    async def insert(conn: AsyncConnection, *, name: str) -> int:
        result = await conn.execute(sa.insert(people).values(name=name, created_at=utcnow()))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def rename(conn: AsyncConnection, person_id: int, *, name: str) -> list[int]:
        """Rename; returns the ids of the movies crediting the person (their search text changes)."""
        if (await conn.execute(sa.update(people).where(people.c.id == person_id).values(name=name))).rowcount != 1:
            raise LookupError(person_id)
        return await PersonRepository.movies_of(conn, person_id)

    @staticmethod
    async def movies_of(conn: AsyncConnection, person_id: int) -> list[int]:
        query = sa.select(credits.c.movie_id).where(credits.c.person_id == person_id).distinct()
        return list((await conn.execute(query)).scalars().all())

    @staticmethod
    async def delete(conn: AsyncConnection, person_id: int) -> list[int]:
        movie_ids = await PersonRepository.movies_of(conn, person_id)
        if (await conn.execute(sa.delete(people).where(people.c.id == person_id))).rowcount != 1:
            raise LookupError(person_id)
        return movie_ids
