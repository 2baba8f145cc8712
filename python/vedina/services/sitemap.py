"""The sitemap of the public site: published blog posts, then published movies.

Search engines take at most 50,000 URLs per sitemap (the sitemap protocol), so
with more than ``page_urls`` URLs ``/api/sitemap.xml`` becomes a *sitemap
index* naming ``/api/sitemaps/1.xml``, ``2.xml``...; with fewer it is the one
sitemap itself. Each document is built once per worker and kept (encoded, with
its ETag tag) until a post or a movie changes (``blog:posts``,
``catalog:list``) or for an hour, so a crawler never makes a worker read
100,000 movies per request.

>>> await sitemap.root()      # Document: urlset or sitemapindex
>>> await sitemap.page(2)     # NotFound unless the root is an index with a second page
"""

from __future__ import annotations

import math

from vedina.errors import NotFound
from vedina.services import feeds
from vedina.services.blog import POSTS_KEY
from vedina.services.catalog import LIST_KEY, Document
from vedina.storage.blog import BlogRepository
from vedina.storage.near_cache import NearCache

MAX_URLS = 50_000  # per sitemap, by the protocol
_DEPENDS_ON = (POSTS_KEY, LIST_KEY)


class SitemapService:
    def __init__(self, *, posts: BlogRepository, near: NearCache, base_url: str, page_urls: int = MAX_URLS) -> None:
        self._posts = posts
        self._near = near
        self._base_url = base_url.rstrip("/")
        self._page_urls = max(1, min(page_urls, MAX_URLS))

    async def root(self) -> Document:
        async def load() -> Document:
            posts, movies = await self._counts()
            pages = math.ceil((posts + movies) / self._page_urls)
            if pages <= 1:
                return Document.of(feeds.urlset(await self._urls(0, self._page_urls)))
            return Document.of(feeds.sitemap_index(
                f"{self._base_url}/api/sitemaps/{n}.xml" for n in range(1, pages + 1)))

        return await self._cached("sitemap", load)

    async def page(self, number: int) -> Document:
        """Sitemap ``number`` (from 1) of the index."""
        async def load() -> Document:
            posts, movies = await self._counts()
            pages = math.ceil((posts + movies) / self._page_urls)
            if pages <= 1 or number > pages:
                raise NotFound(f"No sitemap {number}", details={"page": number})
            return Document.of(feeds.urlset(await self._urls((number - 1) * self._page_urls, self._page_urls)))

        return await self._cached(f"sitemap:{number}", load)

    async def _counts(self) -> tuple[int, int]:
        return await self._cached("sitemap:counts", self._posts.sitemap_counts)

    async def _urls(self, start: int, count: int) -> list[tuple[str, object]]:
        """URLs ``start`` to ``start + count`` of the whole list: posts (by id), then movies (by id)."""
        posts, _ = await self._counts()
        urls = []
        if start < posts:
            urls += [(feeds.post_url(self._base_url, slug), modified)
                     for slug, modified in await self._posts.sitemap_posts(offset=start, limit=count)]
        remaining = count - len(urls)
        if remaining > 0:
            offset = max(0, start - posts)
            urls += [(feeds.movie_url(self._base_url, slug), modified)
                     for slug, modified in await self._posts.sitemap_movies(offset=offset, limit=remaining)]
        return urls

    async def _cached(self, key: str, load):
        cached = self._near.peek(key, _DEPENDS_ON)
        return cached if cached is not None else await self._near.get_or_load(key, _DEPENDS_ON, load)
