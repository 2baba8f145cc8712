"""/api/blog: published posts and their feeds for everyone (from memory, ETag and 304),
writing posts for editors (``blog:write``).

Readers: ``GET /posts`` (newest first, cursor pages, ``tag=``), ``GET /posts/:slug``,
``GET /feed.rss``, ``GET /feed.atom``. Editors: ``POST /posts``, ``PATCH /posts/:id``
(``If-Match`` required: the ETag of ``GET /editor/posts/:id`` or ``"<version>"``; stale
``412``, none ``428``), ``POST /posts/:id/publish``, ``/schedule``, ``/archive`` (``If-Match``
optional), and their own reads of posts in any status under ``/editor/posts``.
"""

from __future__ import annotations

import re

from robyn import Request, SubRouter

from vedina.api.bodies import decode_body
from vedina.api.params import if_match_version, path_int, query_int
from vedina.errors import ValidationFailed
from vedina.http.auth import principal_of, requires
from vedina.http.operation import Cursor, doc, limit
from vedina.http.responses import document_response, json_response
from vedina.services.blog import (
    MAX_PAGE,
    SLUG,
    TAG,
    EditorList,
    PostCreate,
    PostEditor,
    PostList,
    PostPatch,
    PostPublic,
    RevisionList,
    Schedule,
)
from vedina.state import AppState
from vedina.storage.schema import POST_STATUSES

_VERSION = re.compile(r"[0-9]{1,9}")
RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"


def only_params(request: Request, *allowed: str) -> None:
    for name in request.query_params.to_dict():
        if name not in allowed:
            raise ValidationFailed(f"Unknown query parameter {name!r}", details={"field": name[:64]})


def text_param(request: Request, name: str, *, pattern: re.Pattern, max_length: int) -> str | None:
    value = request.query_params.get(name, None)
    if value is not None and (len(value) > max_length or not pattern.fullmatch(value)):
        raise ValidationFailed(f"{name} is not valid", details={"field": name})
    return value



def editor_id_of(request: Request) -> int | None:
    principal = principal_of(request)
    return int(principal.subject) if principal.kind == "user" else None


