"""What a profile does with movies: progress, continue watching, watchlist, ratings.

Every call acts as a :class:`~vedina.services.profiles.Profile` and sees only
movies that profile may see (:mod:`vedina.services.visibility`: published,
inside their window, rated up to its parental limit); any other movie is
``NotFound``, as if it did not exist. A movie's gate comes from
``CatalogService.gate`` (cached per worker, dropped with the catalog's answers).

Ratings: one vote per profile and movie; the movie's totals move by the
vote's difference in the vote's transaction (see vedina.storage.viewing), so
concurrent votes add up exactly. Progress writes are coalesced
(:mod:`vedina.services.progress`).
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import NotFound, ValidationFailed
from vedina.services.catalog import LIST_KEY, CatalogService, movie_key
from vedina.services.profiles import Profile
from vedina.services.progress import Pending, ProgressWriter
from vedina.services.visibility import Audience, MovieGate, ratings_up_to
from vedina.storage.clock import utcnow
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.profiles import ProfileRepository
from vedina.storage.viewing import ViewingRepository

_SCAN_BATCH = 50
_MAX_SCANS = 10  # continue watching reads at most this many batches


class Progress(msgspec.Struct, kw_only=True):
    movie_id: int
    position_seconds: int
    duration_seconds: int | None
    percent: int
    watched: bool
    watched_at: datetime | None
    updated_at: datetime | None


class ContinueItem(msgspec.Struct, kw_only=True):
    movie_id: int
    title: str
    slug: str
    position_seconds: int
    duration_seconds: int
    percent: int
    updated_at: datetime


class ContinueWatching(msgspec.Struct, kw_only=True):
    items: list[ContinueItem]


class WatchlistItem(msgspec.Struct, kw_only=True):
    movie_id: int
    title: str
    slug: str
    added_at: datetime


class WatchlistPage(msgspec.Struct, kw_only=True):
    items: list[WatchlistItem]
    next_cursor: str | None


class RatingSummary(msgspec.Struct, kw_only=True):
    movie_id: int
    score: int | None  # this profile's vote
    average: float | None  # None: no votes yet
    count: int


def _percent(position: int, duration: int | None) -> int:
    return min(100, position * 100 // duration) if duration else 0


_CURSOR = re.compile(r"([0-9]{1,11})-([0-9]{1,18})")  # seconds up to year 5138; ids below 2**63


def _cursor_of(at: datetime, movie_id: int) -> str:
    return f"{calendar.timegm(at.timetuple())}-{movie_id}"


def _parse_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if cursor is None:
        return None
    match = _CURSOR.fullmatch(cursor)
    if match is None or int(match.group(2)) >= 2**63:
        raise ValidationFailed("cursor must be a next_cursor from a previous page", details={"field": "cursor"})
    return datetime.fromtimestamp(int(match.group(1)), UTC).replace(tzinfo=None), int(match.group(2))


def _gate(row: dict) -> MovieGate:
    return MovieGate(movie_id=row["movie_id"], status=row["status"], available_from=row["available_from"],
                     available_until=row["available_until"], maturity_rating=row["maturity_rating"],
                     plan_tier=row["plan_tier"])


def viewing_key(profile_id: int) -> str:
    """Invalidation key of a profile's progress answers (published on every report)."""
    return f"viewing:profile:{profile_id}"


