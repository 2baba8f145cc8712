"""The blog: editors write posts, readers get the published ones (JSON, RSS, Atom) from memory.

A post moves through ``draft -> scheduled -> published -> archived``
(:data:`TRANSITIONS`: publishing or scheduling a draft or a scheduled post,
archiving any post not archived yet; anything else is ``409``). Every save
(create, edit, transition, the scheduler's publication) is one compare-and-set
on ``blog_posts.version`` and writes a ``blog_revisions`` row carrying the
version it made, in the same transaction, so revision ``n`` is what version
``n`` held. An edit names the version it was made from (``If-Match``): a stale
one is ``412``, never a silent overwrite.

Scheduled posts publish themselves: :meth:`BlogService.publish_due` (the
periodic task ``blog.publish_due``) publishes every scheduled post whose
``publish_at`` has passed on :attr:`BlogService.clock`, each with a
compare-and-set on its status and version, so two schedulers (or a scheduler
and an editor) never publish one twice; ``published_at`` is the time it was
scheduled for.

Readers' answers (pages, details, feeds) are kept encoded in a per-worker
:class:`NearCache`, all depending on :data:`POSTS_KEY`, which every write
publishes after its commit (ADR 0008).

    >>> post = await blog.create(PostCreate(title="Hello", body="*Hi*"), editor_id=7)
    >>> await blog.schedule(post.id, publish_at=tomorrow, if_version=post.version, editor_id=7)
    >>> await blog.publish_due()      # tomorrow: 1
"""

from __future__ import annotations

import base64
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from vedina.security.markup import render_post
from vedina.services import feeds
from vedina.services.catalog import Document
from vedina.storage.blog import BlogRepository
from vedina.storage.clock import utcnow
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache

POSTS_KEY = "blog:posts"
MAX_PAGE = 50
FEED_ENTRIES = 20
MAX_SCHEDULE_AHEAD = timedelta(days=3660)
# Transition -> the statuses it may start from.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "publish": ("draft", "scheduled"),
    "schedule": ("draft", "scheduled"),
    "archive": ("draft", "scheduled", "published"),
}

# Text that is valid XML 1.0 (feeds carry it) and printable: no control characters but tab and newlines.
_XML_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]*$"
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f\ufffe\uffff]+\Z")]
Slug = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")]
Body = Annotated[str, msgspec.Meta(max_length=100_000, pattern=_XML_TEXT)]
Excerpt = Annotated[str, msgspec.Meta(max_length=500, pattern=_XML_TEXT)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=10)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**62)]
MovieIds = Annotated[list[Id], msgspec.Meta(max_length=20)]
Moment = Annotated[datetime, msgspec.Meta(tz=True)]
UNSET = msgspec.UNSET
Unset = msgspec.UnsetType

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
TAG = SLUG


# -- bodies ---------------------------------------------------------------------------------


class PostCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    title: Title
    slug: Slug | None = None  # made from the title when absent (with -2, -3... if taken)
    body: Body = ""  # Markdown (CommonMark and tables)
    excerpt: Excerpt = ""
    cover_asset_id: Id | None = None  # an image in the media store
    tags: Tags = []
    movie_ids: MovieIds = []


class PostPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields to change; absent fields stay as they are."""

    title: Title | Unset = UNSET
    slug: Slug | Unset = UNSET
    body: Body | Unset = UNSET
    excerpt: Excerpt | Unset = UNSET
    cover_asset_id: Id | None | Unset = UNSET
    tags: Tags | Unset = UNSET
    movie_ids: MovieIds | Unset = UNSET


class Schedule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    publish_at: Moment  # with its offset: 2026-12-24T18:00:00Z


# -- answers --------------------------------------------------------------------------------


class Author(msgspec.Struct, kw_only=True):
    id: int
    display_name: str


class RelatedMovie(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    title: str


class PostSummary(msgspec.Struct, kw_only=True):
    id: int
    slug: str
    title: str
    excerpt: str
    cover_url: str | None
    tags: list[str]
    author: Author | None
    published_at: datetime | None
    updated_at: datetime


class PostPublic(PostSummary, kw_only=True):
    body_html: str
    movies: list[RelatedMovie]  # the published ones


class PostList(msgspec.Struct, kw_only=True):
    items: list[PostSummary]
    next_cursor: str | None
    limit: int


class PostEditor(PostPublic, kw_only=True):
    body_source: str
    status: str
    publish_at: datetime | None
    cover_asset_id: int | None
    movie_ids: list[int]  # every related movie, published or not
    version: int
    created_at: datetime


class EditorSummary(PostSummary, kw_only=True):
    status: str
    publish_at: datetime | None
    version: int


class EditorList(msgspec.Struct, kw_only=True):
    items: list[EditorSummary]
    next_cursor: str | None
    limit: int


class Revision(msgspec.Struct, kw_only=True):
    id: int
    version: int
    title: str
    body_source: str
    excerpt: str
    editor_id: int | None
    created_at: datetime


class RevisionList(msgspec.Struct, kw_only=True):
    items: list[Revision]
    next_cursor: str | None
    limit: int


_encode = msgspec.json.Encoder().encode


def _answer(row: dict[str, Any], cls: type) -> Any:
    author = None if row["author_id"] is None else {"id": row["author_id"], "display_name": row["author_name"] or ""}
    cover = None if row["cover_asset_id"] is None else f"/api/media/{row['cover_asset_id']}"
    return msgspec.convert({**row, "author": author, "cover_url": cover}, cls, strict=False)


# -- cursors: opaque to clients, validated like any input --------------------------------------


def encode_cursor(rows: list[dict[str, Any]], limit: int, order: str) -> str | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    state = [order, last[order].isoformat(), last["id"]]
    return base64.urlsafe_b64encode(msgspec.json.encode(state)).rstrip(b"=").decode()


def decode_cursor(cursor: str, order: str) -> tuple[datetime, int]:
    bad = ValidationFailed("cursor is not one this listing made", details={"field": "cursor"})
    if len(cursor) > 200:
        raise bad
    try:
        state = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(state, list) or len(state) != 3 or state[0] != order:
            raise bad
        moment, last_id = datetime.fromisoformat(state[1]), state[2]
    except (ValueError, TypeError, msgspec.DecodeError):
        raise bad from None
    if not isinstance(last_id, int) or isinstance(last_id, bool) or not 0 < last_id < 2**63 or moment.tzinfo:
        raise bad
    return moment, last_id


_SLUG_ATTEMPTS = 4


def slug_of(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title).strip("-")[:100].strip("-") or "post"


def naive_utc(value: datetime) -> datetime:
    """Stored datetimes are naive UTC at second precision."""
    if value.tzinfo is not None:
        try:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # an offset that leaves the calendar (year 1 or 9999)
            raise ValidationFailed("The time is out of range", details={"field": "publish_at"}) from None
    return value.replace(microsecond=0)


class BlogService:
    def __init__(self, *, engine: AsyncEngine, posts: BlogRepository, invalidations: Invalidations,
                 near: NearCache, base_url: str, clock: Callable[[], datetime] = utcnow) -> None:
        self._engine = engine
        self._posts = posts
        self._invalidations = invalidations
        self._near = near
        self._base_url = base_url.rstrip("/")
        self.clock = clock  # naive UTC; tests set their own

    # -- readers (published posts, from memory) ------------------------------------------------

    async def list_published(self, *, tag: str | None, cursor: str | None, limit: int) -> Document:
        async def load() -> Document:
            after = decode_cursor(cursor, "published_at") if cursor else None
            rows = await self._posts.published_page(tag=tag, after=after, limit=limit + 1)
            items = [_answer(r, PostSummary) for r in rows[:limit]]
            return Document.of(_encode(PostList(items=items, next_cursor=encode_cursor(rows, limit, "published_at"),
                                                limit=limit)))

        return await self._cached(f"list:{tag}:{cursor}:{limit}", load)

    async def get_published(self, *, slug: str) -> Document:
        async def load() -> Document:
            row = await self._posts.get(slug=slug)
            if row is None or row["status"] != "published":
                raise NotFound(f"Post {slug!r} not found", details={"slug": slug})
            return Document.of(_encode(_answer(row, PostPublic)))

        # Related movies are listed while published: their changes (catalog:list) count too.
        return await self._cached(f"post:{slug}", load, extra=("catalog:list",))

    async def feed(self, *, kind: str) -> Document:
        """The newest published posts as RSS 2.0 (``rss``) or Atom 1.0 (``atom``)."""
        async def load() -> Document:
            rows = await self._posts.published_page(tag=None, after=None, limit=FEED_ENTRIES)
            render = feeds.rss if kind == "rss" else feeds.atom
            return Document.of(render(rows, base_url=self._base_url))

        return await self._cached(f"feed:{kind}", load)

    async def _cached(self, key: str, load, *, extra: tuple[str, ...] = ()) -> Document:
        depends_on = (POSTS_KEY, *extra)
        cached = self._near.peek(key, depends_on)
        return cached if cached is not None else await self._near.get_or_load(key, depends_on, load)

    # -- editors ---------------------------------------------------------------------------------

    async def editor_list(self, *, status: str | None, cursor: str | None, limit: int) -> EditorList:
        after = decode_cursor(cursor, "updated_at") if cursor else None
        rows = await self._posts.editor_page(status=status, after=after, limit=limit + 1)
        return EditorList(items=[_answer(r, EditorSummary) for r in rows[:limit]],
                          next_cursor=encode_cursor(rows, limit, "updated_at"), limit=limit)

    async def editor_get(self, post_id: int) -> PostEditor:
        row = await self._posts.get(post_id=post_id)
        if row is None:
            raise NotFound(f"Post {post_id} not found", details={"id": post_id})
        return _answer(row, PostEditor)

    async def revisions(self, post_id: int, *, before_version: int | None, limit: int) -> RevisionList:
        await self.editor_get(post_id)  # 404 for no such post
        rows = await self._posts.revisions(post_id, before_version=before_version, limit=limit + 1)
        following = str(rows[limit - 1]["version"]) if len(rows) > limit else None
        return RevisionList(items=[msgspec.convert(r, Revision) for r in rows[:limit]], next_cursor=following,
                            limit=limit)

    async def create(self, body: PostCreate, *, editor_id: int | None) -> PostEditor:
        html = render_post(body.body)
        for attempt in range(_SLUG_ATTEMPTS):
            try:
                async with self._engine.begin() as conn:
                    await self._check_parts(conn, cover_asset_id=body.cover_asset_id, movie_ids=body.movie_ids)
                    slug = body.slug
                    if slug is None:
                        slug = await self._free_slug(conn, slug_of(body.title), contended=attempt >= 2)
                    post_id = await self._posts.insert(
                        conn, slug=slug, title=body.title, body_source=body.body, body_html=html,
                        excerpt=body.excerpt, cover_asset_id=body.cover_asset_id, status="draft", author_id=editor_id,
                    )
                    await self._posts.set_tags(conn, post_id, list(dict.fromkeys(body.tags)))
                    await self._posts.set_movies(conn, post_id, list(dict.fromkeys(body.movie_ids)))
                    await self._posts.add_revision(conn, post_id, version=1, title=body.title, body_source=body.body,
                                                   excerpt=body.excerpt, editor_id=editor_id)
                break
            except IntegrityError:
                # A slug the editor chose is theirs to change; a generated one lost a race with a
                # post of the same title: the next free one is taken (n racers need n tries for
                # the numbered ones, so a contended third try adds a random suffix instead).
                if body.slug is not None or attempt == _SLUG_ATTEMPTS - 1:
                    raise Conflict("A post with this slug exists",
                                   details={"field": "slug", "slug": body.slug}) from None
        await self._changed()
        return await self.editor_get(post_id)

    async def update(self, post_id: int, patch: PostPatch, *, if_version: int, editor_id: int | None) -> PostEditor:
        values = {name: getattr(patch, name) for name in ("title", "slug", "excerpt", "cover_asset_id")
                  if getattr(patch, name) is not UNSET}
        if patch.body is not UNSET:
            values.update(body_source=patch.body, body_html=render_post(patch.body))
        try:
            async with self._engine.begin() as conn:
                current = await self._current(conn, post_id, if_version)
                await self._check_parts(conn, cover_asset_id=values.get("cover_asset_id"),
                                        movie_ids=[] if patch.movie_ids is UNSET else patch.movie_ids)
                await self._save(conn, current, values, editor_id=editor_id)
                if patch.tags is not UNSET:
                    await self._posts.set_tags(conn, post_id, list(dict.fromkeys(patch.tags)))
                if patch.movie_ids is not UNSET:
                    await self._posts.set_movies(conn, post_id, list(dict.fromkeys(patch.movie_ids)))
        except IntegrityError:
            raise Conflict("A post with this slug exists", details={"field": "slug"}) from None
        await self._changed()
        return await self.editor_get(post_id)

    async def publish(self, post_id: int, *, if_version: int | None, editor_id: int | None) -> PostEditor:
        return await self._transition(post_id, "publish", if_version=if_version, editor_id=editor_id,
                                      status="published", publish_at=None, published_at=self.clock())

    async def schedule(self, post_id: int, *, publish_at: datetime, if_version: int | None,
                       editor_id: int | None) -> PostEditor:
        when, now = naive_utc(publish_at), self.clock()
        if when <= now or when > now + MAX_SCHEDULE_AHEAD:
            raise ValidationFailed("publish_at must be in the future (within ten years)",
                                   details={"field": "publish_at"})
        return await self._transition(post_id, "schedule", if_version=if_version, editor_id=editor_id,
                                      status="scheduled", publish_at=when)

    async def archive(self, post_id: int, *, if_version: int | None, editor_id: int | None) -> PostEditor:
        return await self._transition(post_id, "archive", if_version=if_version, editor_id=editor_id,
                                      status="archived", publish_at=None)

    async def publish_due(self, *, now: datetime | None = None) -> int:
        """Publish the scheduled posts whose time has come (at ``now``, default the clock); returns how many."""
        now = naive_utc(now) if now is not None else self.clock()
        published = 0
        while True:
            batch = 0
            async with self._engine.begin() as conn:
                due = await self._posts.due(conn, now, limit=100)
                for post in due:
                    if await self._posts.publish_scheduled(conn, post):  # else another scheduler or an editor won
                        await self._posts.add_revision(
                            conn, post["id"], version=post["version"] + 1, title=post["title"],
                            body_source=post["body_source"], excerpt=post["excerpt"], editor_id=None)
                        batch += 1
            published += batch
            if len(due) < 100 or not batch:  # a post an editor just changed waits for the next tick
                break
        if published:
            await self._changed()
        return published

    # -- writing ---------------------------------------------------------------------------------

    async def _transition(self, post_id: int, action: str, *, if_version: int | None, editor_id: int | None,
                          **values: Any) -> PostEditor:
        async with self._engine.begin() as conn:
            current = await self._current(conn, post_id, if_version)
            if current["status"] not in TRANSITIONS[action]:
                raise Conflict(f"A {current['status']} post cannot be {action}d here",
                               details={"status": current["status"], "action": action}, code="invalid_transition")
            if action == "publish":
                values["published_at"] = current["published_at"] or values["published_at"]
            await self._save(conn, current, values, editor_id=editor_id)
        await self._changed()
        return await self.editor_get(post_id)

    async def _current(self, conn, post_id: int, if_version: int | None) -> dict[str, Any]:
        current = await self._posts.lock(conn, post_id)
        if current is None:
            raise NotFound(f"Post {post_id} not found", details={"id": post_id})
        if if_version is not None and current["version"] != if_version:
            raise PreconditionFailed(f"Post {post_id} is at version {current['version']}, not {if_version}",
                                     details={"id": post_id, "version": current["version"]})
        return current

    async def _save(self, conn, current: dict[str, Any], values: dict[str, Any], *, editor_id: int | None) -> None:
        """One compare-and-set on the version read (locked) and the revision it makes."""
        version = current["version"]
        if not await self._posts.update_versioned(conn, current["id"], version=version, **values):
            raise PreconditionFailed(f"Post {current['id']} changed meanwhile", details={"id": current["id"]})
        merged = {**current, **values}
        await self._posts.add_revision(conn, current["id"], version=version + 1, title=merged["title"],
                                       body_source=merged["body_source"], excerpt=merged["excerpt"],
                                       editor_id=editor_id)

    async def _check_parts(self, conn, *, cover_asset_id: int | None, movie_ids: list[int]) -> None:
        if cover_asset_id is not None and not await self._posts.image_asset_exists(conn, cover_asset_id):
            raise ValidationFailed(f"No image {cover_asset_id} in the media store",
                                   details={"field": "cover_asset_id", "value": cover_asset_id})
        missing = await self._posts.missing_movies(conn, list(dict.fromkeys(movie_ids)))
        if missing:
            raise ValidationFailed(f"Unknown movie {missing[0]}", details={"field": "movie_ids", "value": missing[0]})

    async def _free_slug(self, conn, base: str, *, contended: bool = False) -> str:
        if contended:
            return f"{base[:110]}-{secrets.token_hex(3)}"
        for n in range(1, 50):
            slug = base if n == 1 else f"{base[:110]}-{n}"
            if not await self._posts.slug_taken(conn, slug):
                return slug
        raise Conflict("No free slug for this title: send one", details={"field": "slug"})

    async def _changed(self) -> None:
        await self._invalidations.publish(POSTS_KEY)
