"""ViewingService on both storage profiles: coalesced progress, continue watching, watchlist, exact ratings,
parental limits."""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest
import sqlalchemy as sa

from tests.viewers.conftest import StatementCounter, make_movie, make_user, rows
from vedina.errors import NotFound, ValidationFailed
from vedina.services.progress import ProgressWriter
from vedina.storage.schema import movies, ratings, watch_progress, watchlist

WRITES = ("INSERT INTO watch_progress",)


async def stored(engine, profile_id: int, movie_id: int) -> dict | None:
    found = await rows(engine, sa.select(watch_progress).where(
        watch_progress.c.profile_id == profile_id, watch_progress.c.movie_id == movie_id))
    return found[0] if found else None


async def test_reports_within_the_flush_window_cost_one_database_write_and_reads_see_the_latest(services, resources):
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    movie = await make_movie(resources.engine)
    with StatementCounter(resources.engine, *WRITES) as writes:
        for position in range(0, 600, 5):
            await services.viewing.save_progress(profile=main, movie_id=movie, position=position, duration=5400)
    assert writes.count == 1
    assert (await stored(resources.engine, main.id, movie))["position_seconds"] == 0  # the first report
    latest = await services.viewing.get_progress(profile=main, movie_id=movie)
    assert (latest.position_seconds, latest.duration_seconds, latest.watched) == (595, 5400, False)
    [item] = (await services.viewing.continue_watching(profile=main, limit=10)).items
    assert (item.movie_id, item.position_seconds, item.percent) == (movie, 595, 11)
    # Stopping the worker writes what it still holds.
    await services.viewing.close()
    assert (await stored(resources.engine, main.id, movie))["position_seconds"] == 595


async def test_a_held_position_is_written_once_its_window_has_passed(services, resources):
    writer = ProgressWriter(engine=resources.engine, store=resources.shared, flush_seconds=1)
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    movie = await make_movie(resources.engine)
    with StatementCounter(resources.engine, *WRITES) as writes:
        for position in (10, 15, 20):
            await writer.report(profile_id=main.id, movie_id=movie, position=position, duration=100)
        assert writes.count == 1 and writer.held == 1
        assert await writer.flush() == 0  # not yet: the window is still open
        writer.start()
        for _ in range(40):
            await asyncio.sleep(0.1)
            if writer.held == 0:
                break
        await writer.close()
    assert writes.count == 2
    assert (await stored(resources.engine, main.id, movie))["position_seconds"] == 20


async def test_a_movie_counts_as_watched_at_95_percent_and_is_written_at_once(services, resources):
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    movie = await make_movie(resources.engine)
    await services.viewing.save_progress(profile=main, movie_id=movie, position=10, duration=1000)
    with StatementCounter(resources.engine, *WRITES) as writes:
        below = await services.viewing.save_progress(profile=main, movie_id=movie, position=949, duration=1000)
        assert not below.watched and writes.count == 0
        at = await services.viewing.save_progress(profile=main, movie_id=movie, position=950, duration=1000)
        assert at.watched and writes.count == 1
        await services.viewing.save_progress(profile=main, movie_id=movie, position=960, duration=1000)
        assert writes.count == 1  # already watched: coalesced again
    row = await stored(resources.engine, main.id, movie)
    assert row["watched_at"] is not None and row["position_seconds"] == 950
    assert (await services.viewing.continue_watching(profile=main, limit=10)).items == []
    unmarked = await services.viewing.mark_watched(profile=main, movie_id=movie, watched=False)
    assert (unmarked.watched, unmarked.position_seconds) == (False, 0)
    marked = await services.viewing.mark_watched(profile=main, movie_id=movie, watched=True)
    assert marked.watched and (await stored(resources.engine, main.id, movie))["watched_at"] is not None


async def test_a_position_past_the_duration_is_refused_and_writes_nothing(services, resources):
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    movie = await make_movie(resources.engine)
    with pytest.raises(ValidationFailed) as refused:
        await services.viewing.save_progress(profile=main, movie_id=movie, position=101, duration=100)
    assert refused.value.details == {"field": "position_seconds"}
    assert await stored(resources.engine, main.id, movie) is None


