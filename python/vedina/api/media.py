"""/api/media/:asset_id: a media asset's bytes, with byte ranges (GET and HEAD).

Streaming players fetch video by ranges: a single range is answered 206 and
sent from the file by the server (the internal sendfile header, see
:mod:`vedina.http.sendfile`); several ranges are a multipart/byteranges body
streamed in 64 KiB reads; conditional requests (If-None-Match,
If-Modified-Since, If-Range) follow RFC 9110 (see :mod:`vedina.http.ranges`).
HEAD answers exactly the headers GET would, as nginx does.

With ``MEDIA_ACCEL_REDIRECT`` set, the app only checks the request (access,
asset, path) and answers ``X-Accel-Redirect``; nginx then serves the file,
ranges and conditionals included.

Access (:func:`authorize`): a signed URL's ``?t=`` token for this asset (checked
in Rust, no I/O; if bound to a playback session, the session must be live:
see :class:`vedina.services.playback.SessionLiveness`), or else an
authenticated user allowed to play the asset's movie who is watching it (a live playback session on
the movie; editors preview without one), so credentials do not get round the stream limit.
Neither: 401 without a token, 403 ``playback_token_invalid`` /
``playback_token_expired`` / ``playback_session_ended`` with one.
"""

from __future__ import annotations

from urllib.parse import quote

from robyn import Headers, Request, Response, StreamingResponse, SubRouter

from vedina.api.audience import audience_of
from vedina.api.params import path_int
from vedina.errors import Forbidden, Refused, Unauthorized
from vedina.http import ranges, sendfile
from vedina.http.context import context_of
from vedina.http.middleware import request_id_of
from vedina.http.operation import doc
from vedina.http.responses import apply_standard_headers
from vedina.security.playback_tokens import QUERY_PARAMETER
from vedina.services.media import MediaFile
from vedina.services.playback import within_plan
from vedina.state import AppState

# Players re-request the same ranges while seeking: let the client cache, but
# not shared caches (access to media will depend on the viewer).
CACHE_CONTROL = "private, max-age=3600"


def register(router: SubRouter, state: AppState) -> None:
    accel_prefix = state.settings.media_accel_redirect

    @router.get("/:asset_id", openapi_name="Stream a media asset (byte ranges)")
    @doc(access="a signed URL (?t=, from GET /api/movies/{id}/playback), or a user with catalog:read watching "
                "the movie (a live playback session; editors preview without one)",
         security=("playbackToken", "bearer", "cookie"), query={"t": str},
         headers=("Range", "If-Range", "If-None-Match", "If-Modified-Since"),
         answers={200: ("video/*", "text/vtt", "image/*"), 206: ("video/*", "multipart/byteranges"), 304: None},
         errors=("401 unauthorized", "403 forbidden", "403 playback_token_invalid", "403 playback_token_expired",
                 "403 playback_session_ended", "403 playback_session_required", "403 plan_required",
                 "403 not_published", "403 outside_window", "403 age_restricted"))
    async def get_media(request: Request):
        asset_id = path_int(request, "asset_id")
        media = await authorize(request, state, asset_id)
        if accel_prefix:
            return accel_redirect(media, accel_prefix)
        return file_response(request, media)


async def authorize(request: Request, state: AppState, asset_id: int) -> MediaFile:
    """The asset's file if the request may stream it (see the module docstring)."""
    services = state.services
    token = request.query_params.get(QUERY_PARAMETER, None)
    principal = context_of(request).principal
    refusal: Refused | None = None
    if token:
        try:
            await services.playback.check_token(token, asset_id=asset_id)
            return await services.media.locate(asset_id=asset_id)
        except Refused as exc:
            refusal = exc  # an authenticated viewer may still be allowed on their own
    if principal is None:
        raise refusal or Unauthorized(
            f"Streaming needs a signed URL (?{QUERY_PARAMETER}=, from GET /api/movies/{{id}}/playback) or credentials",
            details={"parameter": QUERY_PARAMETER}, headers={"www-authenticate": 'Bearer realm="vedina"'},
        )
    if principal.kind != "user" or "catalog:read" not in principal.permissions:
        raise refusal or Forbidden("Streaming needs a user account with catalog:read")
    media = await services.media.locate(asset_id=asset_id)
    user_id = int(principal.subject)
    entitlement = await services.playback.check_viewer(user_id=user_id, audience=await audience_of(request, state),
                                                       movie_id=media.movie_id)
    if not within_plan(media.kind, media.height, entitlement.max_height) and "catalog:write" not in principal.permissions:
        raise refusal or Refused("plan_required", f"This rendition is above the plan's {entitlement.max_height}p",
                                 details={"max_height": entitlement.max_height})
    # Editors preview anything they may see; a viewer streams a movie they are watching, so that
    # credentials cannot get round the concurrent-stream limit.
    if "catalog:write" not in principal.permissions and not await services.playback.watching(
        user_id=user_id, movie_id=media.movie_id
    ):
        raise refusal or Refused(
            "playback_session_required", "Start playback first (GET /api/movies/{id}/playback)",
            details={"movie_id": media.movie_id},
        )
    return media


def _validators(meta: ranges.FileMeta) -> Headers:
    headers = Headers({})
    headers.set("accept-ranges", "bytes")
    headers.set("etag", meta.etag)
    headers.set("last-modified", meta.last_modified)
    headers.set("cache-control", CACHE_CONTROL)
    return headers


def file_response(request: Request, media: MediaFile) -> Response | StreamingResponse:
    meta = ranges.FileMeta.of(media.stat)
    get = request.headers.get
    decision = ranges.decide(
        meta,
        range_header=get("range"),
        if_range=get("if-range"),
        if_none_match=get("if-none-match"),
        if_modified_since=get("if-modified-since"),
    )
    headers = _validators(meta)
    if decision.status == 304:
        return Response(status_code=304, headers=headers, description=b"")

    if len(decision.ranges) > 1:
        body = ranges.Multipart.new(decision.ranges, size=meta.size, part_type=media.content_type)
        headers.set("content-type", body.content_type)
        headers.set("content-length", str(body.content_length))
        streamed = StreamingResponse(
            content=body.stream(media.path), status_code=206, headers=headers, media_type=body.content_type
        )
        # Robyn's own server skips after-middleware for streamed answers: give
        # this one its standard headers here (idempotent under the bridge).
        return apply_standard_headers(streamed, request_id=request_id_of(request), path=request.url.path)

    (start, end), = decision.ranges
    headers.set("content-type", media.content_type)
    headers.set("content-length", str(end - start))
    if decision.status == 206:
        headers.set("content-range", ranges.content_range(start, end, meta.size))
    headers.set(sendfile.HEADER, sendfile.FileRange(path=media.path, start=start, end=end).header_value())
    return Response(status_code=decision.status, headers=headers, description=b"")


def accel_redirect(media: MediaFile, prefix: str) -> Response:
    """Hand the file to nginx: it answers ranges and conditionals itself."""
    headers = Headers({})
    headers.set("x-accel-redirect", prefix + quote(media.relative_path, safe="/"))
    headers.set("content-type", media.content_type)
    headers.set("cache-control", CACHE_CONTROL)
    return Response(status_code=200, headers=headers, description=b"")
