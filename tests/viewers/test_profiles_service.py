"""ProfileService on both storage profiles: the main profile, the limit, names, ownership, the near cache."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tests.viewers.conftest import StatementCounter, make_movie, make_user, rows
from vedina.errors import Conflict, NotFound
from vedina.services.profiles import MAX_PROFILES, ProfileService
from vedina.storage.near_cache import NearCache
from vedina.storage.profiles import ProfileRepository
from vedina.storage.schema import movies, profiles


def worker_like(resources) -> ProfileService:
    """A ProfileService with its own cache, as another worker process would have."""
    return ProfileService(
        engine=resources.engine, profiles=ProfileRepository(resources.engine), invalidations=resources.invalidations,
        cache=NearCache(resources.invalidations, name="test_profiles", max_entries=100, ttl=60),
    )


async def test_the_main_profile_is_created_once_when_many_workers_use_it_first_at_once(services, resources):
    user = await make_user(resources.engine)
    workers = [worker_like(resources) for _ in range(8)]
    mains = await asyncio.gather(*(w.current(user_id=user, profile_id=None) for w in workers))
    assert len({m.id for m in mains}) == 1
    assert all(m.is_main and m.name == "Main" and m.max_age_rating is None for m in mains)
    assert len(await rows(resources.engine, sa.select(profiles).where(profiles.c.user_id == user))) == 1


async def test_an_account_has_at_most_five_profiles_even_when_created_concurrently(services, resources):
    user = await make_user(resources.engine)
    workers = [worker_like(resources) for _ in range(7)]
    results = await asyncio.gather(
        *(w.create(user_id=user, name=f"P{i}", max_age_rating=None) for i, w in enumerate(workers)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 3 and all(isinstance(r, Conflict) for r in refused)
    assert refused[0].details["code"] == "profile_limit_reached"
    assert len(await services.profiles.list(user_id=user)) == MAX_PROFILES
    assert len(await rows(resources.engine, sa.select(profiles).where(profiles.c.user_id == user))) == MAX_PROFILES


async def test_profile_names_are_unique_per_account_ignoring_case(services, resources):
    user, other = await make_user(resources.engine), await make_user(resources.engine)
    kids = await services.profiles.create(user_id=user, name="Kids", max_age_rating="PG")
    for name in ("Kids", "kids", "Main"):
        with pytest.raises(Conflict) as refused:
            await services.profiles.create(user_id=user, name=name, max_age_rating=None)
        assert refused.value.details == {"code": "profile_name_taken", "field": "name"}
    second = await services.profiles.create(user_id=user, name="Teens", max_age_rating="PG-13")
    with pytest.raises(Conflict):
        await services.profiles.update(user_id=user, profile_id=second.id, changes={"name": "KIDS"})
    assert (await services.profiles.create(user_id=other, name="Kids", max_age_rating=None)).name == "Kids"
    renamed = await services.profiles.update(user_id=user, profile_id=kids.id, changes={"name": "kids"})
    assert renamed.name == "kids"  # its own name in another case is no conflict


async def test_another_accounts_profile_is_not_found_for_every_operation(services, resources):
    owner, stranger = await make_user(resources.engine), await make_user(resources.engine)
    theirs = await services.profiles.create(user_id=owner, name="Mine", max_age_rating=None)
    with pytest.raises(NotFound):
        await services.profiles.current(user_id=stranger, profile_id=theirs.id)
    with pytest.raises(NotFound):
        await services.profiles.update(user_id=stranger, profile_id=theirs.id, changes={"name": "Taken"})
    with pytest.raises(NotFound):
        await services.profiles.delete(user_id=stranger, profile_id=theirs.id)
    assert (await services.profiles.current(user_id=owner, profile_id=theirs.id)).name == "Mine"


async def test_the_main_profile_cannot_be_deleted_and_a_deleted_profiles_votes_leave_the_totals(services, resources):
    user = await make_user(resources.engine)
    main = await services.profiles.current(user_id=user, profile_id=None)
    with pytest.raises(Conflict) as refused:
        await services.profiles.delete(user_id=user, profile_id=main.id)
    assert refused.value.details["code"] == "main_profile"
    extra = await services.profiles.create(user_id=user, name="Guest", max_age_rating=None)
    movie = await make_movie(resources.engine)
    await services.viewing.rate(profile=main, movie_id=movie, score=4)
    await services.viewing.rate(profile=extra, movie_id=movie, score=10)
    await services.profiles.delete(user_id=user, profile_id=extra.id)
    [totals] = await rows(resources.engine, sa.select(movies.c.rating_sum, movies.c.rating_count, movies.c.rating_avg)
                          .where(movies.c.id == movie))
    assert totals == {"rating_sum": 4, "rating_count": 1, "rating_avg": 400}
    assert [p.id for p in await services.profiles.list(user_id=user)] == [main.id]


async def test_current_is_answered_from_memory_and_a_change_is_seen_at_once(services, resources):
    resources.invalidations.start()  # as a serving worker does: near caches are trusted once subscribed
    await resources.invalidations.ready()
    user = await make_user(resources.engine)
    kids = await services.profiles.create(user_id=user, name="Kids", max_age_rating="PG")
    await services.profiles.current(user_id=user, profile_id=kids.id)
    with StatementCounter(resources.engine, "") as counter:
        for _ in range(20):
            assert (await services.profiles.current(user_id=user, profile_id=kids.id)).max_age_rating == "PG"
            assert (await services.profiles.current(user_id=user, profile_id=None)).is_main
    assert counter.count == 0
    await services.profiles.update(user_id=user, profile_id=kids.id, changes={"max_age_rating": None})
    assert (await services.profiles.current(user_id=user, profile_id=kids.id)).max_age_rating is None