async def test_continue_watching_is_newest_first_and_leaves_out_watched_unstarted_and_unseeable_movies(
    services, resources
):
    user = await make_user(resources.engine)
    main = await services.profiles.current(user_id=user, profile_id=None)
    first, second, third = [await make_movie(resources.engine, rating="PG") for _ in range(3)]
    watched, unstarted = await make_movie(resources.engine), await make_movie(resources.engine)
    adult, withdrawn = await make_movie(resources.engine, rating="R"), await make_movie(resources.engine)
    for movie in (first, second, adult, withdrawn, third):
        await services.viewing.save_progress(profile=main, movie_id=movie, position=60, duration=3600)
        await asyncio.sleep(0.01)
    await services.viewing.save_progress(profile=main, movie_id=unstarted, position=0, duration=3600)
    await services.viewing.save_progress(profile=main, movie_id=watched, position=3500, duration=3600)
    await services.viewing.save_progress(profile=main, movie_id=first, position=120, duration=3600)  # played again
    async with resources.engine.begin() as conn:
        await conn.execute(sa.update(movies).where(movies.c.id == withdrawn).values(status="draft"))
    await services.catalog.movies_changed(withdrawn)

    listed = (await services.viewing.continue_watching(profile=main, limit=10)).items
    assert [i.movie_id for i in listed] == [first, third, adult, second]
    assert listed[0].position_seconds == 120 and listed[0].title and listed[0].slug
    with pytest.raises(ValidationFailed):  # the main profile is the account holder's: no parental limit
        await services.profiles.update(user_id=user, profile_id=main.id, changes={"max_age_rating": "PG"})
    limited = msgspec.structs.replace(main, max_age_rating="PG")  # as a limited profile sees the same history
    assert [i.movie_id for i in (await services.viewing.continue_watching(profile=limited, limit=10)).items] == [
        first, third, second]
    assert [i.movie_id for i in (await services.viewing.continue_watching(profile=limited, limit=2)).items] == [
        first, third]


async def test_the_watchlist_is_idempotent_newest_first_and_pages_with_a_cursor(services, resources):
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    films = [await make_movie(resources.engine) for _ in range(3)]
    for movie in films:
        await services.viewing.add_to_watchlist(profile=main, movie_id=movie)
    await services.viewing.add_to_watchlist(profile=main, movie_id=films[0])  # again: no error, no second row
    assert len(await rows(resources.engine, sa.select(watchlist).where(watchlist.c.profile_id == main.id))) == 3
    everything = await services.viewing.watchlist(profile=main, limit=10, cursor=None)
    assert sorted(i.movie_id for i in everything.items) == films and everything.next_cursor is None
    page = await services.viewing.watchlist(profile=main, limit=2, cursor=None)
    rest = await services.viewing.watchlist(profile=main, limit=2, cursor=page.next_cursor)
    assert [i.movie_id for i in page.items + rest.items] == [i.movie_id for i in everything.items]
    assert rest.next_cursor is None
    with pytest.raises(ValidationFailed):
        await services.viewing.watchlist(profile=main, limit=2, cursor="not-a-cursor")
    await services.viewing.remove_from_watchlist(profile=main, movie_id=films[1])
    await services.viewing.remove_from_watchlist(profile=main, movie_id=films[1])
    assert films[1] not in [i.movie_id for i in (await services.viewing.watchlist(profile=main, limit=10, cursor=None)).items]


async def test_unknown_and_unpublished_movies_are_not_found(services, resources):
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    draft = await make_movie(resources.engine, status="draft")
    for movie in (draft, 10**9):
        with pytest.raises(NotFound):
            await services.viewing.add_to_watchlist(profile=main, movie_id=movie)
        with pytest.raises(NotFound):
            await services.viewing.rate(profile=main, movie_id=movie, score=5)
        with pytest.raises(NotFound):
            await services.viewing.save_progress(profile=main, movie_id=movie, position=1, duration=10)
    assert await rows(resources.engine, sa.select(watchlist).where(watchlist.c.profile_id == main.id)) == []


