"""Moderating comments: the queue of reported comments, hide and restore, dismissing reports,
bans from commenting; every action is written to ``moderation_actions`` (who, when, why, on
what) in the transaction of the change, so the log and the state never disagree.

- *hide* (visible -> hidden, with the reason the author sees), *restore* (hidden -> visible)
  and *dismiss* (the reports were unfounded) each resolve the comment's open reports, so it
  leaves the queue; the movie's visible count moves in the same transaction.
- *ban* keeps a user from posting and editing until a moment (one row per user, the latest
  ban wins); *unban* lifts a ban in force.

Moderators act on any comment by id, whatever its movie's visibility. The log is read by
admins (``moderation:read``).

>>> await moderation.hide(actor_id=3, comment_id=42, reason="insults")
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Conflict, NotFound, ValidationFailed
from vedina.services.comments import CommentPublic, Reader, comments_key, public
from vedina.storage.clock import utcnow
from vedina.storage.comments import CommentRepository
from vedina.storage.invalidation import Invalidations

MAX_BAN = timedelta(days=3650)
_MODERATOR = Reader(moderator=True)
_QUEUE_CURSOR = re.compile(r"([0-9]{1,9})-([0-9]{1,18})")
_LOG_CURSOR = re.compile(r"[0-9]{1,18}")


class OpenReport(msgspec.Struct, kw_only=True):
    id: int
    user_id: int
    reason: str
    note: str
    created_at: datetime


class ReportedComment(msgspec.Struct, kw_only=True):
    comment: CommentPublic
    reports: list[OpenReport]


class ReportQueue(msgspec.Struct, kw_only=True):
    items: list[ReportedComment]
    next_cursor: str | None


class Ban(msgspec.Struct, kw_only=True):
    user_id: int
    until: datetime
    reason: str
    actor_id: int
    created_at: datetime


class ModerationAction(msgspec.Struct, kw_only=True):
    id: int
    actor_id: int | None
    action: str  # hide | restore | dismiss_reports | ban | unban
    target_type: str  # comment | user
    target_id: int
    reason: str
    created_at: datetime


class ModerationLog(msgspec.Struct, kw_only=True):
    items: list[ModerationAction]
    next_cursor: str | None


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed("cursor must be a next_cursor of this listing", details={"field": "cursor"})


class ModerationService:
    def __init__(self, *, engine: AsyncEngine, comments: CommentRepository, invalidations: Invalidations,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._comments = comments
        self._invalidations = invalidations
        self.clock = clock

    # -- the queue and the log ----------------------------------------------------------

    async def queue(self, *, limit: int, cursor: str | None) -> ReportQueue:
        after = None
        if cursor is not None:
            match = _QUEUE_CURSOR.fullmatch(cursor)
            if match is None or int(match.group(2)) >= 2**63:
                raise _bad_cursor()
            after = (int(match.group(1)), int(match.group(2)))
        rows = await self._comments.reported(after=after, limit=limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        reports = await self._comments.open_reports([r["id"] for r in rows])
        items = [ReportedComment(comment=public(row, _MODERATOR),
                                 reports=[msgspec.convert(r, OpenReport, strict=False) for r in reports.get(row["id"], [])])
                 for row in rows]
        next_cursor = f"{rows[-1]['report_count']}-{rows[-1]['id']}" if more else None
        return ReportQueue(items=items, next_cursor=next_cursor)

    async def log(self, *, limit: int, cursor: str | None) -> ModerationLog:
        if cursor is not None and (not _LOG_CURSOR.fullmatch(cursor) or int(cursor) >= 2**63):
            raise _bad_cursor()
        rows = await self._comments.actions(before_id=int(cursor) if cursor else None, limit=limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        return ModerationLog(items=[msgspec.convert(r, ModerationAction, strict=False) for r in rows],
                             next_cursor=str(rows[-1]["id"]) if more else None)

    # -- comments -----------------------------------------------------------------------

    async def hide(self, *, actor_id: int, comment_id: int, reason: str) -> CommentPublic:
        """409 ``already_hidden``, ``comment_deleted``."""
        return await self._change(actor_id, comment_id, reason, action="hide", allowed={"visible"},
                                  values={"status": "hidden", "hidden_reason": reason}, delta=-1)

    async def restore(self, *, actor_id: int, comment_id: int, reason: str) -> CommentPublic:
        """409 ``not_hidden``."""
        return await self._change(actor_id, comment_id, reason, action="restore", allowed={"hidden"},
                                  values={"status": "visible", "hidden_reason": None}, delta=1)

    async def dismiss(self, *, actor_id: int, comment_id: int, reason: str) -> CommentPublic:
        """The reports were unfounded: they are resolved, the comment stays. 409 ``no_open_reports``."""
        return await self._change(actor_id, comment_id, reason, action="dismiss_reports",
                                  allowed={"visible", "hidden"}, values={}, delta=0)

    async def _change(self, actor_id: int, comment_id: int, reason: str, *, action: str, allowed: set[str],
                      values: dict[str, Any], delta: int) -> CommentPublic:
        now = self.clock()
        async with self._engine.begin() as conn:
            row = await CommentRepository.locked(conn, comment_id)
            if row is None:
                raise NotFound(f"Comment {comment_id} not found", details={"id": comment_id})
            if row["status"] not in allowed:
                code = {"deleted": "comment_deleted", "hidden": "already_hidden"}.get(row["status"], "not_hidden")
                raise Conflict(f"The comment is {row['status']}", code=code, details={"status": row["status"]})
            if action == "dismiss_reports" and not row["report_count"]:
                raise Conflict("The comment has no open reports", code="no_open_reports")
            if values:
                await CommentRepository.change(conn, comment_id=comment_id, from_statuses=(row["status"],), **values)
            await CommentRepository.add_visible(conn, movie_id=row["movie_id"], delta=delta)
            await CommentRepository.resolve_reports(conn, comment_id=comment_id, now=now)
            await CommentRepository.log(conn, actor_id=actor_id, action=action, target_type="comment",
                                        target_id=comment_id, reason=reason, now=now)
        await self._invalidations.publish(comments_key(row["movie_id"]))
        stored = await self._comments.get(comment_id)
        assert stored is not None  # comments are never removed, only tombstoned
        return public(stored, _MODERATOR)

    # -- bans ---------------------------------------------------------------------------

    async def ban(self, *, actor_id: int, user_id: int, reason: str, days: int | None = None,
                  until: datetime | None = None) -> Ban:
        """Exactly one of ``days`` or ``until`` (naive UTC, in the future, at most ten years ahead)."""
        now = self.clock()
        if (days is None) == (until is None):
            raise ValidationFailed("Send either days or until", details={"field": "days"})
        end = now + timedelta(days=days) if days is not None else until
        assert end is not None
        if not now < end <= now + MAX_BAN:
            raise ValidationFailed("until must be in the future and at most ten years ahead",
                                   details={"field": "until"})
        if not await self._comments.user_exists(user_id):
            raise NotFound(f"User {user_id} not found", details={"field": "user_id", "id": user_id})
        async with self._engine.begin() as conn:
            await CommentRepository.set_ban(conn, user_id=user_id, until=end, reason=reason, actor_id=actor_id, now=now)
            await CommentRepository.log(conn, actor_id=actor_id, action="ban", target_type="user", target_id=user_id,
                                        reason=reason, now=now)
        return Ban(user_id=user_id, until=end, reason=reason, actor_id=actor_id, created_at=now)

    async def unban(self, *, actor_id: int, user_id: int, reason: str) -> None:
        """NotFound when no ban is in force."""
        now = self.clock()
        async with self._engine.begin() as conn:
            if not await CommentRepository.lift_ban(conn, user_id=user_id, now=now):
                raise NotFound(f"User {user_id} has no ban in force", details={"field": "user_id", "id": user_id})
            await CommentRepository.log(conn, actor_id=actor_id, action="unban", target_type="user",
                                        target_id=user_id, reason=reason, now=now)
