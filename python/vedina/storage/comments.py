"""Comment, report, ban and moderation-log queries (SQLAlchemy Core, bound parameters only).

Reads open their own connection; writes are static methods on the caller's
connection. Counting rule: ``comment_counts.visible`` is the number of comments
of a movie whose status is ``visible``; it moves by one in the transaction of
the change that made a comment (in)visible, and only when a conditional
status update (``WHERE status = :from``) really changed a row, so two
moderators hiding one comment at once count it once.

A post first locks the movie's row (a no-op UPDATE: a row lock on MariaDB, the
write lock on SQLite), so posts on one movie are serialised: the duplicate
guard reads under that lock and the count's upsert never races an insert.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.reading import read
from vedina.storage.rows import all_rows, plain
from vedina.storage.schema import (
    comment_bans,
    comment_counts,
    comment_reports,
    comments,
    moderation_actions,
    users,
)
from vedina.storage.viewing import ViewingRepository

if TYPE_CHECKING:
    from vedina.storage.replicas import Reader


_C = comments.c
_ROOT = _C.root_id.is_(None)


def _upsert(conn: AsyncConnection, table: sa.Table, values: dict[str, Any], *, keys: list[str],
            set_: dict[str, Any]) -> sa.Executable:
    """Insert ``values``, or on a key conflict apply ``set_`` (the dialect's own upsert)."""
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table).values(**values).on_conflict_do_update(index_elements=keys, set_=set_)
    return mysql.insert(table).values(**values).on_duplicate_key_update(**set_)