def post_answer(post: PostEditor, *, status: int = 200):
    return json_response(post, status=status, headers={"etag": f'"{post.version}"'})


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def blog():
        return state.services.blog

    # -- readers ----------------------------------------------------------------------------

    @router.get("/posts", openapi_name="List published posts (newest first, cursor pages, tag filter)")
    @doc(public=True, query={"tag": str, "cursor": Cursor, "limit": limit(MAX_PAGE)}, headers=("If-None-Match",),
         answers={200: PostList, 304: None})
    async def list_posts(request: Request):
        only_params(request, "tag", "cursor", "limit")
        tag = text_param(request, "tag", pattern=TAG, max_length=40)
        cursor = text_param(request, "cursor", pattern=re.compile(r"[A-Za-z0-9_-]+"), max_length=200)
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        return document_response(request, await blog().list_published(tag=tag, cursor=cursor, limit=limit))

    @router.get("/posts/:slug", openapi_name="Get a published post by its slug")
    @doc(public=True, headers=("If-None-Match",), answers={200: PostPublic, 304: None})
    async def get_post(request: Request):
        only_params(request)
        slug = request.path_params.get("slug", "")
        if len(slug) > 120 or not SLUG.fullmatch(slug):
            raise ValidationFailed("slug is not valid", details={"field": "slug"})
        return document_response(request, await blog().get_published(slug=slug))

    @router.get("/feed.rss", openapi_name="RSS 2.0 feed of the newest published posts")
    @doc(public=True, headers=("If-None-Match",), answers={200: RSS, 304: None})
    async def rss_feed(request: Request):
        return document_response(request, await blog().feed(kind="rss"), content_type=RSS)

    @router.get("/feed.atom", openapi_name="Atom 1.0 feed of the newest published posts")
    @doc(public=True, headers=("If-None-Match",), answers={200: ATOM, 304: None})
    async def atom_feed(request: Request):
        return document_response(request, await blog().feed(kind="atom"), content_type=ATOM)

    # -- editors ----------------------------------------------------------------------------

    @router.get("/editor/posts", openapi_name="List posts in any status (last changed first)")
    @doc(query={"status": str, "cursor": Cursor, "limit": limit(MAX_PAGE)}, answers={200: EditorList})
    @requires("blog:write", csrf_tokens=csrf)
    async def editor_list(request: Request):
        only_params(request, "status", "cursor", "limit")
        status = request.query_params.get("status", None)
        if status is not None and status not in POST_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(POST_STATUSES)}", details={"field": "status"})
        cursor = text_param(request, "cursor", pattern=re.compile(r"[A-Za-z0-9_-]+"), max_length=200)
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        return json_response(await blog().editor_list(status=status, cursor=cursor, limit=limit))

    @router.get("/editor/posts/:id", openapi_name="Get a post in any status (with its source and version)")
    @doc(answers={200: PostEditor})
    @requires("blog:write", csrf_tokens=csrf)
    async def editor_get(request: Request):
        return post_answer(await blog().editor_get(path_int(request, "id")))

    @router.get("/editor/posts/:id/revisions", openapi_name="A post's revisions, newest first")
    @doc(query={"cursor": str, "limit": limit(MAX_PAGE)}, answers={200: RevisionList})
    @requires("blog:write", csrf_tokens=csrf)
    async def revisions(request: Request):
        only_params(request, "cursor", "limit")
        cursor = text_param(request, "cursor", pattern=_VERSION, max_length=9)
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        return json_response(await blog().revisions(path_int(request, "id"), limit=limit,
                                                    before_version=None if cursor is None else int(cursor)))

    @router.post("/posts", openapi_name="Write a post (a draft)")
    @doc(body=PostCreate, answers={201: PostEditor}, errors=("409 conflict",))
    @requires("blog:write", csrf_tokens=csrf)
    async def create_post(request: Request):
        body = decode_body(request, PostCreate)
        return post_answer(await blog().create(body, editor_id=editor_id_of(request)), status=201)

    @router.patch("/posts/:id", openapi_name="Edit a post (If-Match required)")
    @doc(body=PostPatch, headers=("If-Match",), required=("If-Match",), answers={200: PostEditor},
         errors=("409 conflict",))
    @requires("blog:write", csrf_tokens=csrf)
    async def update_post(request: Request):
        post_id = path_int(request, "id")
        version = if_match_version(request, required=True, what="post")
        patch = decode_body(request, PostPatch)
        return post_answer(await blog().update(post_id, patch, if_version=version, editor_id=editor_id_of(request)))

    @router.post("/posts/:id/publish", openapi_name="Publish a draft or scheduled post now")
    @doc(headers=("If-Match",), answers={200: PostEditor}, errors=("409 invalid_transition",))
    @requires("blog:write", csrf_tokens=csrf)
    async def publish_post(request: Request):
        post_id, version = path_int(request, "id"), if_match_version(request, required=False, what="post")
        return post_answer(await blog().publish(post_id, if_version=version, editor_id=editor_id_of(request)))

    @router.post("/posts/:id/schedule", openapi_name="Schedule a post to publish itself at publish_at")
    @doc(body=Schedule, headers=("If-Match",), answers={200: PostEditor}, errors=("409 invalid_transition",))
    @requires("blog:write", csrf_tokens=csrf)
    async def schedule_post(request: Request):
        post_id, version = path_int(request, "id"), if_match_version(request, required=False, what="post")
        body = decode_body(request, Schedule)
        return post_answer(await blog().schedule(post_id, publish_at=body.publish_at, if_version=version,
                                                 editor_id=editor_id_of(request)))

    @router.post("/posts/:id/archive", openapi_name="Archive a post (gone from the list, detail and feeds)")
    @doc(headers=("If-Match",), answers={200: PostEditor}, errors=("409 invalid_transition",))
    @requires("blog:write", csrf_tokens=csrf)
    async def archive_post(request: Request):
        post_id, version = path_int(request, "id"), if_match_version(request, required=False, what="post")
        return post_answer(await blog().archive(post_id, if_version=version, editor_id=editor_id_of(request)))
