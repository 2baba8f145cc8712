"""XML documents for machines: the blog's RSS 2.0 and Atom 1.0 feeds, and sitemaps.

Built with :mod:`xml.etree.ElementTree`, never by pasting strings: every title,
URL and body is escaped by the serializer, so a title like ``<b>"Tom" & Jerry</b>``
is text in the feed, not markup. Feeds carry a post's sanitised HTML
(:func:`vedina.security.markup.render_post`) as escaped text, as both formats
expect. Pure functions: the services cache what they return.

Links point at the public site: ``<PUBLIC_BASE_URL>/blog/<slug>`` for a post and
``<PUBLIC_BASE_URL>/movies/<slug>`` for a movie.

>>> rss([{"slug": "hi", "title": "Hi & bye", ...}], base_url="https://vedina.example")
b'<?xml version=\\'1.0\\' encoding=\\'utf-8\\'?>\\n<rss version="2.0" ...'
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

ATOM = "http://www.w3.org/2005/Atom"
SITEMAP = "http://www.sitemaps.org/schemas/sitemap/0.9"
DC = "http://purl.org/dc/elements/1.1/"
FEED_TITLE = "Vedina blog"
FEED_DESCRIPTION = "News and stories from Vedina"
_EPOCH = datetime(1970, 1, 1)
# Characters XML 1.0 cannot hold at all, escaped or not. Post fields refuse them on input; other
# text (an author's display name) is cleaned here, so a feed is always well-formed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

ET.register_namespace("atom", ATOM)
ET.register_namespace("dc", DC)


def post_url(base_url: str, slug: str) -> str:
    return f"{base_url}/blog/{slug}"


def movie_url(base_url: str, slug: str) -> str:
    return f"{base_url}/movies/{slug}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = _NOT_XML.sub("", text)
    return element


def _serialise(root: ET.Element) -> bytes:
    # A default namespace is written as the root's xmlns attribute (ElementTree's default_namespace
    # option refuses unqualified attribute names, which Atom and sitemaps use).
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _newest(posts: list[dict[str, Any]]) -> datetime:
    return max((p["updated_at"] for p in posts), default=_EPOCH)


def rss(posts: list[dict[str, Any]], *, base_url: str) -> bytes:
    """RSS 2.0 (https://www.rssboard.org/rss-specification) with an ``atom:link`` to itself."""
    root = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(root, "channel")
    _text(channel, "title", FEED_TITLE)
    _text(channel, "link", f"{base_url}/blog")
    _text(channel, "description", FEED_DESCRIPTION)
    _text(channel, "lastBuildDate", format_datetime(_utc(_newest(posts))))
    ET.SubElement(channel, f"{{{ATOM}}}link",
                  {"href": f"{base_url}/api/blog/feed.rss", "rel": "self", "type": "application/rss+xml"})
    for post in posts:
        item = ET.SubElement(channel, "item")
        link = post_url(base_url, post["slug"])
        _text(item, "title", post["title"])
        _text(item, "link", link)
        _text(item, "guid", link, isPermaLink="true")
        _text(item, "pubDate", format_datetime(_utc(post["published_at"])))
        if post.get("author_name"):
            _text(item, f"{{{DC}}}creator", post["author_name"])
        for tag in post["tags"]:
            _text(item, "category", tag)
        _text(item, "description", post["body_html"])
    return _serialise(root)


def atom(posts: list[dict[str, Any]], *, base_url: str) -> bytes:
    """Atom 1.0 (RFC 4287): ids are the posts' permanent URLs."""
    root = ET.Element("feed", {"xmlns": ATOM})
    _text(root, "title", FEED_TITLE)
    _text(root, "subtitle", FEED_DESCRIPTION)
    _text(root, "id", f"{base_url}/blog")
    _text(root, "updated", _rfc3339(_newest(posts)))
    ET.SubElement(root, "link", {"href": f"{base_url}/blog", "rel": "alternate", "type": "text/html"})
    ET.SubElement(root, "link",
                  {"href": f"{base_url}/api/blog/feed.atom", "rel": "self", "type": "application/atom+xml"})
    author = ET.SubElement(root, "author")  # the feed's: entries without one inherit it
    _text(author, "name", "Vedina")
    for post in posts:
        entry = ET.SubElement(root, "entry")
        link = post_url(base_url, post["slug"])
        _text(entry, "title", post["title"], type="text")
        _text(entry, "id", link)
        ET.SubElement(entry, "link", {"href": link, "rel": "alternate", "type": "text/html"})
        _text(entry, "published", _rfc3339(post["published_at"]))
        _text(entry, "updated", _rfc3339(post["updated_at"]))
        if post.get("author_name"):
            _text(ET.SubElement(entry, "author"), "name", post["author_name"])
        for term in post["tags"]:
            ET.SubElement(entry, "category", {"term": term})
        if post["excerpt"]:
            _text(entry, "summary", post["excerpt"], type="text")
        _text(entry, "content", post["body_html"], type="html")
    return _serialise(root)


def urlset(urls: Iterable[tuple[str, datetime]]) -> bytes:
    """A sitemap (https://www.sitemaps.org/protocol.html): ``(loc, lastmod)`` pairs, at most 50,000."""
    root = ET.Element("urlset", {"xmlns": SITEMAP})
    for loc, modified in urls:
        url = ET.SubElement(root, "url")
        _text(url, "loc", loc)
        _text(url, "lastmod", _rfc3339(modified))
    return _serialise(root)


def sitemap_index(locations: Iterable[str]) -> bytes:
    """A sitemap index: the sitemaps of a site with more URLs than one sitemap may hold."""
    root = ET.Element("sitemapindex", {"xmlns": SITEMAP})
    for loc in locations:
        _text(ET.SubElement(root, "sitemap"), "loc", loc)
    return _serialise(root)
