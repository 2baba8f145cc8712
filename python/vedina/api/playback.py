"""Playback: start a movie (signed URLs + a playback session), keep sessions alive, end them.

    GET    /api/movies/:id/playback                  start (or resume on the same device)
    GET    /api/playback/sessions                    the account's live sessions
    POST   /api/playback/sessions/:sid/heartbeat     keep one alive
    DELETE /api/playback/sessions/:sid               end one (frees a stream at once)

Opening a session is implicit in ``GET .../playback``: a player asks for the URLs
when it starts, and that is when a stream starts counting. The device is the
client's ``device_id`` query parameter (same id: same session), else one derived
from the login session and the User-Agent; its label is ``device_name``, else
the User-Agent.
"""

from __future__ import annotations

import hashlib
import re

from robyn import Request, SubRouter

from vedina.api.audience import audience_of
from vedina.api.bodies import no_content
from vedina.api.params import path_int
from vedina.api.viewer import profile_of
from vedina.errors import Forbidden, ValidationFailed
from vedina.http.auth import principal_of, requires, user_agent
from vedina.http.operation import doc
from vedina.http.responses import json_response
from vedina.services.playback import PlaybackAnswer, PlaybackSessionPublic, SessionList, Viewer
from vedina.state import AppState

_DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_DEVICE_NAME = 100


def _device(request: Request, session_id: str) -> tuple[str, str]:
    """(device id, label) of the player."""
    device_id = request.query_params.get("device_id", None)
    if device_id is not None and not _DEVICE_ID.fullmatch(device_id):
        raise ValidationFailed("device_id must be 1-64 characters of A-Z a-z 0-9 . _ : -",
                               details={"field": "device_id"})
    name = request.query_params.get("device_name", None)
    if name is not None and (not name.strip() or len(name) > MAX_DEVICE_NAME or not name.isprintable()):
        raise ValidationFailed(f"device_name must be 1-{MAX_DEVICE_NAME} printable characters",
                               details={"field": "device_name"})
    agent = user_agent(request)
    if device_id is None:  # one login session on one kind of client: one device
        device_id = "ua-" + hashlib.sha256(f"{session_id}\n{agent}".encode()).hexdigest()[:32]
    else:  # the client's name for itself, within its login: devices sharing one id still count apart
        device_id = "id-" + hashlib.sha256(f"{session_id}\n{device_id}".encode()).hexdigest()[:32]
    return device_id, (name or agent[:MAX_DEVICE_NAME] or "Unknown device").strip()


def _session_id(request: Request) -> str:
    raw = request.path_params.get("sid", "")
    if not _SESSION_ID.fullmatch(raw):
        raise ValidationFailed("sid must be a playback session id", details={"field": "sid"})
    return raw


def _user_id(request: Request) -> int:
    principal = principal_of(request)
    if principal.kind != "user":
        raise Forbidden("Playback sessions belong to user accounts")
    return int(principal.subject)


def register(router: SubRouter, state: AppState) -> None:
    """Under /api."""

    def csrf():
        return state.services.csrf

    @router.get("/movies/:id/playback", openapi_name="Start playback: signed URLs and a playback session")
    @doc(query={"device_id": str, "device_name": str}, headers=("X-Profile-Id",), answers={200: PlaybackAnswer},
         errors=("403 not_published", "403 outside_window", "403 age_restricted", "403 plan_required",
                 "409 too_many_streams"))
    @requires("catalog:read", csrf_tokens=csrf)
    async def start_playback(request: Request):
        """For the current profile (``X-Profile-Id``): the playable renditions, subtitles and artwork with
        signed URLs, the resume position and the playback session (heartbeat it every
        ``heartbeat_interval_seconds``). 403 ``not_published`` / ``outside_window`` / ``age_restricted`` /
        ``plan_required``; 409 ``too_many_streams`` listing the active sessions. Query: ``device_id``,
        ``device_name``."""
        movie_id = path_int(request, "id")
        principal = principal_of(request)
        profile = await profile_of(request, state)  # 403 for API keys, 404 for another account's profile
        device_id, device = _device(request, principal.session_id)
        viewer = Viewer(user_id=int(principal.subject), profile=profile, audience=await audience_of(request, state),
                        device_id=device_id, device=device)
        return json_response(await state.services.playback.start(viewer=viewer, movie_id=movie_id))

    @router.get("/playback/sessions", openapi_name="My active playback sessions")
    @doc(answers={200: SessionList})
    @requires("catalog:read", csrf_tokens=csrf)
    async def list_sessions(request: Request):
        """Live sessions of the account (device, started, last heartbeat) and the limit."""
        user_id = _user_id(request)
        return json_response(await state.services.playback.active(user_id=user_id))

    @router.post("/playback/sessions/:sid/heartbeat", openapi_name="Keep a playback session alive")
    @doc(answers={200: PlaybackSessionPublic})
    @requires("catalog:read", csrf_tokens=csrf)
    async def heartbeat(request: Request):
        """404 when the session is not one of the account's live sessions (ended or timed out)."""
        session_id = _session_id(request)
        user_id = _user_id(request)
        return json_response(await state.services.playback.heartbeat(user_id=user_id, session_id=session_id))

    @router.delete("/playback/sessions/:sid", openapi_name="End a playback session")
    @doc(answers={204: None})
    @requires("catalog:read", csrf_tokens=csrf)
    async def end_session(request: Request):
        """Frees the stream at once; the session's URLs stop working (within a second on other hosts)."""
        session_id = _session_id(request)
        user_id = _user_id(request)
        await state.services.playback.end(user_id=user_id, session_id=session_id)
        return no_content()
