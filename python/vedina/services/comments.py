"""Comments on movies: threads, posting as a profile, edits, tombstones, reports.

Rules, in one place:

- *Where*: only on movies the profile may see (:mod:`vedina.services.visibility`:
  published, inside the window, rated up to its parental limit); any other movie,
  and every comment on it, is ``NotFound``.
- *Threads*: one visible level. A reply names its ``parent_id``; it joins the
  thread of its parent's top-level comment (``root_id``), so a reply to a reply
  is listed with the thread and keeps its parent.
- *Bodies*: a small Markdown subset rendered and cleaned by
  :func:`vedina.security.markup.render_comment`; both the source and the HTML
  are stored and returned. The same account posting the same normalised body
  (case and whitespace ignored) on one movie within ``DUPLICATE_WINDOW`` is
  409 ``duplicate_comment``; posts and edits are charged to the account's budget
  (:mod:`vedina.services.comment_limits`).
- *Authors* (the account and profile that posted) edit within ``EDIT_WINDOW``
  (``edited_at`` set) and delete at any time: a tombstone (status ``deleted``,
  body cleared) keeps the thread's shape. Nobody else edits or deletes; a user
  banned from commenting (:mod:`vedina.services.comment_moderation`) neither
  posts nor edits (403 ``comment_banned``).
- *Who sees what*: a hidden comment is answered with its status and no body,
  except to its author (with the reason) and moderators; tombstones have no body.

First thread pages are cached per worker (:class:`NearCache`) keyed by movie,
order and limit (later pages are read each time, so forged cursors cannot fill
memory), and depend on ``comments:movie:<id>``, published after every
write that changes what a page shows; the page is cached as data and rendered
per reader (the author of a hidden comment sees more than others).

>>> page = await comments.threads(movie_id=7, reader=Reader(), order="newest", limit=20, cursor=None)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Conflict, NotFound, Refused, ValidationFailed
from vedina.security.markup import render_comment
from vedina.services.catalog import CatalogService
from vedina.services.comment_limits import CommentRateLimit
from vedina.services.profiles import Profile
from vedina.services.visibility import Audience
from vedina.storage.clock import utcnow
from vedina.storage.comments import CommentRepository
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache

MAX_BODY = 5000  # characters of source
MAX_HTML = 60_000  # characters of rendered HTML (the column holds 64 KiB)
MAX_PAGE = 50  # threads per page
MAX_REPLIES = 100  # replies listed per thread (``reply_count`` has them all)
EDIT_WINDOW = timedelta(minutes=15)
DUPLICATE_WINDOW = timedelta(minutes=10)
ORDERS = ("newest", "oldest")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CURSOR = re.compile(r"([no])([0-9]{1,18})")


def comments_key(movie_id: int) -> str:
    """The invalidation key of a movie's thread pages."""
    return f"comments:movie:{movie_id}"


# -- answers -----------------------------------------------------------------------


class CommentPublic(msgspec.Struct, kw_only=True):
    id: int
    movie_id: int
    parent_id: int | None
    root_id: int | None
    author_name: str
    mine: bool  # posted by the reader's account and profile
    status: str  # visible | hidden | deleted
    body_source: str | None  # None: hidden (to others) or deleted
    body_html: str | None
    spoiler: bool
    hidden_reason: str | None  # for the author and moderators
    created_at: datetime
    edited_at: datetime | None
    user_id: int | None = None  # moderators only
    report_count: int | None = None  # open reports; moderators only


class CommentThread(CommentPublic, kw_only=True):
    replies: list[CommentPublic]
    reply_count: int


class CommentPage(msgspec.Struct, kw_only=True):
    items: list[CommentThread]
    next_cursor: str | None
    order: str
    limit: int
    count: int  # visible comments on the movie


class Report(msgspec.Struct, kw_only=True):
    id: int
    comment_id: int
    reason: str
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reader:
    """Who reads a comment: anonymous by default."""

    user_id: int | None = None
    profile_id: int | None = None
    max_age_rating: str | None = None
    moderator: bool = False

    @classmethod
    def of(cls, profile: Profile, *, moderator: bool = False) -> Reader:
        return cls(user_id=profile.user_id, profile_id=profile.id, max_age_rating=profile.max_age_rating,
                   moderator=moderator)


