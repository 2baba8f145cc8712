"""Viewer data queries: watch progress, watchlist, ratings (SQLAlchemy Core, bound parameters only).

Writes are static methods on the caller's connection. Two cross-database
points are handled here, once:

- *Upserts*: ``INSERT ... ON CONFLICT DO UPDATE`` on SQLite, ``INSERT ... ON
  DUPLICATE KEY UPDATE`` on MariaDB (:func:`_upsert`).
- *Rating totals* change by the vote's difference in SQL (``rating_sum =
  rating_sum + :delta``), inside a transaction that first locks the movie row
  (:meth:`ViewingRepository.lock_movie`, a write, so SQLite takes its write lock
  before any read); ``rating_avg`` is then recomputed from the row's own
  values in a second statement, so MariaDB's left-to-right SET evaluation and
  SQLite's all-old-values one agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.rows import plain
from vedina.storage.schema import movies, ratings, watch_progress, watchlist

GATE_COLUMNS = (
    movies.c.status, movies.c.available_from, movies.c.available_until, movies.c.maturity_rating, movies.c.plan_tier,
)
_PROGRESS = sa.select(
    watch_progress.c.position_seconds, watch_progress.c.duration_seconds, watch_progress.c.watched_at,
    watch_progress.c.updated_at,
).where(watch_progress.c.profile_id == sa.bindparam("profile_id"), watch_progress.c.movie_id == sa.bindparam("movie_id"))
_MY_SCORE = sa.select(ratings.c.score).where(
    ratings.c.profile_id == sa.bindparam("profile_id"), ratings.c.movie_id == sa.bindparam("movie_id")
)
_TOTALS = sa.select(movies.c.rating_sum, movies.c.rating_count, movies.c.rating_avg).where(
    movies.c.id == sa.bindparam("movie_id")
)
# Hundredths, rounded half up; ``//`` is integer division on both databases (DIV/FLOOR on MariaDB).
_AVERAGE = sa.case(
    (movies.c.rating_count > 0, (movies.c.rating_sum * 200 + movies.c.rating_count) // (movies.c.rating_count * 2)),
    else_=0,
)


def visible(*, ratings_allowed: tuple[str, ...] | None, now: datetime) -> list[sa.ColumnElement[bool]]:
    """SQL conditions for movies a viewer may see (the rules of vedina.services.visibility)."""
    conditions = [
        movies.c.status == "published",
        sa.or_(movies.c.available_from.is_(None), movies.c.available_from <= now),
        sa.or_(movies.c.available_until.is_(None), movies.c.available_until > now),
    ]
    if ratings_allowed is not None:
        conditions.append(movies.c.maturity_rating.in_(ratings_allowed))
    return conditions


def _upsert(conn: AsyncConnection, table: sa.Table, values: dict[str, Any], *, keys: list[str],
            update: Callable[[Any], dict[str, Any]]) -> sa.Executable:
    """Insert ``values``, or on a key conflict set ``update(proposed)`` (``proposed.col``: the value offered)."""
    if conn.dialect.name == "sqlite":
        statement = sqlite.insert(table).values(**values)
        return statement.on_conflict_do_update(index_elements=keys, set_=update(statement.excluded))
    statement = mysql.insert(table).values(**values)
    return statement.on_duplicate_key_update(**update(statement.inserted))


class ViewingRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- movies -------------------------------------------------------------------

    async def movie_duration(self, movie_id: int) -> int | None:
        """The measured duration, else the editor's runtime, in seconds."""
        query = sa.select(movies.c.duration_seconds, movies.c.runtime_minutes).where(movies.c.id == movie_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return row.duration_seconds or (row.runtime_minutes * 60 if row.runtime_minutes else None)

    # -- progress -----------------------------------------------------------------

    async def progress(self, *, profile_id: int, movie_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_PROGRESS, {"profile_id": profile_id, "movie_id": movie_id})).mappings().first()
        return None if row is None else plain(row)

    async def in_progress(
        self, *, profile_id: int, ratings_allowed: tuple[str, ...] | None, now: datetime,
        after: tuple[datetime, int] | None, limit: int,
    ) -> list[dict[str, Any]]:
        """Unwatched progress rows of visible movies, newest first (ix_watch_progress_profile_updated);
        ``after`` is the (updated_at, movie_id) of the last row of the previous batch."""
        query = (
            sa.select(
                watch_progress.c.movie_id, watch_progress.c.position_seconds, watch_progress.c.duration_seconds,
                watch_progress.c.updated_at, movies.c.title, movies.c.slug, *GATE_COLUMNS,
            )
            .join(movies, movies.c.id == watch_progress.c.movie_id)
            .where(
                watch_progress.c.profile_id == profile_id, watch_progress.c.watched_at.is_(None),
                *visible(ratings_allowed=ratings_allowed, now=now),
            )
            .order_by(watch_progress.c.updated_at.desc(), watch_progress.c.movie_id.desc())
            .limit(limit)
        )
        if after is not None:
            query = query.where(sa.tuple_(watch_progress.c.updated_at, watch_progress.c.movie_id) < sa.tuple_(*after))
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    @staticmethod
    async def save_position(
        conn: AsyncConnection, *, profile_id: int, movie_id: int, position: int, duration: int, at: datetime,
        watched: bool = False,
    ) -> None:
        """Upsert a position. ``watched`` sets watched_at (keeping an earlier one); otherwise it stays as it is."""
        values = {"profile_id": profile_id, "movie_id": movie_id, "position_seconds": position,
                  "duration_seconds": duration, "updated_at": at, "watched_at": at if watched else None}

        def update(proposed) -> dict[str, Any]:
            changes = {"position_seconds": proposed.position_seconds, "duration_seconds": proposed.duration_seconds,
                       "updated_at": proposed.updated_at}
            if watched:
                changes["watched_at"] = sa.func.coalesce(watch_progress.c.watched_at, proposed.watched_at)
            return changes

        await conn.execute(_upsert(conn, watch_progress, values, keys=["profile_id", "movie_id"], update=update))

    @staticmethod
    async def unmark_watched(conn: AsyncConnection, *, profile_id: int, movie_id: int, at: datetime) -> None:
        """Not watched, and back to the start (so it does not come back as "continue watching" at 95%)."""
        await conn.execute(
            sa.update(watch_progress)
            .where(watch_progress.c.profile_id == profile_id, watch_progress.c.movie_id == movie_id)
            .values(watched_at=None, position_seconds=0, updated_at=at)
        )

    # -- watchlist ----------------------------------------------------------------

    async def watchlist(
        self, *, profile_id: int, ratings_allowed: tuple[str, ...] | None, now: datetime,
        after: tuple[datetime, int] | None, limit: int,
    ) -> list[dict[str, Any]]:
        query = (
            sa.select(watchlist.c.movie_id, watchlist.c.added_at, movies.c.title, movies.c.slug, *GATE_COLUMNS)
            .join(movies, movies.c.id == watchlist.c.movie_id)
            .where(watchlist.c.profile_id == profile_id, *visible(ratings_allowed=ratings_allowed, now=now))
            .order_by(watchlist.c.added_at.desc(), watchlist.c.movie_id.desc())
            .limit(limit)
        )
        if after is not None:
            query = query.where(sa.tuple_(watchlist.c.added_at, watchlist.c.movie_id) < sa.tuple_(*after))
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings().all()]

    @staticmethod
    async def add_to_watchlist(conn: AsyncConnection, *, profile_id: int, movie_id: int, at: datetime) -> None:
        """Idempotent: a movie already on the list keeps its place."""
        values = {"profile_id": profile_id, "movie_id": movie_id, "added_at": at}
        await conn.execute(_upsert(conn, watchlist, values, keys=["profile_id", "movie_id"],
                                   update=lambda _proposed: {"added_at": watchlist.c.added_at}))

    @staticmethod
    async def remove_from_watchlist(conn: AsyncConnection, *, profile_id: int, movie_id: int) -> None:
        await conn.execute(
            sa.delete(watchlist).where(watchlist.c.profile_id == profile_id, watchlist.c.movie_id == movie_id)
        )

    # -- ratings ------------------------------------------------------------------

    async def rating(self, *, profile_id: int, movie_id: int) -> tuple[int | None, int, int]:
        """(my score or None, rating_sum, rating_count)."""
        async with self._engine.connect() as conn:
            mine = (await conn.execute(_MY_SCORE, {"profile_id": profile_id, "movie_id": movie_id})).scalar_one_or_none()
            totals = (await conn.execute(_TOTALS, {"movie_id": movie_id})).first()
        return mine, (totals.rating_sum if totals else 0), (totals.rating_count if totals else 0)

    @staticmethod
    async def lock_movie(conn: AsyncConnection, movie_id: int) -> bool:
        """Lock the movie's row for the rest of the transaction; False when there is no such movie."""
        result = await conn.execute(
            sa.update(movies).where(movies.c.id == movie_id).values(rating_count=movies.c.rating_count)
        )
        return result.rowcount > 0

    @staticmethod
    async def score(conn: AsyncConnection, *, profile_id: int, movie_id: int) -> int | None:
        return (await conn.execute(_MY_SCORE, {"profile_id": profile_id, "movie_id": movie_id})).scalar_one_or_none()

    @staticmethod
    async def set_score(conn: AsyncConnection, *, profile_id: int, movie_id: int, score: int, previous: int | None,
                        at: datetime) -> None:
        """Write a vote and move the movie's totals by its difference (call with the movie locked)."""
        if previous is None:
            await conn.execute(sa.insert(ratings).values(profile_id=profile_id, movie_id=movie_id, score=score, updated_at=at))
        else:
            await conn.execute(
                sa.update(ratings)
                .where(ratings.c.profile_id == profile_id, ratings.c.movie_id == movie_id)
                .values(score=score, updated_at=at)
            )
        await ViewingRepository._move_totals(conn, movie_id, delta_sum=score - (previous or 0),
                                             delta_count=0 if previous is not None else 1)

    @staticmethod
    async def remove_score(conn: AsyncConnection, *, profile_id: int, movie_id: int, previous: int) -> None:
        await conn.execute(sa.delete(ratings).where(ratings.c.profile_id == profile_id, ratings.c.movie_id == movie_id))
        await ViewingRepository._move_totals(conn, movie_id, delta_sum=-previous, delta_count=-1)

    @staticmethod
    async def scores_of_profile(conn: AsyncConnection, profile_id: int) -> dict[int, int]:
        """movie id -> score, for removing a profile's votes from the totals before it goes."""
        query = sa.select(ratings.c.movie_id, ratings.c.score).where(ratings.c.profile_id == profile_id)
        return {row[0]: row[1] for row in await conn.execute(query)}

    @staticmethod
    async def _move_totals(conn: AsyncConnection, movie_id: int, *, delta_sum: int, delta_count: int) -> None:
        await conn.execute(
            sa.update(movies).where(movies.c.id == movie_id).values(
                rating_sum=movies.c.rating_sum + delta_sum, rating_count=movies.c.rating_count + delta_count
            )
        )
        await conn.execute(sa.update(movies).where(movies.c.id == movie_id).values(rating_avg=_AVERAGE))