async def test_a_parental_limit_hides_stronger_movies_from_every_viewer_feature(services, resources):
    user = await make_user(resources.engine)
    kids = await services.profiles.create(user_id=user, name="Kids", max_age_rating="PG")
    adult = await make_movie(resources.engine, rating="R")
    family = await make_movie(resources.engine, rating="PG")
    attempts = [
        services.viewing.add_to_watchlist(profile=kids, movie_id=adult),
        services.viewing.rate(profile=kids, movie_id=adult, score=9),
        services.viewing.save_progress(profile=kids, movie_id=adult, position=5, duration=100),
        services.viewing.get_progress(profile=kids, movie_id=adult),
        services.viewing.rating(profile=kids, movie_id=adult),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound):
            await attempt
    for table in (watchlist, ratings, watch_progress):
        assert await rows(resources.engine, sa.select(table).where(table.c.profile_id == kids.id)) == []
    await services.viewing.add_to_watchlist(profile=kids, movie_id=family)
    assert (await services.viewing.rate(profile=kids, movie_id=family, score=7)).score == 7


async def test_concurrent_votes_and_changed_votes_keep_the_totals_exact(services, resources):
    movie = await make_movie(resources.engine)
    voters = [await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
              for _ in range(20)]
    rng = random.Random(7)
    first = {v.id: rng.randint(1, 10) for v in voters}
    await asyncio.gather(*(services.viewing.rate(profile=v, movie_id=movie, score=first[v.id]) for v in voters))
    changes = {v.id: rng.randint(1, 10) for v in voters[:8]}
    await asyncio.gather(
        *(services.viewing.rate(profile=v, movie_id=movie, score=changes[v.id]) for v in voters[:8]),
        *(services.viewing.rate(profile=v, movie_id=movie, score=None) for v in voters[8:12]),
        *(services.viewing.rate(profile=v, movie_id=movie, score=first[v.id]) for v in voters[12:]),  # unchanged
    )
    expected = {**first, **changes}
    for v in voters[8:12]:
        del expected[v.id]
    [totals] = await rows(resources.engine, sa.select(movies.c.rating_sum, movies.c.rating_count, movies.c.rating_avg)
                          .where(movies.c.id == movie))
    [recount] = await rows(resources.engine, sa.select(sa.func.sum(ratings.c.score).label("s"),
                                                       sa.func.count().label("n")).where(ratings.c.movie_id == movie))
    assert (totals["rating_sum"], totals["rating_count"]) == (int(recount["s"]), recount["n"])
    assert (totals["rating_sum"], totals["rating_count"]) == (sum(expected.values()), len(expected))
    assert totals["rating_avg"] == (totals["rating_sum"] * 200 + totals["rating_count"]) // (2 * totals["rating_count"])
    summary = await services.viewing.rating(profile=voters[0], movie_id=movie)
    assert summary.count == len(expected) and summary.score == expected[voters[0].id]
    assert summary.average == round(sum(expected.values()) / len(expected), 1)


async def test_a_vote_refreshes_the_cached_movie(services, resources):
    movie = await make_movie(resources.engine)
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    resources.invalidations.start()
    await resources.invalidations.ready()
    from vedina.services.visibility import Audience

    before = msgspec.json.decode((await services.catalog.get_movie(movie_id=movie, audience=Audience())).body)
    await services.viewing.rate(profile=main, movie_id=movie, score=8)
    after = msgspec.json.decode((await services.catalog.get_movie(movie_id=movie, audience=Audience())).body)
    assert before != after


async def test_progress_and_continue_watching_are_answered_from_memory_until_a_report(services, resources):
    resources.invalidations.start()  # as a serving worker does: near caches are trusted once subscribed
    await resources.invalidations.ready()
    main = await services.profiles.current(user_id=await make_user(resources.engine), profile_id=None)
    movie = await make_movie(resources.engine)
    await services.viewing.save_progress(profile=main, movie_id=movie, position=30, duration=3600)
    assert (await services.viewing.get_progress(profile=main, movie_id=movie)).position_seconds == 30
    await services.viewing.continue_watching(profile=main, limit=10)
    with StatementCounter(resources.engine, "SELECT") as reads:  # the database, and the embedded shared store
        again = await services.viewing.get_progress(profile=main, movie_id=movie)
        listed = await services.viewing.continue_watching(profile=main, limit=10)
    assert reads.count == 0, reads.statements
    assert again.position_seconds == 30 and [i.movie_id for i in listed.items] == [movie]
    await services.viewing.save_progress(profile=main, movie_id=movie, position=90, duration=3600)
    assert (await services.viewing.get_progress(profile=main, movie_id=movie)).position_seconds == 90
    assert (await services.viewing.continue_watching(profile=main, limit=10)).items[0].position_seconds == 90
