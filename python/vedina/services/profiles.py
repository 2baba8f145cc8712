"""Viewer profiles: up to five per account, one of them the main profile.

Every viewer feature acts as a profile (its progress, watchlist, ratings and
parental limit): :meth:`ProfileService.current` answers which, on the hot path
of every such request, from a per-worker :class:`NearCache` of the account's
profiles (a hit does no I/O). Every write publishes ``profiles:user:<id>``
after its commit, so every worker of every host drops the account's entry.

The main profile is created on an account's first use (``is_main``, named
"Main", no age limit). Two first uses at once both try to insert it; the
unique (user_id, name) constraint lets one win and the other re-reads.

Writes that count or compare an account's profiles (the limit of five, unique
names) first lock the account (:meth:`ProfileRepository.lock_account`), so
two concurrent creations cannot both take the fifth place.

>>> profile = await profiles.current(user_id=7, profile_id=None)   # the main one
>>> profile.is_main
True
"""

from __future__ import annotations

import msgspec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.errors import Conflict, NotFound, ValidationFailed
from vedina.storage.invalidation import Invalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.profiles import ProfileRepository
from vedina.storage.viewing import ViewingRepository

MAX_PROFILES = 5
MAIN_NAME = "Main"


def profiles_key(user_id: int) -> str:
    """The invalidation key of an account's profiles."""
    return f"profiles:user:{user_id}"


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: int
    name: str
    max_age_rating: str | None
    is_main: bool


class ProfileList(msgspec.Struct, kw_only=True):
    items: list[Profile]
    limit: int = MAX_PROFILES


def _profile(row: dict) -> Profile:
    return Profile(id=row["id"], user_id=row["user_id"], name=row["name"], max_age_rating=row["max_age_rating"],
                   is_main=bool(row["is_main"]))


