"""Playback: who may play what, signed media URLs, and the concurrent-stream limit.

Starting playback (:meth:`PlaybackService.start`) checks, in order, the movie's
visibility for the viewer's profile (:mod:`vedina.services.visibility`:
``not_published``, ``outside_window``, ``age_restricted``) and the plan
(``plan_required``); then opens a playback session (the same device reopening
gets its live session back, not a second stream; one session more than
the plan's screens is :class:`TooManyStreams`, listing the live ones) and answers
the assets with URLs signed for this user, asset and session.

A media request (:meth:`PlaybackService.check_token`) is authorised by its
token in Rust, with no I/O, plus the liveness of the session it is bound to,
answered by :class:`SessionLiveness` from memory: a worker reads the session's
expiry from the shared store at most once per heartbeat (the cached expiry is
exact until it passes), and ending a session publishes ``playback:session:<id>``
so every worker re-reads at once. Hence the bound: an ended session's URLs stop
within the invalidation bound (under a second), a session without heartbeats at
its expiry (last heartbeat + ``session_timeout``).

>>> answer = await playback.start(viewer=viewer, movie_id=7)
>>> answer.renditions[0].url
'/api/media/12?t=1700000300.7.12.Xk3...'
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from vedina.errors import NotFound, Refused, TooManyStreams
from vedina.security.playback_tokens import PlaybackGrant, PlaybackTokens
from vedina.services.catalog import movie_key
from vedina.services.entitlements import Entitlement
from vedina.services.profiles import Profile
from vedina.services.viewing import ViewingService
from vedina.services.visibility import Audience
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.playback import PlayableAsset, PlaybackRepository
from vedina.storage.schema import PLAN_TIERS
from vedina.storage.stream_sessions import StreamSession, StreamSessions


def session_key(session_id: str) -> str:
    """The invalidation key published when a playback session ends."""
    return f"playback:session:{session_id}"


# -- plans -------------------------------------------------------------------------------


class PlanSource(Protocol):
    async def entitlement_of(self, *, user_id: int) -> Entitlement:
        """What the account may stream now (:mod:`vedina.services.entitlements`)."""
        ...


def plan_allows(plan: str | None, required: str) -> bool:
    """A plan includes every tier up to its own: ``plan_allows("standard", "basic")``; no plan, none."""
    return plan is not None and PLAN_TIERS.index(plan) >= PLAN_TIERS.index(required)


# -- answers -----------------------------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Viewer(msgspec.Struct, frozen=True, kw_only=True):
    """Who starts playback: the account, the profile it acts as, and the device."""

    user_id: int
    profile: Profile
    audience: Audience
    device_id: str
    device: str


class PlaybackSessionPublic(msgspec.Struct, kw_only=True):
    id: str
    movie_id: int
    device: str
    started_at: str
    last_heartbeat_at: str
    expires_at: str


class Rendition(msgspec.Struct, kw_only=True):
    asset_id: int
    kind: str  # rendition | video (the source)
    label: str | None
    width: int | None
    height: int | None
    bitrate: int | None
    content_type: str
    url: str


class SubtitleTrack(msgspec.Struct, kw_only=True):
    asset_id: int
    language: str | None
    label: str | None
    content_type: str
    url: str


class Artwork(msgspec.Struct, kw_only=True):
    asset_id: int
    content_type: str
    url: str


class PlaybackAnswer(msgspec.Struct, kw_only=True):
    movie_id: int
    session: PlaybackSessionPublic
    heartbeat_interval_seconds: int
    urls_expire_at: str  # ask again (same device: same session) before this
    renditions: list[Rendition]
    subtitles: list[SubtitleTrack]
    poster: Artwork | None
    sprite: Artwork | None  # WebVTT thumbnails; their cues name the picture "sprite.jpg": sprite_image
    sprite_image: Artwork | None
    resume_position_seconds: int | None


class SessionList(msgspec.Struct, kw_only=True):
    items: list[PlaybackSessionPublic]
    limit: int


# -- session liveness on the media hot path ----------------------------------------------


class SessionLiveness:
    """Per worker: session id -> (invalidation stamp, expiry ms). A hit is a dict lookup
    and one native stamp; a miss, an expiry passed or an ended session is one read."""

    def __init__(self, sessions: StreamSessions, invalidations: Invalidations, *, max_entries: int) -> None:
        self._sessions = sessions
        self._invalidations = invalidations
        self._entries: dict[str, tuple[int, int]] = {}
        self._max_entries = max_entries
        self.reads = 0  # for tests: shared-store reads made

    async def alive(self, *, user_id: int, session_id: str, now_ms: int) -> bool:
        key = f"{user_id}:{session_id}"
        stamp = self._invalidations.stamp(session_key(session_id))
        entry = self._entries.get(key)
        if entry is not None and stamp is not None and entry[0] == stamp and entry[1] > now_ms:
            return True
        self.reads += 1
        expiry = await self._sessions.expiry(user_id=user_id, session_id=session_id, now_ms=now_ms)
        if expiry is None:
            self._entries.pop(key, None)
            return False
        if stamp is not None and self._max_entries:
            self._entries.pop(key, None)
            self._entries[key] = (stamp, expiry)
            while len(self._entries) > self._max_entries:
                del self._entries[next(iter(self._entries))]
        return True


# -- the service -------------------------------------------------------------------------

PLAYABLE_KINDS = ("rendition", "video")
PLAYABLE_TTL = 300  # seconds; every change of a movie's media publishes the movie's key first


class PlaybackService:
    def __init__(
        self, *, gate: Callable[..., Awaitable], assets: PlaybackRepository, sessions: StreamSessions,
        liveness: SessionLiveness, tokens: PlaybackTokens, plans: PlanSource, invalidations: Invalidations,
        session_timeout: int,
        viewing: ViewingService | None = None, playable: NearCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gate = gate  # CatalogService.gate: async (movie_id=) -> MovieGate
        self._assets = assets
        self._sessions = sessions
        self._liveness = liveness
        self._tokens = tokens
        self._plans = plans
        self._invalidations = invalidations
        self._timeout_ms = session_timeout * 1000
        self.heartbeat_interval = max(1, session_timeout // 3)
        self._viewing = viewing  # watch progress: where to resume
        self._playable = playable  # a movie's assets per worker, dropped with the movie's other answers
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def check_viewer(self, *, user_id: int, audience: Audience, movie_id: int) -> Entitlement:
        """Refused (403, the rule's code) unless this viewer may play the movie now; NotFound if it is gone.
        Returns the account's entitlement (its screens and best quality)."""
        gate = await self._gate(movie_id=movie_id)
        refusal = gate.refusal(audience)
        if refusal == "not_found":
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
        if refusal is not None:
            raise Refused(refusal, _REFUSALS[refusal], details={"movie_id": movie_id})
        entitlement = await self._plans.entitlement_of(user_id=user_id)
        if not plan_allows(entitlement.tier, gate.plan_tier):
            raise Refused("plan_required", f"This movie needs the {gate.plan_tier} plan",
                          details={"movie_id": movie_id, "required": gate.plan_tier, "plan": entitlement.tier})
        return entitlement

    async def start(self, *, viewer: Viewer, movie_id: int) -> PlaybackAnswer:
        entitlement = await self.check_viewer(user_id=viewer.user_id, audience=viewer.audience, movie_id=movie_id)
        assets = await self._movie_assets(movie_id)
        ready = [a for a in assets if a.status == "ready"]
        # Renditions best first (then the source), so a player may take the first that fits; none above the plan's quality.
        playable = sorted((a for a in ready if a.kind in PLAYABLE_KINDS and _within(a, entitlement.max_height)),
                          key=lambda a: (a.kind != "rendition", -(a.height or 0), -(a.bitrate or 0), a.id))
        if not playable and any(a.kind in PLAYABLE_KINDS for a in ready):
            raise Refused("plan_required", f"This movie has no rendition within the plan's {entitlement.max_height}p",
                          details={"movie_id": movie_id, "max_height": entitlement.max_height})
        resume = await self._resume_position(viewer, movie_id)  # before the session: nothing may fail after it
        session = await self._open(viewer, movie_id, limit=entitlement.screens)
        now = int(self._clock())

        def url(asset: PlayableAsset) -> str:
            token = self._tokens.issue(user_id=viewer.user_id, asset_id=asset.id, session_id=session.id, now=now)
            return f"/api/media/{asset.id}?t={token}"


        def artwork(kind: str) -> Artwork | None:
            found = next((a for a in ready if a.kind == kind), None)
            return None if found is None else Artwork(asset_id=found.id, content_type=found.content_type, url=url(found))

        return PlaybackAnswer(
            movie_id=movie_id,
            session=self._public(session),
            heartbeat_interval_seconds=self.heartbeat_interval,
            urls_expire_at=iso((now + self._tokens.ttl) * 1000),
            renditions=[
                Rendition(asset_id=a.id, kind=a.kind, label=a.label, width=a.width, height=a.height,
                          bitrate=a.bitrate, content_type=a.content_type, url=url(a))
                for a in playable
            ],
            subtitles=[
                SubtitleTrack(asset_id=a.id, language=a.language, label=a.label, content_type=a.content_type,
                              url=url(a))
                for a in ready if a.kind == "subtitle"
            ],
            poster=artwork("poster"),
            sprite=artwork("sprite"),
            sprite_image=artwork("sprite_image"),
            resume_position_seconds=resume,
        )

    async def _movie_assets(self, movie_id: int) -> list[PlayableAsset]:
        if self._playable is None:
            return await self._assets.assets(movie_id=movie_id)
        return await self._playable.get_or_load(str(movie_id), (movie_key(movie_id),),
                                                lambda: self._assets.assets(movie_id=movie_id))

    async def _resume_position(self, viewer: Viewer, movie_id: int) -> int | None:
        if self._viewing is None:
            return None
        try:
            progress = await self._viewing.get_progress(profile=viewer.profile, movie_id=movie_id)
        except NotFound:  # an editor previewing what viewers cannot see yet: no history to resume
            return None
        return progress.position_seconds if progress.position_seconds and not progress.watched else None

    async def _open(self, viewer: Viewer, movie_id: int, *, limit: int) -> StreamSession:
        now = self._now_ms()
        candidate = StreamSession(
            id=_new_session_id(), user_id=viewer.user_id, movie_id=movie_id, device_id=viewer.device_id,
            device=viewer.device, started_at=now, expires_at=now + self._timeout_ms,
        )
        outcome = await self._sessions.open(candidate, limit=limit, now_ms=now)
        if outcome.session is None:
            raise TooManyStreams(
                f"At most {limit} streams may play at once: end one of the active sessions and retry",
                details={"limit": limit, "active": [
                    {"id": s.id, "device": s.device, "movie_id": s.movie_id, "started_at": iso(s.started_at)}
                    for s in outcome.active
                ]},
            )
        if not outcome.reused or outcome.previous_movie_id != movie_id:
            await self._assets.count_start(movie_id=movie_id)  # a playback start (a token refresh is not)
        return outcome.session

    def _public(self, session: StreamSession) -> PlaybackSessionPublic:
        return PlaybackSessionPublic(
            id=session.id, movie_id=session.movie_id, device=session.device, started_at=iso(session.started_at),
            last_heartbeat_at=iso(session.expires_at - self._timeout_ms), expires_at=iso(session.expires_at),
        )

    # -- sessions ------------------------------------------------------------------------

    async def heartbeat(self, *, user_id: int, session_id: str) -> PlaybackSessionPublic:
        now = self._now_ms()
        session = await self._sessions.heartbeat(user_id=user_id, session_id=session_id,
                                                 expires_at=now + self._timeout_ms, now_ms=now)
        if session is None:
            raise _no_session(session_id)
        return self._public(session)

    async def end(self, *, user_id: int, session_id: str) -> None:
        ended = await self._sessions.end(user_id=user_id, session_id=session_id, now_ms=self._now_ms())
        if not ended:
            raise _no_session(session_id)
        await self._invalidations.publish(session_key(session_id))

    async def watching(self, *, user_id: int, movie_id: int) -> bool:
        """Whether the account has a live playback session on this movie."""
        sessions = await self._sessions.active(user_id=user_id, now_ms=self._now_ms())
        return any(s.movie_id == movie_id for s in sessions)

    async def count_live_sessions(self) -> int:
        """Live playback sessions of all accounts (for the metrics; a scan of the store)."""
        return await self._sessions.count_live(now_ms=self._now_ms())

    async def active(self, *, user_id: int) -> SessionList:
        sessions = await self._sessions.active(user_id=user_id, now_ms=self._now_ms())
        entitlement = await self._plans.entitlement_of(user_id=user_id)
        return SessionList(items=[self._public(s) for s in sessions], limit=entitlement.screens)

    # -- media requests ------------------------------------------------------------------

    async def check_token(self, token: str, *, asset_id: int) -> PlaybackGrant:
        """The grant of a media URL's token, or Refused (403): ``playback_token_invalid``,
        ``playback_token_expired``, or ``playback_session_ended`` for a session that is over."""
        now = self._clock()
        grant = self._tokens.verify(token, asset_id=asset_id, now=int(now))
        if grant.session_id is not None and not await self._liveness.alive(
            user_id=grant.user_id, session_id=grant.session_id, now_ms=int(now * 1000)
        ):
            raise Refused("playback_session_ended", "The playback session of this URL has ended",
                          details={"session_id": grant.session_id})
        return grant


_REFUSALS = {
    "not_published": "This movie is not published",
    "outside_window": "This movie is not available at this time",
    "age_restricted": "This movie is above the profile's age limit",
}


def within_plan(kind: str, height: int | None, max_height: int | None) -> bool:
    """Whether a plan whose best quality is ``max_height`` may stream this asset: any non-video asset
    (subtitles, artwork); a video only when its height is known and not above the plan's."""
    if max_height is None or kind not in PLAYABLE_KINDS:
        return True
    return height is not None and height <= max_height


def _within(asset: PlayableAsset, max_height: int | None) -> bool:
    return within_plan(asset.kind, asset.height, max_height)


def _no_session(session_id: str) -> NotFound:
    return NotFound("No such playback session", details={"id": session_id})


def _new_session_id() -> str:
    return secrets.token_urlsafe(16)


def build_playback(settings, resources, *, catalog, viewing: ViewingService | None, plans: PlanSource) -> PlaybackService:
    """The playback service of a process (called once, by the composition root)."""
    from vedina.storage.stream_sessions import stream_sessions

    sessions = stream_sessions(resources)
    return PlaybackService(
        gate=catalog.gate, assets=PlaybackRepository(resources.engine), sessions=sessions,
        liveness=SessionLiveness(sessions, resources.invalidations, max_entries=settings.near_cache_entries),
        tokens=PlaybackTokens.from_settings(settings), plans=plans,
        invalidations=resources.invalidations,
        session_timeout=settings.playback_session_timeout_seconds, viewing=viewing,
        playable=NearCache(resources.invalidations, name="playable", max_entries=settings.near_cache_entries,
                           ttl=PLAYABLE_TTL),
    )