class CommentRepository:
    def __init__(self, engine: AsyncEngine, *, reader: Reader | None = None) -> None:
        self._engine = engine
        self._reader = engine if reader is None else reader  # ADR 0017: a replica for the public reads

    async def _all(self, query, *, public: bool = False) -> list[dict[str, Any]]:
        """``public``: a page every viewer reads (threads, replies), from the reader."""
        return await read(self._reader if public else self._engine, lambda conn: all_rows(conn, query))

    # -- reads ----------------------------------------------------------------------

    async def get(self, comment_id: int) -> dict[str, Any] | None:
        found = await self._all(sa.select(comments).where(_C.id == comment_id))
        return found[0] if found else None

    async def visible_count(self, movie_id: int) -> int:
        value = await read(self._reader, lambda conn: conn.scalar(
            sa.select(comment_counts.c.visible).where(comment_counts.c.movie_id == movie_id)))
        return int(value or 0)

    async def threads(self, *, movie_id: int, newest_first: bool, after_id: int | None, limit: int) -> list[dict]:
        """Top-level comments of a movie, by id (newest or oldest first), after ``after_id``."""
        query = sa.select(comments).where(_C.movie_id == movie_id, _ROOT)
        if after_id is not None:
            query = query.where(_C.id < after_id if newest_first else _C.id > after_id)
        return await self._all(query.order_by(_C.id.desc() if newest_first else _C.id).limit(limit), public=True)

    async def replies(self, *, movie_id: int, root_ids: list[int], per_root: int) -> tuple[dict[int, list[dict]], dict[int, int]]:
        """The first ``per_root`` replies of each thread (oldest first) and each thread's reply count."""
        if not root_ids:
            return {}, {}
        position = sa.func.row_number().over(partition_by=_C.root_id, order_by=_C.id).label("position")
        ranked = (sa.select(comments, position)
                  .where(_C.movie_id == movie_id, _C.root_id.in_(root_ids)).subquery())
        rows = await self._all(sa.select(ranked).where(ranked.c.position <= per_root)
                               .order_by(ranked.c.root_id, ranked.c.id), public=True)
        counted = await self._all(sa.select(_C.root_id, sa.func.count().label("n"))
                                  .where(_C.movie_id == movie_id, _C.root_id.in_(root_ids)).group_by(_C.root_id),
                                  public=True)
        replies: dict[int, list[dict]] = {}
        for row in rows:
            row.pop("position", None)
            replies.setdefault(row["root_id"], []).append(row)
        return replies, {row["root_id"]: int(row["n"]) for row in counted}

    async def active_ban(self, *, user_id: int, now: datetime) -> dict[str, Any] | None:
        found = await self._all(sa.select(comment_bans).where(comment_bans.c.user_id == user_id,
                                                              comment_bans.c.until > now))
        return found[0] if found else None

    async def reported(self, *, after: tuple[int, int] | None, limit: int) -> list[dict[str, Any]]:
        """Comments with open reports, most reported first (then newest), after (count, id)."""
        query = sa.select(comments).where(_C.report_count > 0)
        if after is not None:
            count, last_id = after
            query = query.where(sa.or_(_C.report_count < count, sa.and_(_C.report_count == count, _C.id < last_id)))
        return await self._all(query.order_by(_C.report_count.desc(), _C.id.desc()).limit(limit))

    async def open_reports(self, comment_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        if not comment_ids:
            return {}
        rows = await self._all(
            sa.select(comment_reports)
            .where(comment_reports.c.comment_id.in_(comment_ids), comment_reports.c.resolved_at.is_(None))
            .order_by(comment_reports.c.id)
        )
        found: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row["comment_id"], []).append(row)
        return found

    async def actions(self, *, before_id: int | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(moderation_actions)
        if before_id is not None:
            query = query.where(moderation_actions.c.id < before_id)
        return await self._all(query.order_by(moderation_actions.c.id.desc()).limit(limit))

    async def user_exists(self, user_id: int) -> bool:
        return bool(await self._all(sa.select(users.c.id).where(users.c.id == user_id)))

    # -- writes (the caller's transaction) -------------------------------------------

    # Serialise the movie's posts for the rest of the transaction (the movie row's lock); False: no such movie.
    lock_movie = staticmethod(ViewingRepository.lock_movie)

    @staticmethod
    async def is_duplicate(conn: AsyncConnection, *, movie_id: int, user_id: int, body_hash: str,
                           since: datetime) -> bool:
        """Whether the account (any of its profiles) posted this text on the movie since ``since``."""
        query = sa.select(_C.id).where(
            _C.movie_id == movie_id, _C.user_id == user_id, _C.body_hash == body_hash,
            _C.created_at >= since, _C.status != "deleted",
        ).limit(1)
        return (await conn.execute(query)).first() is not None

    @staticmethod
    async def locked(conn: AsyncConnection, comment_id: int) -> dict[str, Any] | None:
        """The comment's row, read after a no-op write locked it for the transaction."""
        await conn.execute(sa.update(comments).where(_C.id == comment_id).values(status=_C.status))
        # A locking read: on MariaDB it sees the latest commit, not the transaction's snapshot.
        row = (await conn.execute(sa.select(comments).where(_C.id == comment_id).with_for_update())).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        result = await conn.execute(sa.insert(comments).values(**values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def add_visible(conn: AsyncConnection, *, movie_id: int, delta: int) -> None:
        """``visible += delta`` for the movie, creating its row on the first post."""
        if delta > 0:
            await conn.execute(_upsert(conn, comment_counts, {"movie_id": movie_id, "visible": delta},
                                       keys=["movie_id"], set_={"visible": comment_counts.c.visible + delta}))
        elif delta < 0:
            await conn.execute(sa.update(comment_counts).where(comment_counts.c.movie_id == movie_id)
                               .values(visible=comment_counts.c.visible + delta))

    @staticmethod
    async def change(conn: AsyncConnection, *, comment_id: int, from_statuses: tuple[str, ...], **values: Any) -> bool:
        """Update the comment only while its status is one of ``from_statuses``; True when it did."""
        result = await conn.execute(
            sa.update(comments).where(_C.id == comment_id, _C.status.in_(from_statuses)).values(**values)
        )
        return result.rowcount > 0

    @staticmethod
    async def add_report(conn: AsyncConnection, *, comment_id: int, user_id: int, reason: str, note: str,
                         now: datetime) -> int | None:
        """The report's id; None when the comment is not visible (any more). Raises IntegrityError
        when this user reported the comment already (unique comment_id, user_id)."""
        counted = await conn.execute(  # first, and only while visible: a deleted comment gets no report
            sa.update(comments).where(_C.id == comment_id, _C.status == "visible")
            .values(report_count=_C.report_count + 1)
        )
        if counted.rowcount != 1:
            return None
        result = await conn.execute(sa.insert(comment_reports).values(
            comment_id=comment_id, user_id=user_id, reason=reason, note=note, created_at=now))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def resolve_reports(conn: AsyncConnection, *, comment_id: int, now: datetime) -> None:
        await conn.execute(sa.update(comment_reports).where(
            comment_reports.c.comment_id == comment_id, comment_reports.c.resolved_at.is_(None)
        ).values(resolved_at=now))
        await conn.execute(sa.update(comments).where(_C.id == comment_id).values(report_count=0))

    @staticmethod
    async def log(conn: AsyncConnection, *, actor_id: int, action: str, target_type: str, target_id: int,
                  reason: str, now: datetime) -> None:
        await conn.execute(sa.insert(moderation_actions).values(
            actor_id=actor_id, action=action, target_type=target_type, target_id=target_id, reason=reason,
            created_at=now))

    @staticmethod
    async def set_ban(conn: AsyncConnection, *, user_id: int, until: datetime, reason: str, actor_id: int,
                      now: datetime) -> None:
        """One row per user: the latest ban replaces an earlier one."""
        values = {"until": until, "reason": reason, "actor_id": actor_id, "created_at": now}
        await conn.execute(_upsert(conn, comment_bans, {"user_id": user_id, **values}, keys=["user_id"], set_=values))

    @staticmethod
    async def lift_ban(conn: AsyncConnection, *, user_id: int, now: datetime) -> bool:
        """Remove a ban still in force; False when there was none."""
        result = await conn.execute(sa.delete(comment_bans).where(comment_bans.c.user_id == user_id,
                                                                  comment_bans.c.until > now))
        return result.rowcount > 0