class ProfileService:
    def __init__(
        self, *, engine: AsyncEngine, profiles: ProfileRepository, cache: NearCache[tuple[Profile, ...]],
        invalidations: Invalidations, ratings_changed=None,
    ) -> None:
        self._engine = engine
        self._profiles = profiles
        self._cache = cache
        self._invalidations = invalidations
        # async (movie ids) -> None: cached movie answers to refresh after a profile's votes went away.
        self._ratings_changed = ratings_changed

    # -- reads --------------------------------------------------------------------

    async def list(self, *, user_id: int) -> tuple[Profile, ...]:
        """The account's profiles, main first (the main one created on first use)."""
        key, depends_on = f"user:{user_id}", (profiles_key(user_id),)
        cached = self._cache.peek(key, depends_on)
        if cached is not None:
            return cached
        return await self._cache.get_or_load(key, depends_on, lambda: self._load(user_id))

    async def current(self, *, user_id: int, profile_id: int | None) -> Profile:
        """The profile a request acts as: `profile_id` (NotFound unless it is the user's), else the main one
        (created on first use)."""
        for profile in await self.list(user_id=user_id):
            if profile.id == profile_id or (profile_id is None and profile.is_main):
                return profile
        raise NotFound("No such profile", details={"id": profile_id})

    async def _load(self, user_id: int) -> tuple[Profile, ...]:
        rows = await self._profiles.list(user_id)
        if not any(row["is_main"] for row in rows):
            await self._create_main(user_id)
            rows = await self._profiles.list(user_id)
        return tuple(_profile(row) for row in rows)

    async def _create_main(self, user_id: int) -> None:
        # No publish: no worker can hold a list without a main profile (every load creates it).
        try:
            async with self._engine.begin() as conn:
                await self._profiles.insert(conn, user_id=user_id, name=MAIN_NAME, max_age_rating=None, is_main=True)
        except IntegrityError:
            pass  # a concurrent first use created it (unique user_id, name): the caller re-reads

    # -- writes -------------------------------------------------------------------

    async def create(self, *, user_id: int, name: str, max_age_rating: str | None) -> Profile:
        await self.list(user_id=user_id)  # the main profile first: it is one of the five
        async with self._changing(user_id, name=name):
            async with self._engine.begin() as conn:
                await ProfileRepository.lock_account(conn, user_id)
                names = await ProfileRepository.names(conn, user_id)
                if len(names) >= MAX_PROFILES:
                    raise Conflict(
                        f"An account has at most {MAX_PROFILES} profiles",
                        details={"code": "profile_limit_reached", "limit": MAX_PROFILES},
                    )
                _check_unique(names, name)
                profile_id = await ProfileRepository.insert(
                    conn, user_id=user_id, name=name, max_age_rating=max_age_rating, is_main=False
                )
        return await self.current(user_id=user_id, profile_id=profile_id)

    async def update(self, *, user_id: int, profile_id: int, changes: dict) -> Profile:
        """``changes``: any of name, max_age_rating (None: no limit)."""
        if changes:
            async with self._changing(user_id, name=changes.get("name")):
                async with self._engine.begin() as conn:
                    await ProfileRepository.lock_account(conn, user_id)
                    names = await ProfileRepository.names(conn, user_id)
                    if profile_id not in names:
                        raise NotFound("No such profile", details={"id": profile_id})
                    if "name" in changes:
                        _check_unique({i: n for i, n in names.items() if i != profile_id}, changes["name"])
                    if changes.get("max_age_rating") is not None:
                        row = await ProfileRepository.get(conn, profile_id=profile_id, user_id=user_id)
                        if row["is_main"]:  # the account holder's: requests without X-Profile-Id act as it
                            raise ValidationFailed("The main profile has no parental limit: add a profile for that",
                                                   details={"field": "max_age_rating", "code": "main_profile"})
                    await ProfileRepository.update(conn, profile_id=profile_id, **changes)
        return await self.current(user_id=user_id, profile_id=profile_id)

    async def delete(self, *, user_id: int, profile_id: int) -> None:
        """Not the main one. Its votes leave the movies' totals in the same transaction."""
        async with self._changing(user_id):
            async with self._engine.begin() as conn:
                # The profile's row first: a vote of this profile that has not committed yet
                # waits (its foreign key check) and then fails, so no vote escapes the totals.
                if not await ProfileRepository.lock_profile(conn, profile_id=profile_id, user_id=user_id):
                    raise NotFound("No such profile", details={"id": profile_id})
                row = await ProfileRepository.get(conn, profile_id=profile_id, user_id=user_id)
                if row["is_main"]:
                    raise Conflict("The main profile cannot be deleted",
                                   details={"code": "main_profile", "id": profile_id})
                scores = await ViewingRepository.scores_of_profile(conn, profile_id)
                for movie_id in sorted(scores):
                    await ViewingRepository.lock_movie(conn, movie_id)
                    await ViewingRepository.remove_score(conn, profile_id=profile_id, movie_id=movie_id,
                                                         previous=scores[movie_id])
                await ProfileRepository.delete(conn, profile_id=profile_id)
        if scores and self._ratings_changed is not None:
            await self._ratings_changed(*scores)

    def _changing(self, user_id: int, *, name: str | None = None):
        return _Change(self._invalidations, user_id, name)


def _check_unique(names: dict[int, str], name: str) -> None:
    # Compared without case, so both databases agree (MariaDB's collation ignores case; SQLite's does not).
    if any(existing.lower() == name.lower() for existing in names.values()):
        raise Conflict("This account already has a profile with that name",
                       details={"code": "profile_name_taken", "field": "name"})


class _Change:
    """Around a profile write: a unique-key race is a 409 naming the field, and the
    account's cached profiles are invalidated after the commit (or the failure)."""

    def __init__(self, invalidations: Invalidations, user_id: int, name: str | None) -> None:
        self._invalidations = invalidations
        self._user_id = user_id
        self._name = name

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind, exc, tb) -> bool:
        await self._invalidations.publish(profiles_key(self._user_id))
        if isinstance(exc, IntegrityError) and self._name is not None:
            raise Conflict("This account already has a profile with that name",
                           details={"code": "profile_name_taken", "field": "name"}) from exc
        return False
