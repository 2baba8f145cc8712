"""User-written Markdown to HTML that is safe to put in a page: rendered, then cleaned.

Two profiles, each rendered with ``markdown-it-py`` and cleaned with ``nh3``
(Rust's ammonia) against a whitelist, whatever the renderer produced:

- **comments** (:func:`render_comment`): a small subset — paragraphs, line breaks,
  emphasis, links, inline code and code blocks. Raw HTML in the source is text,
  headings, images and tables are not rendered. Links keep ``http``, ``https`` and
  ``mailto`` URLs only and get ``rel="nofollow ugc noopener"``.
- **posts** (:func:`render_post`): full CommonMark plus tables, for editors. Images
  only from the media store (``/api/media/<id>``); links get ``rel="noopener"``.

Either way: no ``<script>``, ``<style>``, ``<iframe>``, no event-handler or
``style`` attributes, no ``javascript:``/``data:``/``vbscript:`` URLs.
``tests/security/test_markup.py`` feeds both a list of classic XSS payloads.

>>> render_comment("*hi* <script>alert(1)</script> [x](https://example.org)")
'<p><em>hi</em> &lt;script&gt;alert(1)&lt;/script&gt; <a href="https://example.org" rel="nofollow ugc noopener">x</a></p>'
"""

from __future__ import annotations

import re

import nh3
from markdown_it import MarkdownIt

MEDIA_IMAGE = re.compile(r"^/api/media/[0-9]{1,18}$")
CODE_LANGUAGE = re.compile(r"^language-[A-Za-z0-9_+-]{1,30}$")

_COMMENT_TAGS = {"p", "br", "em", "strong", "a", "code", "pre"}
_POST_TAGS = _COMMENT_TAGS | {
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "blockquote", "ul", "ol", "li", "del", "s",
    "table", "thead", "tbody", "tr", "th", "td", "img",
}
_SCHEMES = {"http", "https", "mailto"}

# Comments: CommonMark's rules minus what the subset leaves out; raw HTML is not rendered (it stays text).
_comments = (
    MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
    .disable(["heading", "lheading", "image", "table", "hr", "blockquote", "list", "reference", "html_block",
              "html_inline"], ignoreInvalid=True)
)
# Posts: all of CommonMark and tables; raw HTML is rendered and then cleaned like the rest.
_posts = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")


def _post_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        return value if MEDIA_IMAGE.match(value) else None
    if tag == "code" and attribute == "class":
        return value if CODE_LANGUAGE.match(value) else None
    return value


def render_comment(source: str) -> str:
    return nh3.clean(
        _comments.render(source),
        tags=_COMMENT_TAGS,
        attributes={"a": {"href"}},
        url_schemes=_SCHEMES,
        link_rel="nofollow ugc noopener",
    ).strip()


def render_post(source: str) -> str:
    return nh3.clean(
        _posts.render(source),
        tags=_POST_TAGS,
        attributes={"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"},
                    "code": {"class"}},
        url_schemes=_SCHEMES,
        link_rel="noopener",
        attribute_filter=_post_attribute,
    ).strip()