def public(row: dict[str, Any], reader: Reader) -> CommentPublic:
    """A stored comment as ``reader`` may see it."""
    mine = reader.user_id == row["user_id"] and reader.profile_id is not None and reader.profile_id == row["profile_id"]
    status = row["status"]
    shows_body = status == "visible" or (status == "hidden" and (mine or reader.moderator))
    return CommentPublic(
        id=row["id"], movie_id=row["movie_id"], parent_id=row["parent_id"], root_id=row["root_id"],
        author_name=row["author_name"], mine=mine, status=status,
        body_source=row["body_source"] if shows_body else None, body_html=row["body_html"] if shows_body else None,
        spoiler=bool(row["spoiler"]),
        hidden_reason=row["hidden_reason"] if status == "hidden" and (mine or reader.moderator) else None,
        created_at=row["created_at"], edited_at=row["edited_at"],
        user_id=row["user_id"] if reader.moderator else None,
        report_count=row["report_count"] if reader.moderator else None,
    )


# -- bodies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Body:
    source: str
    html: str
    digest: str


def prepare(text: str) -> Body:
    """Normalise, check and render a body (ValidationFailed naming ``body``)."""
    source = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if not source:
        raise ValidationFailed("body must not be empty", details={"field": "body"})
    if len(source) > MAX_BODY:
        raise ValidationFailed(f"body must be at most {MAX_BODY} characters", details={"field": "body"})
    if _CONTROL.search(source):
        raise ValidationFailed("body must not contain control characters", details={"field": "body"})
    html = render_comment(source)
    if len(html) > MAX_HTML:
        raise ValidationFailed("body renders too large: use less markup", details={"field": "body"})
    normalised = " ".join(source.casefold().split())
    return Body(source=source, html=html, digest=hashlib.sha256(normalised.encode()).hexdigest())


def parse_cursor(cursor: str | None, order: str) -> int | None:
    if cursor is None:
        return None
    match = _CURSOR.fullmatch(cursor)
    if match is None or match.group(1) != order[0] or int(match.group(2)) >= 2**63:
        raise ValidationFailed("cursor must be a next_cursor of this listing", details={"field": "cursor"})
    return int(match.group(2))


class _Page(msgspec.Struct, frozen=True):
    """A thread page as cached: rows, rendered per reader."""

    threads: list[dict]
    replies: dict[int, list[dict]]
    reply_counts: dict[int, int]
    count: int
    next_cursor: str | None


