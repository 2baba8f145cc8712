"""Blog posts, their tags, related movies and revisions: reads and writes.

SQLAlchemy Core, bound parameters only. Writes take the caller's connection so
that a post, its parts and its revision change in one transaction; every
change of a post's row is a compare-and-set on ``version`` (or, for the
scheduler, on ``status``), so two writers never both win.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.storage.clock import utcnow
from vedina.storage.reading import read
from vedina.storage.rows import all_rows, plain
from vedina.storage.schema import (
    blog_post_movies,
    blog_post_tags,
    blog_posts,
    blog_revisions,
    media_assets,
    movies,
    users,
)

if TYPE_CHECKING:
    from vedina.storage.replicas import Reader


POST_COLUMNS = (
    *(c for c in blog_posts.c),
    users.c.display_name.label("author_name"),
)
_POSTS_WITH_AUTHOR = blog_posts.outerjoin(users, users.c.id == blog_posts.c.author_id)



def shown_movies(now: datetime):
    """Movies anyone may see now: published and inside their availability window (the catalog's rule)."""
    return sa.and_(
        movies.c.status == "published",
        sa.or_(movies.c.available_from.is_(None), movies.c.available_from <= now),
        sa.or_(movies.c.available_until.is_(None), movies.c.available_until > now),
    )

class BlogRepository:
    def __init__(self, engine: AsyncEngine, *, reader: Reader | None = None) -> None:
        self._engine = engine
        self._reader = engine if reader is None else reader  # ADR 0017: a replica for the public reads

    # -- reads -------------------------------------------------------------------------

    async def get(self, *, post_id: int | None = None, slug: str | None = None) -> dict[str, Any] | None:
        """A post (any status) with its tags, all its related movie ids and its author's name."""
        condition = blog_posts.c.id == post_id if post_id is not None else blog_posts.c.slug == slug
        async def fetch(conn: AsyncConnection) -> dict[str, Any] | None:
            row = (await conn.execute(sa.select(*POST_COLUMNS).select_from(_POSTS_WITH_AUTHOR).where(condition))
                   ).mappings().first()
            if row is None:
                return None
            post = plain(row)
            post["tags"] = (await self._tags(conn, [post["id"]])).get(post["id"], [])
            post["movie_ids"] = list((await conn.execute(
                sa.select(blog_post_movies.c.movie_id).where(blog_post_movies.c.post_id == post["id"])
                .order_by(blog_post_movies.c.movie_id))).scalars())
            post["movies"] = [plain(m) for m in (await conn.execute(
                sa.select(movies.c.id, movies.c.slug, movies.c.title)
                .join(blog_post_movies, blog_post_movies.c.movie_id == movies.c.id)
                .where(blog_post_movies.c.post_id == post["id"], shown_movies(utcnow()))
                .order_by(movies.c.id))).mappings()]
            return post

        return await read(self._reader, fetch)

    async def published_page(
        self, *, tag: str | None, after: tuple[datetime, int] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Published posts, newest first (``published_at``, ``id``), after a keyset; ``limit`` rows."""
        return await self._page([blog_posts.c.status == "published"], tag=tag, after=after, limit=limit,
                                order=blog_posts.c.published_at)

    async def editor_page(
        self, *, status: str | None, after: tuple[datetime, int] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Posts of any (or one) status, last changed first (``updated_at``, ``id``)."""
        condition = [] if status is None else [blog_posts.c.status == status]
        return await self._page(condition, tag=None, after=after, limit=limit, order=blog_posts.c.updated_at)

    async def _page(self, condition: list, *, tag: str | None, after: tuple[datetime, int] | None, limit: int,
                    order: sa.Column) -> list[dict[str, Any]]:
        query = sa.select(*POST_COLUMNS).select_from(_POSTS_WITH_AUTHOR).where(*condition)
        if tag is not None:
            query = query.where(blog_posts.c.id.in_(
                sa.select(blog_post_tags.c.post_id).where(blog_post_tags.c.tag == tag)))
        if after is not None:
            moment, last_id = after
            query = query.where(sa.or_(order < moment, sa.and_(order == moment, blog_posts.c.id < last_id)))
        query = query.order_by(order.desc(), blog_posts.c.id.desc()).limit(limit)
        async def fetch(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = await all_rows(conn, query)
            tags = await self._tags(conn, [r["id"] for r in rows])
            for row in rows:
                row["tags"] = tags.get(row["id"], [])
            return rows

        return await read(self._reader, fetch)

    @staticmethod
    async def _tags(conn: AsyncConnection, post_ids: list[int]) -> dict[int, list[str]]:
        if not post_ids:
            return {}
        found: dict[int, list[str]] = {}
        rows = await conn.execute(sa.select(blog_post_tags.c.post_id, blog_post_tags.c.tag)
                                  .where(blog_post_tags.c.post_id.in_(post_ids)).order_by(blog_post_tags.c.tag))
        for post_id, tag in rows:
            found.setdefault(post_id, []).append(tag)
        return found

    async def revisions(self, post_id: int, *, before_version: int | None, limit: int) -> list[dict[str, Any]]:
        query = sa.select(*(c for c in blog_revisions.c if c.name != "post_id")).where(
            blog_revisions.c.post_id == post_id)
        if before_version is not None:
            query = query.where(blog_revisions.c.version < before_version)
        query = query.order_by(blog_revisions.c.version.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [plain(r) for r in (await conn.execute(query)).mappings()]

    async def sitemap_counts(self) -> tuple[int, int]:
        """(published posts, published movies)."""
        async with self._engine.connect() as conn:
            posts = (await conn.execute(sa.select(sa.func.count()).select_from(blog_posts)
                                        .where(blog_posts.c.status == "published"))).scalar_one()
            films = (await conn.execute(sa.select(sa.func.count()).select_from(movies)
                                        .where(shown_movies(utcnow())))).scalar_one()
        return posts, films

    async def sitemap_posts(self, *, offset: int, limit: int) -> list[tuple[str, datetime]]:
        query = (sa.select(blog_posts.c.slug, blog_posts.c.updated_at).where(blog_posts.c.status == "published")
                 .order_by(blog_posts.c.id).offset(offset).limit(limit))
        async with self._engine.connect() as conn:
            return [(slug, updated) for slug, updated in await conn.execute(query)]

    async def sitemap_movies(self, *, offset: int, limit: int) -> list[tuple[str, datetime]]:
        query = (sa.select(movies.c.slug, movies.c.updated_at).where(shown_movies(utcnow()))
                 .order_by(movies.c.id).offset(offset).limit(limit))
        async with self._engine.connect() as conn:
            return [(slug, updated) for slug, updated in await conn.execute(query)]

    # -- checks (in the writer's transaction) --------------------------------------------

    @staticmethod
    async def slug_taken(conn: AsyncConnection, slug: str) -> bool:
        return (await conn.execute(sa.select(blog_posts.c.id).where(blog_posts.c.slug == slug))).first() is not None

    @staticmethod
    async def image_asset_exists(conn: AsyncConnection, asset_id: int) -> bool:
        query = sa.select(media_assets.c.content_type).where(media_assets.c.id == asset_id)
        content_type = (await conn.execute(query)).scalar_one_or_none()
        return content_type is not None and content_type.startswith("image/")

    @staticmethod
    async def missing_movies(conn: AsyncConnection, movie_ids: list[int]) -> list[int]:
        if not movie_ids:
            return []
        found = set((await conn.execute(sa.select(movies.c.id).where(
            movies.c.id.in_(movie_ids), movies.c.status != "deleted"))).scalars())
        return [m for m in movie_ids if m not in found]

    # -- writes ----------------------------------------------------------------------------

    @staticmethod
    async def insert(conn: AsyncConnection, **values: Any) -> int:
        now = utcnow()
        result = await conn.execute(sa.insert(blog_posts).values(version=1, created_at=now, updated_at=now, **values))
        return int(result.inserted_primary_key[0])

    @staticmethod
    async def lock(conn: AsyncConnection, post_id: int) -> dict[str, Any] | None:
        """The post's row, locked for update (MariaDB; SQLite writers are serialised anyway)."""
        row = (await conn.execute(sa.select(blog_posts).where(blog_posts.c.id == post_id).with_for_update())
               ).mappings().first()
        return None if row is None else plain(row)

    @staticmethod
    async def update_versioned(conn: AsyncConnection, post_id: int, *, version: int, **values: Any) -> bool:
        """Apply ``values`` if the post is at ``version``; False when it is not (someone else wrote)."""
        statement = sa.update(blog_posts).where(blog_posts.c.id == post_id, blog_posts.c.version == version).values(
            version=version + 1, updated_at=utcnow(), **values)
        return (await conn.execute(statement)).rowcount == 1

    @staticmethod
    async def set_tags(conn: AsyncConnection, post_id: int, tags: list[str]) -> None:
        await conn.execute(sa.delete(blog_post_tags).where(blog_post_tags.c.post_id == post_id))
        if tags:
            await conn.execute(sa.insert(blog_post_tags), [{"post_id": post_id, "tag": t} for t in tags])

    @staticmethod
    async def set_movies(conn: AsyncConnection, post_id: int, movie_ids: list[int]) -> None:
        await conn.execute(sa.delete(blog_post_movies).where(blog_post_movies.c.post_id == post_id))
        if movie_ids:
            await conn.execute(sa.insert(blog_post_movies), [{"post_id": post_id, "movie_id": m} for m in movie_ids])

    @staticmethod
    async def add_revision(conn: AsyncConnection, post_id: int, *, version: int, title: str, body_source: str,
                           excerpt: str, editor_id: int | None) -> None:
        await conn.execute(sa.insert(blog_revisions).values(
            post_id=post_id, version=version, title=title, body_source=body_source, excerpt=excerpt,
            editor_id=editor_id, created_at=utcnow()))

    @staticmethod
    async def due(conn: AsyncConnection, now: datetime, *, limit: int) -> list[dict[str, Any]]:
        """Scheduled posts whose time has come, oldest first."""
        query = (sa.select(blog_posts).where(blog_posts.c.status == "scheduled", blog_posts.c.publish_at <= now)
                 .order_by(blog_posts.c.publish_at, blog_posts.c.id).limit(limit))
        return [plain(r) for r in (await conn.execute(query)).mappings()]

    @staticmethod
    async def publish_scheduled(conn: AsyncConnection, post: dict[str, Any]) -> bool:
        """Publish a due post: a compare-and-set on its status, version and time (of two schedulers, one wins)."""
        statement = sa.update(blog_posts).where(
            blog_posts.c.id == post["id"], blog_posts.c.status == "scheduled",
            blog_posts.c.version == post["version"], blog_posts.c.publish_at == post["publish_at"],
        ).values(status="published", published_at=post["publish_at"], version=post["version"] + 1,
                 updated_at=utcnow())
        return (await conn.execute(statement)).rowcount == 1