class ViewingService:
    """Progress and "continue watching" are read on every home screen: their answers are kept in a
    per-worker near cache, dropped by ``viewing:profile:<id>`` (each report or mark publishes it,
    after the shared store has the value) and by the catalog's keys (titles, visibility)."""

    def __init__(
        self, *, engine: AsyncEngine, viewing: ViewingRepository, progress: ProgressWriter, catalog: CatalogService,
        answers: NearCache, invalidations: Invalidations,
    ) -> None:
        self._engine = engine
        self._viewing = viewing
        self.progress_writer = progress
        self._catalog = catalog  # gates of movies; movies_changed after a vote
        self._answers = answers
        self._invalidations = invalidations

    # -- visibility ---------------------------------------------------------------

    async def _visible_movie(self, profile: Profile, movie_id: int) -> MovieGate:
        gate = await self._catalog.gate(movie_id=movie_id)  # per-worker cache, dropped with the catalog's answers
        if gate.refusal(Audience(max_age_rating=profile.max_age_rating)) is not None:
            raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
        return gate

    @staticmethod
    def _sees(profile: Profile, row: dict, now: datetime) -> bool:
        return _gate(row).refusal(Audience(max_age_rating=profile.max_age_rating), now=now) is None

    # -- progress -----------------------------------------------------------------

    async def get_progress(self, *, profile: Profile, movie_id: int) -> Progress:
        await self._visible_movie(profile, movie_id)
        key, depends_on = f"progress:{profile.id}:{movie_id}", (viewing_key(profile.id), movie_key(movie_id))
        cached = self._answers.peek(key, depends_on)
        if cached is not None:
            return cached

        async def load() -> Progress:
            row = await self._viewing.progress(profile_id=profile.id, movie_id=movie_id)
            pending = (await self.progress_writer.pending(profile.id, [movie_id])).get(movie_id)
            return self._progress(movie_id, row, pending)

        return await self._answers.get_or_load(key, depends_on, load)

    async def save_progress(self, *, profile: Profile, movie_id: int, position: int, duration: int) -> Progress:
        if position > duration:
            raise ValidationFailed("position_seconds must not exceed duration_seconds",
                                   details={"field": "position_seconds"})
        await self._visible_movie(profile, movie_id)
        try:
            await self.progress_writer.report(profile_id=profile.id, movie_id=movie_id, position=position,
                                              duration=duration)
        except IntegrityError:  # the profile was deleted meanwhile
            raise NotFound("No such profile", details={"id": profile.id}) from None
        await self._invalidations.publish(viewing_key(profile.id))
        return await self.get_progress(profile=profile, movie_id=movie_id)

    async def mark_watched(self, *, profile: Profile, movie_id: int, watched: bool) -> Progress:
        await self._visible_movie(profile, movie_id)
        row = await self._viewing.progress(profile_id=profile.id, movie_id=movie_id)
        if watched:
            # At the end: what a player would have reported (the duration as known, else the movie's).
            duration = row["duration_seconds"] if row else (await self._duration(movie_id))
            position = duration
        else:
            duration, position = (row["duration_seconds"] if row else 0), 0
        if watched or row is not None:
            try:
                await self.progress_writer.write_now(profile_id=profile.id, movie_id=movie_id, position=position,
                                                     duration=duration, watched=watched)
            except IntegrityError:
                raise NotFound("No such profile", details={"id": profile.id}) from None
        await self._invalidations.publish(viewing_key(profile.id))
        return await self.get_progress(profile=profile, movie_id=movie_id)

    async def _duration(self, movie_id: int) -> int:
        duration = await self._viewing.movie_duration(movie_id)
        return duration or 0

    @staticmethod
    def _progress(movie_id: int, row: dict | None, pending: Pending | None) -> Progress:
        position = pending.position if pending else (row["position_seconds"] if row else 0)
        duration = pending.duration if pending else (row["duration_seconds"] if row else None)
        updated = max(filter(None, [pending.at if pending else None, row["updated_at"] if row else None]), default=None)
        watched_at = row["watched_at"] if row else None
        return Progress(movie_id=movie_id, position_seconds=position, duration_seconds=duration,
                        percent=_percent(position, duration), watched=watched_at is not None,
                        watched_at=watched_at, updated_at=updated)

    async def continue_watching(self, *, profile: Profile, limit: int) -> ContinueWatching:
        """Started, unwatched, visible movies, the most recently played first."""
        key = f"continue:{profile.id}:{profile.max_age_rating}:{limit}"
        depends_on = (viewing_key(profile.id), LIST_KEY)
        cached = self._answers.peek(key, depends_on)
        if cached is not None:
            return cached
        return await self._answers.get_or_load(key, depends_on, lambda: self._continue_watching(profile, limit))

    async def _continue_watching(self, profile: Profile, limit: int) -> ContinueWatching:
        now, items, after = utcnow(), [], None
        allowed = ratings_up_to(profile.max_age_rating)
        for _ in range(_MAX_SCANS):
            rows = await self._viewing.in_progress(profile_id=profile.id, ratings_allowed=allowed, now=now,
                                                   after=after, limit=_SCAN_BATCH)
            pending = await self.progress_writer.pending(profile.id, [r["movie_id"] for r in rows])
            for row in rows:
                latest = pending.get(row["movie_id"])
                position = latest.position if latest else row["position_seconds"]
                duration = latest.duration if latest else row["duration_seconds"]
                if position <= 0 or (latest is not None and latest.watched) or not self._sees(profile, row, now):
                    continue
                items.append(ContinueItem(
                    movie_id=row["movie_id"], title=row["title"], slug=row["slug"], position_seconds=position,
                    duration_seconds=duration, percent=_percent(position, duration),
                    updated_at=max(row["updated_at"], latest.at) if latest else row["updated_at"],
                ))
            if len(rows) < _SCAN_BATCH or len(items) >= limit:
                break
            after = (rows[-1]["updated_at"], rows[-1]["movie_id"])
        items.sort(key=lambda item: (item.updated_at, item.movie_id), reverse=True)
        return ContinueWatching(items=items[:limit])

    # -- watchlist ----------------------------------------------------------------

    async def watchlist(self, *, profile: Profile, limit: int, cursor: str | None) -> WatchlistPage:
        """Newest first; ``next_cursor`` continues after this page (None: no more)."""
        now = utcnow()
        rows = await self._viewing.watchlist(
            profile_id=profile.id, ratings_allowed=ratings_up_to(profile.max_age_rating), now=now,
            after=_parse_cursor(cursor), limit=limit + 1,
        )
        more, rows = len(rows) > limit, rows[:limit]
        items = [WatchlistItem(movie_id=r["movie_id"], title=r["title"], slug=r["slug"], added_at=r["added_at"])
                 for r in rows if self._sees(profile, r, now)]
        next_cursor = _cursor_of(rows[-1]["added_at"], rows[-1]["movie_id"]) if more else None
        return WatchlistPage(items=items, next_cursor=next_cursor)

    async def add_to_watchlist(self, *, profile: Profile, movie_id: int) -> None:
        await self._visible_movie(profile, movie_id)
        try:
            async with self._engine.begin() as conn:
                await ViewingRepository.add_to_watchlist(conn, profile_id=profile.id, movie_id=movie_id, at=utcnow())
        except IntegrityError:
            raise NotFound("No such profile", details={"id": profile.id}) from None

    async def remove_from_watchlist(self, *, profile: Profile, movie_id: int) -> None:
        await self._visible_movie(profile, movie_id)
        async with self._engine.begin() as conn:
            await ViewingRepository.remove_from_watchlist(conn, profile_id=profile.id, movie_id=movie_id)

    # -- ratings ------------------------------------------------------------------

    async def rating(self, *, profile: Profile, movie_id: int) -> RatingSummary:
        await self._visible_movie(profile, movie_id)
        mine, total, count = await self._viewing.rating(profile_id=profile.id, movie_id=movie_id)
        return RatingSummary(movie_id=movie_id, score=mine, count=count,
                             average=round(total / count, 1) if count else None)

    async def rate(self, *, profile: Profile, movie_id: int, score: int | None) -> RatingSummary:
        """Vote ``score`` (1..10), or withdraw the vote (None)."""
        await self._visible_movie(profile, movie_id)
        changed = False
        try:
            async with self._engine.begin() as conn:
                # The profile's row first, then the movie's: the order a profile's deletion takes
                # them in (it takes its votes out of the movies' totals), so the two cannot deadlock.
                if not await ProfileRepository.lock_profile(conn, profile_id=profile.id, user_id=profile.user_id):
                    raise NotFound("No such profile", details={"id": profile.id})
                if not await ViewingRepository.lock_movie(conn, movie_id):
                    raise NotFound(f"Movie {movie_id} not found", details={"id": movie_id})
                previous = await ViewingRepository.score(conn, profile_id=profile.id, movie_id=movie_id)
                if score is not None and score != previous:
                    await ViewingRepository.set_score(conn, profile_id=profile.id, movie_id=movie_id, score=score,
                                                      previous=previous, at=utcnow())
                    changed = True
                elif score is None and previous is not None:
                    await ViewingRepository.remove_score(conn, profile_id=profile.id, movie_id=movie_id,
                                                         previous=previous)
                    changed = True
        except IntegrityError:  # the profile was deleted meanwhile
            raise NotFound("No such profile", details={"id": profile.id}) from None
        if changed:
            await self._catalog.movies_changed(movie_id)
        return await self.rating(profile=profile, movie_id=movie_id)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self.progress_writer.start()

    async def close(self) -> None:
        await self.progress_writer.close()