class CommentService:
    def __init__(
        self, *, engine: AsyncEngine, comments: CommentRepository, catalog: CatalogService,
        invalidations: Invalidations, pages: NearCache, limit: CommentRateLimit,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._comments = comments
        self._catalog = catalog
        self._invalidations = invalidations
        self._pages = pages
        self._limit = limit
        self.clock = clock  # naive UTC, like the columns; tests move it

    # -- reads ------------------------------------------------------------------------

    async def threads(self, *, movie_id: int, reader: Reader, order: str, limit: int, cursor: str | None) -> CommentPage:
        if order not in ORDERS:
            raise ValidationFailed("order must be newest or oldest", details={"field": "order"})
        after_id = parse_cursor(cursor, order)
        await self._visible_movie(reader.max_age_rating, movie_id)
        if after_id is None:  # first pages (the hot ones) from memory; later pages (any cursor) are read
            key, depends_on = f"threads:{movie_id}:{order}:{limit}", (comments_key(movie_id),)
            page = self._pages.peek(key, depends_on)
            if page is None:
                page = await self._pages.get_or_load(key, depends_on,
                                                     lambda: self._load_page(movie_id, order, limit, None))
        else:
            page = await self._load_page(movie_id, order, limit, after_id)
        items = [
            CommentThread(**msgspec.structs.asdict(public(row, reader)),
                          replies=[public(reply, reader) for reply in page.replies.get(row["id"], [])],
                          reply_count=page.reply_counts.get(row["id"], 0))
            for row in page.threads
        ]
        return CommentPage(items=items, next_cursor=page.next_cursor, order=order, limit=limit, count=page.count)

    async def _load_page(self, movie_id: int, order: str, limit: int, after_id: int | None) -> _Page:
        count = await self._comments.visible_count(movie_id)  # first: a post in between only makes it stale-low
        rows = await self._comments.threads(movie_id=movie_id, newest_first=order == "newest", after_id=after_id,
                                            limit=limit + 1)
        more, rows = len(rows) > limit, rows[:limit]
        replies, counts = await self._comments.replies(movie_id=movie_id, root_ids=[r["id"] for r in rows],
                                                       per_root=MAX_REPLIES)
        next_cursor = f"{order[0]}{rows[-1]['id']}" if more else None
        return _Page(threads=rows, replies=replies, reply_counts=counts, count=count, next_cursor=next_cursor)

    async def get(self, *, comment_id: int, reader: Reader) -> CommentPublic:
        return public(await self._readable(comment_id, reader.max_age_rating), reader)

    # -- writes by authors ------------------------------------------------------------

    async def post(self, *, profile: Profile, movie_id: int, body: str, spoiler: bool,
                   parent_id: int | None) -> CommentPublic:
        prepared = prepare(body)
        await self._visible_movie(profile.max_age_rating, movie_id)
        now = self.clock()
        await self._not_banned(profile.user_id, now)
        await self._limit.charge(profile_id=profile.id, user_id=profile.user_id)
        async with self._engine.begin() as conn:
            if not await CommentRepository.lock_movie(conn, movie_id):
                raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
            if await CommentRepository.is_duplicate(conn, movie_id=movie_id, user_id=profile.user_id,
                                                    body_hash=prepared.digest, since=now - DUPLICATE_WINDOW):
                raise Conflict("You posted this comment on this movie already", code="duplicate_comment",
                               details={"field": "body"})
            root_id = None
            if parent_id is not None:
                parent = await CommentRepository.locked(conn, parent_id)
                if parent is None or parent["movie_id"] != movie_id or parent["status"] != "visible":
                    raise NotFound("No such comment to reply to", details={"field": "parent_id", "id": parent_id})
                root_id = parent["root_id"] or parent["id"]
            try:
                comment_id = await CommentRepository.insert(
                    conn, movie_id=movie_id, user_id=profile.user_id, profile_id=profile.id,
                    author_name=profile.name, parent_id=parent_id, root_id=root_id, body_source=prepared.source,
                    body_html=prepared.html, body_hash=prepared.digest, spoiler=spoiler, status="visible",
                    report_count=0, created_at=now,
                )
            except IntegrityError as exc:  # the profile went away meanwhile (its foreign key)
                raise NotFound("No such profile", details={"id": profile.id}) from exc
            await CommentRepository.add_visible(conn, movie_id=movie_id, delta=1)
        await self._invalidations.publish(comments_key(movie_id))
        return public(await self._stored(comment_id), Reader.of(profile))

    async def edit(self, *, profile: Profile, comment_id: int, body: str | None, spoiler: bool | None) -> CommentPublic:
        if body is None and spoiler is None:
            raise ValidationFailed("Send body, spoiler or both", details={"field": "body"})
        prepared = prepare(body) if body is not None else None
        row = await self._own(profile, comment_id)
        now = self.clock()
        if row["status"] != "visible":
            raise Conflict(f"A {row['status']} comment cannot be edited", code=f"comment_{row['status']}")
        if now - row["created_at"] > EDIT_WINDOW:
            raise Conflict("Comments can be edited for 15 minutes after posting", code="edit_window_closed",
                           details={"edit_until": (row["created_at"] + EDIT_WINDOW).isoformat()})
        await self._not_banned(profile.user_id, now)
        await self._limit.charge(profile_id=profile.id, user_id=profile.user_id)  # an edit is a post too
        values: dict[str, Any] = {"edited_at": now}
        if prepared is not None:
            values.update(body_source=prepared.source, body_html=prepared.html, body_hash=prepared.digest)
        if spoiler is not None:
            values["spoiler"] = spoiler
        async with self._engine.begin() as conn:
            if not await CommentRepository.change(conn, comment_id=comment_id, from_statuses=("visible",), **values):
                raise Conflict("The comment was hidden or deleted meanwhile", code="comment_hidden")
        await self._invalidations.publish(comments_key(row["movie_id"]))
        return public(await self._stored(comment_id), Reader.of(profile))

    async def delete(self, *, profile: Profile, comment_id: int) -> None:
        """A tombstone; deleting a deleted comment again changes nothing."""
        row = await self._own(profile, comment_id)
        async with self._engine.begin() as conn:
            locked = await CommentRepository.locked(conn, comment_id)
            if locked is None or locked["status"] == "deleted":
                return
            await CommentRepository.change(conn, comment_id=comment_id, from_statuses=(locked["status"],),
                                           status="deleted", body_source="", body_html="", deleted_at=self.clock())
            if locked["status"] == "visible":
                await CommentRepository.add_visible(conn, movie_id=locked["movie_id"], delta=-1)
            if locked["report_count"]:
                await CommentRepository.resolve_reports(conn, comment_id=comment_id, now=self.clock())
        await self._invalidations.publish(comments_key(row["movie_id"]))

    async def report(self, *, profile: Profile, comment_id: int, reason: str, note: str) -> Report:
        """409 ``own_comment`` for one's own, ``already_reported`` for a second report by the account."""
        row = await self._readable(comment_id, profile.max_age_rating)
        if row["status"] != "visible":
            raise NotFound(f"Comment {comment_id} not found", details={"id": comment_id})
        if row["user_id"] == profile.user_id:
            raise Conflict("You cannot report your own comment", code="own_comment")
        now = self.clock()
        try:
            async with self._engine.begin() as conn:
                report_id = await CommentRepository.add_report(conn, comment_id=comment_id, user_id=profile.user_id,
                                                               reason=reason, note=note, now=now)
        except IntegrityError as exc:
            raise Conflict("You reported this comment already", code="already_reported") from exc
        if report_id is None:  # hidden or deleted meanwhile
            raise NotFound(f"Comment {comment_id} not found", details={"id": comment_id})
        await self._invalidations.publish(comments_key(row["movie_id"]))  # moderators see report counts
        return Report(id=report_id, comment_id=comment_id, reason=reason, note=note, created_at=now)

    # -- helpers ---------------------------------------------------------------------

    async def _visible_movie(self, max_age_rating: str | None, movie_id: int) -> None:
        gate = await self._catalog.gate(movie_id=movie_id)  # NotFound for no such movie
        if gate.refusal(Audience(max_age_rating=max_age_rating)) is not None:
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})

    async def _stored(self, comment_id: int) -> dict[str, Any]:
        row = await self._comments.get(comment_id)
        if row is None:
            raise NotFound(f"Comment {comment_id} not found", details={"id": comment_id})
        return row

    async def _readable(self, comment_id: int, max_age_rating: str | None) -> dict[str, Any]:
        row = await self._stored(comment_id)
        try:
            await self._visible_movie(max_age_rating, row["movie_id"])
        except NotFound:
            raise NotFound(f"Comment {comment_id} not found", details={"id": comment_id}) from None
        return row

    async def _own(self, profile: Profile, comment_id: int) -> dict[str, Any]:
        row = await self._readable(comment_id, profile.max_age_rating)
        if row["user_id"] != profile.user_id or row["profile_id"] != profile.id:
            raise Refused("not_author", "Only the profile that posted a comment may change it",
                          details={"id": comment_id})
        return row

    async def _not_banned(self, user_id: int, now: datetime) -> None:
        ban = await self._comments.active_ban(user_id=user_id, now=now)
        if ban is not None:
            raise Refused("comment_banned", "You are banned from commenting",
                          details={"until": ban["until"].isoformat()})
