"""Comments on movies and their moderation (registered under /api).

    GET    /api/movies/:id/comments         threads, newest or oldest first     public (X-Profile-Id: its limit)
    POST   /api/movies/:id/comments         post or reply, as the profile       account:self
    GET    /api/comments/:id                one comment                         public
    PATCH  /api/comments/:id                edit one's own (15 minutes)         account:self
    DELETE /api/comments/:id                delete one's own (a tombstone)      account:self
    POST   /api/comments/:id/reports        report one                          account:self
    GET    /api/comments/reported           the moderation queue                comments:moderate
    POST   /api/comments/:id/hide           hide, with a reason                 comments:moderate
    POST   /api/comments/:id/restore        restore, with a reason              comments:moderate
    POST   /api/comments/:id/dismiss        dismiss its reports, with a reason  comments:moderate
    POST   /api/comments/bans               ban a user from commenting          comments:moderate
    DELETE /api/comments/bans/:user_id      lift a ban                          comments:moderate
    GET    /api/comments/moderation-log     every moderation action             moderation:read (admins)
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec
from robyn import Request, SubRouter

from vedina.api.audience import profile_id_of
from vedina.api.bodies import decode_body, no_content
from vedina.api.params import path_int, query_int
from vedina.api.viewer import profile_of
from vedina.errors import ValidationFailed
from vedina.http.auth import account_id_of, requires
from vedina.http.context import context_of
from vedina.http.operation import Cursor, doc, limit
from vedina.http.responses import json_response
from vedina.services.comment_moderation import MAX_BAN, Ban, ModerationLog, ReportQueue
from vedina.services.comments import MAX_BODY, MAX_PAGE, CommentPage, CommentPublic, Reader, Report
from vedina.state import AppState

BodyText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_BODY)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=r"\S")]
Note = Annotated[str, msgspec.Meta(max_length=500)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class CommentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    body: BodyText
    spoiler: bool = False
    parent_id: Id | None = None


class CommentUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    body: BodyText | None = None
    spoiler: bool | None = None


class ReportCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Literal["spam", "abuse", "spoiler", "off_topic", "other"]
    note: Note = ""


class ModerationReason(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    reason: Reason


class BanCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: Id
    reason: Reason
    days: Annotated[int, msgspec.Meta(ge=1, le=MAX_BAN.days)] | None = None
    until: datetime | None = None  # without an offset: UTC


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # an offset that leaves the calendar (year 1 or 9999)
            raise ValidationFailed("until is out of range", details={"field": "until"}) from None
    return moment.replace(microsecond=0)


def register(router: SubRouter, state: AppState) -> None:
    def csrf():
        return state.services.csrf

    def comments():
        return state.services.comments

    def moderation():
        return state.services.moderation

    async def reader_of(request: Request) -> Reader:
        """Anonymous (and API keys) read as nobody; users as their profile (X-Profile-Id, else the main one)."""
        principal = context_of(request).principal
        if principal is None or principal.kind != "user":
            return Reader()
        profile = await state.services.profiles.current(user_id=int(principal.subject),
                                                        profile_id=profile_id_of(request))
        return Reader.of(profile, moderator="comments:moderate" in principal.permissions)

    def moderator_id(request: Request) -> int:
        return account_id_of(request, what="moderation rights")

    # -- threads ------------------------------------------------------------------------

    @router.get("/movies/:id/comments", openapi_name="A movie's comment threads")
    @doc(public=True, query={"order": Literal["newest", "oldest"], "limit": limit(MAX_PAGE), "cursor": Cursor},
         headers=("X-Profile-Id",), answers={200: CommentPage})
    async def list_comments(request: Request):
        """Top-level comments (``order`` newest|oldest, ``limit`` 1..50, ``cursor``: a ``next_cursor``), each with
        its first 100 replies oldest first (replies to replies included, with their ``parent_id``) and
        ``reply_count``; ``count`` is the movie's visible comments. Hidden comments come without a body
        (their author and moderators see it, with the reason), deleted ones as tombstones. 404 for a movie
        the caller (its profile's age limit) may not see."""
        movie_id = path_int(request, "id")
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        order = request.query_params.get("order", "newest")
        cursor = request.query_params.get("cursor", None)
        page = await comments().threads(movie_id=movie_id, reader=await reader_of(request), order=order,
                                        limit=limit, cursor=cursor)
        return json_response(page)

    @router.post("/movies/:id/comments", openapi_name="Comment on a movie, or reply")
    @doc(body=CommentCreate, headers=("X-Profile-Id",), answers={201: CommentPublic},
         errors=("403 comment_banned", "409 duplicate_comment"))
    @requires("account:self", csrf_tokens=csrf)
    async def post_comment(request: Request):
        """As the ``X-Profile-Id`` profile (else the main one). Body ``{body, spoiler?, parent_id?}``: up to 5000
        characters of Markdown (emphasis, links, code), rendered and cleaned. 409 ``duplicate_comment`` (same
        text on the movie within 10 minutes), 403 ``comment_banned``, 429 past ``RATE_LIMIT_COMMENTS``."""
        movie_id, body = path_int(request, "id"), decode_body(request, CommentCreate)
        comment = await comments().post(profile=await profile_of(request, state), movie_id=movie_id, body=body.body,
                                        spoiler=body.spoiler, parent_id=body.parent_id)
        return json_response(comment, status=201)

    # -- moderation (static paths before /comments/:id) ---------------------------------

    @router.get("/comments/reported", openapi_name="Reported comments (the moderation queue)")
    @doc(query={"limit": limit(MAX_PAGE), "cursor": Cursor}, answers={200: ReportQueue})
    @requires("comments:moderate", csrf_tokens=csrf)
    async def reported_comments(request: Request):
        """Comments with open reports, most reported first, with their reports (``limit`` 1..50, ``cursor``)."""
        limit = query_int(request, "limit", default=20, minimum=1, maximum=MAX_PAGE)
        return json_response(await moderation().queue(limit=limit, cursor=request.query_params.get("cursor", None)))

    @router.get("/comments/moderation-log", openapi_name="The moderation log")
    @doc(query={"limit": limit(100, 50), "cursor": Cursor}, answers={200: ModerationLog})
    @requires("moderation:read", csrf_tokens=csrf)
    async def moderation_log(request: Request):
        """Every moderation action (who, when, why, on what), newest first (``limit`` 1..100, ``cursor``)."""
        limit = query_int(request, "limit", default=50, minimum=1, maximum=100)
        return json_response(await moderation().log(limit=limit, cursor=request.query_params.get("cursor", None)))

    @router.post("/comments/bans", openapi_name="Ban a user from commenting")
    @doc(body=BanCreate, answers={201: Ban})
    @requires("comments:moderate", csrf_tokens=csrf)
    async def ban_user(request: Request):
        """Body ``{user_id, reason, days | until}``; a new ban replaces the user's previous one."""
        body = decode_body(request, BanCreate)
        ban = await moderation().ban(actor_id=moderator_id(request), user_id=body.user_id, reason=body.reason,
                                     days=body.days, until=_utc(body.until))
        return json_response(ban, status=201)

    @router.delete("/comments/bans/:user_id", openapi_name="Lift a ban from commenting")
    @doc(query={"reason": Note}, answers={204: None})
    @requires("comments:moderate", csrf_tokens=csrf)
    async def unban_user(request: Request):
        """``reason`` (query, optional) goes to the log. 404 when no ban is in force."""
        user_id = path_int(request, "user_id")
        reason = request.query_params.get("reason", "")
        if len(reason) > 500:
            raise ValidationFailed("reason must be at most 500 characters", details={"field": "reason"})
        await moderation().unban(actor_id=moderator_id(request), user_id=user_id, reason=reason)
        return no_content()

    async def moderate(request: Request, action: str):
        comment_id, body = path_int(request, "id"), decode_body(request, ModerationReason)
        act = getattr(moderation(), action)
        return json_response(await act(actor_id=moderator_id(request), comment_id=comment_id, reason=body.reason))

    @router.post("/comments/:id/hide", openapi_name="Hide a comment")
    @doc(body=ModerationReason, answers={200: CommentPublic}, errors=("409 already_hidden", "409 comment_deleted"))
    @requires("comments:moderate", csrf_tokens=csrf)
    async def hide_comment(request: Request):
        """Body ``{reason}`` (the author sees it). Resolves its reports. 409 ``already_hidden``, ``comment_deleted``."""
        return await moderate(request, "hide")

    @router.post("/comments/:id/restore", openapi_name="Restore a hidden comment")
    @doc(body=ModerationReason, answers={200: CommentPublic}, errors=("409 not_hidden", "409 comment_deleted"))
    @requires("comments:moderate", csrf_tokens=csrf)
    async def restore_comment(request: Request):
        """Body ``{reason}``. 409 ``not_hidden``, ``comment_deleted``."""
        return await moderate(request, "restore")

    @router.post("/comments/:id/dismiss", openapi_name="Dismiss a comment's reports")
    @doc(body=ModerationReason, answers={200: CommentPublic},
         errors=("409 no_open_reports", "409 comment_deleted", "409 not_hidden"))
    @requires("comments:moderate", csrf_tokens=csrf)
    async def dismiss_reports(request: Request):
        """Body ``{reason}``: the reports were unfounded; the comment leaves the queue. 409 ``no_open_reports``."""
        return await moderate(request, "dismiss")

    # -- one comment --------------------------------------------------------------------

    @router.get("/comments/:id", openapi_name="Get a comment")
    @doc(public=True, headers=("X-Profile-Id",), answers={200: CommentPublic})
    async def get_comment(request: Request):
        """404 when its movie is one the caller may not see."""
        comment_id = path_int(request, "id")
        return json_response(await comments().get(comment_id=comment_id, reader=await reader_of(request)))

    @router.patch("/comments/:id", openapi_name="Edit my comment (within 15 minutes)")
    @doc(body=CommentUpdate, headers=("X-Profile-Id",), answers={200: CommentPublic},
         errors=("403 not_author", "409 edit_window_closed", "409 comment_hidden", "409 comment_deleted"))
    @requires("account:self", csrf_tokens=csrf)
    async def edit_comment(request: Request):
        """Body ``{body?, spoiler?}``; sets ``edited_at``. 403 ``not_author`` (moderators hide, they do not edit),
        409 ``edit_window_closed``, ``comment_hidden``, ``comment_deleted``."""
        comment_id, body = path_int(request, "id"), decode_body(request, CommentUpdate)
        comment = await comments().edit(profile=await profile_of(request, state), comment_id=comment_id,
                                        body=body.body, spoiler=body.spoiler)
        return json_response(comment)

    @router.delete("/comments/:id", openapi_name="Delete my comment (a tombstone keeps the thread)")
    @doc(headers=("X-Profile-Id",), answers={204: None}, errors=("403 not_author",))
    @requires("account:self", csrf_tokens=csrf)
    async def delete_comment(request: Request):
        """403 ``not_author``."""
        await comments().delete(profile=await profile_of(request, state), comment_id=path_int(request, "id"))
        return no_content()

    @router.post("/comments/:id/reports", openapi_name="Report a comment")
    @doc(body=ReportCreate, headers=("X-Profile-Id",), answers={201: Report},
         errors=("409 already_reported", "409 own_comment"))
    @requires("account:self", csrf_tokens=csrf)
    async def report_comment(request: Request):
        """Body ``{reason: spam|abuse|spoiler|off_topic|other, note?}``. 409 ``already_reported``, ``own_comment``."""
        comment_id, body = path_int(request, "id"), decode_body(request, ReportCreate)
        report = await comments().report(profile=await profile_of(request, state), comment_id=comment_id,
                                         reason=body.reason, note=body.note)
        return json_response(report, status=201)
