"""Listing and search on a generated catalog, both profiles: keyset pages walk every visible movie
once in a stable order, filters agree with the rows, search ranks, completes prefixes and forgives typos."""

from __future__ import annotations

from datetime import datetime

import msgspec
import pytest
import sqlalchemy as sa

from vedina.composition import build_services
from vedina.demo.catalog import generate_catalog
from vedina.services.catalog import MovieQuery
from vedina.services.catalog_editor import CreditEntry, MovieCreate, PersonCreate
from vedina.services.visibility import Audience
from vedina.storage.clock import utcnow
from vedina.storage.schema import credits, movie_genres, movie_languages, movies

COUNT = 400


@pytest.fixture
async def catalog(settings, resources):
    services = build_services(settings, resources)
    await generate_catalog(resources.engine, count=COUNT, seed=11, clips=[])
    yield services
    await services.api_keys.usage.close()


async def rows(engine, statement) -> list[dict]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(statement)).mappings().all()]


async def walk(catalog, audience=Audience(), **query) -> list[dict]:
    seen, cursor = [], None
    while True:
        document = await catalog.catalog.list_movies(query=MovieQuery(cursor=cursor, limit=37, **query), audience=audience)
        page = msgspec.json.decode(document.body)
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def visible(row: dict, now: datetime) -> bool:
    return row["status"] == "published" and (row["available_from"] is None or row["available_from"] <= now) and (
        row["available_until"] is None or now < row["available_until"])


KEYS = {
    "newest": lambda r: (-r["published_at"].timestamp(), -r["id"]),
    "title": lambda r: (r["sort_title"].encode(), r["id"]),
    "popularity": lambda r: (-r["popularity"], -r["id"]),
    "rating": lambda r: (-r["rating_avg"], -r["id"]),
}


@pytest.mark.parametrize("sort", list(KEYS))
async def test_keyset_pages_walk_every_visible_movie_once_in_order(catalog, resources, sort):
    everything = await rows(resources.engine, sa.select(movies))
    now = utcnow()
    expected = sorted((r for r in everything if visible(r, now)), key=KEYS[sort])
    walked = await walk(catalog, sort=sort)
    assert [m["id"] for m in walked] == [r["id"] for r in expected]
    assert len(expected) > COUNT * 0.8


async def test_filters_agree_with_the_rows(catalog, resources):
    engine = resources.engine
    now = utcnow()
    shown = {r["id"]: r for r in await rows(engine, sa.select(movies)) if visible(r, now)}
    genre_id, genre = (await rows(engine, sa.text("SELECT id, slug FROM genres ORDER BY slug LIMIT 1")))[0].values()
    with_genre = {r["movie_id"] for r in await rows(engine, sa.select(movie_genres).where(movie_genres.c.genre_id == genre_id))}
    assert {m["id"] for m in await walk(catalog, genre=genre)} == with_genre & shown.keys()

    with_french = {r["movie_id"] for r in await rows(engine, sa.select(movie_languages).where(
        movie_languages.c.language == "fr"))}
    assert {m["id"] for m in await walk(catalog, language="fr")} == with_french & shown.keys()

    in_years = {i for i, r in shown.items() if 1980 <= r["release_year"] <= 1989}
    assert {m["id"] for m in await walk(catalog, year_from=1980, year_to=1989)} == in_years

    person = (await rows(engine, sa.select(credits.c.person_id).limit(1)))[0]["person_id"]
    credited = {r["movie_id"] for r in await rows(engine, sa.select(credits).where(credits.c.person_id == person))}
    assert {m["id"] for m in await walk(catalog, person=person)} == credited & shown.keys()

    family = {i for i, r in shown.items() if r["maturity_rating"] in ("G", "PG")}
    assert {m["id"] for m in await walk(catalog, age_ratings=("G", "PG"))} == family
    limited = await walk(catalog, Audience(max_age_rating="PG"), sort="title")
    assert {m["id"] for m in limited} == family, "a parental limit filters like the rating filter"
    editors = await walk(catalog, Audience(sees_unpublished=True), status="draft")
    assert {m["id"] for m in editors} == {r["id"] for r in await rows(engine, sa.select(movies).where(
        movies.c.status == "draft"))}


async def search(catalog, q: str, audience=Audience(), **query) -> dict:
    document = await catalog.catalog.list_movies(query=MovieQuery(q=q, **query), audience=audience)
    return msgspec.json.decode(document.body)


@pytest.fixture
async def matrix(catalog):
    editor = catalog.catalog_editor
    keanu = await editor.create_person(PersonCreate(name="Keanu Reeves"))
    movie_id, version = await editor.create(MovieCreate(
        title="The Matrix", original_title="Matrix", synopsis="A hacker learns that reality is a simulation.",
        release_year=1999, maturity_rating="R", cast=[CreditEntry(person_id=keanu, role="Neo")],
    ))
    await editor.publish(movie_id, if_version=version)
    return movie_id


async def test_search_finds_titles_ranked_first(catalog, matrix):
    found = await search(catalog, "the matrix")
    assert found["items"][0]["id"] == matrix and found["corrected_query"] is None


async def test_search_completes_the_word_being_typed(catalog, matrix):
    assert matrix in [m["id"] for m in (await search(catalog, "matr"))["items"]]
    assert (await search(catalog, "matr "))["items"] == [], "a finished word is matched whole"


async def test_search_covers_people_and_synopsis(catalog, matrix):
    assert matrix in [m["id"] for m in (await search(catalog, "keanu reeves"))["items"]]
    assert matrix in [m["id"] for m in (await search(catalog, "hacker simulation"))["items"]]


async def test_a_misspelled_search_finds_the_movie_and_says_how(catalog, matrix):
    found = await search(catalog, "matirx ")
    assert found["items"][0]["id"] == matrix
    assert found["corrected_query"] == "matrix"
    assert matrix in [m["id"] for m in (await search(catalog, "keanu reevs "))["items"]]


async def test_search_combines_with_filters_and_parental_limits(catalog, matrix):
    def ids(found: dict) -> list[int]:
        return [m["id"] for m in found["items"]]

    assert matrix not in ids(await search(catalog, "matrix ", year_from=2000))
    limited = await search(catalog, "matrix ", Audience(max_age_rating="PG-13"))
    assert matrix not in ids(limited) and all(m["maturity_rating"] != "R" for m in limited["items"])
    assert ids(await search(catalog, "the matrix ", age_ratings=("R",)))[0] == matrix


async def test_search_text_cannot_inject_operators(catalog, matrix):
    for q in ['matrix" OR "a', "matrix -", "+matrix* @@ (", "NEAR(matrix)", "'; DROP TABLE movies; --"]:
        found = await search(catalog, q)
        assert isinstance(found["items"], list)
    assert (await rows(catalog.resources.engine, sa.select(sa.func.count().label("n")).select_from(movies)))[0]["n"] > COUNT


async def test_a_window_opening_shows_the_movie_in_cached_pages_at_once(catalog, resources):
    """Pages are cached; a movie whose window opens a moment later appears on the first read after."""
    import asyncio
    from datetime import timedelta

    resources.invalidations.start()  # as a serving worker does: caches are trusted once subscribed
    await resources.invalidations.ready()
    editor = catalog.catalog_editor
    movie_id, version = await editor.create(MovieCreate(
        title="Opening Night", available_from=(utcnow() + timedelta(seconds=2)).replace(tzinfo=None)))
    await editor.publish(movie_id, if_version=version)
    before = await walk(catalog, sort="title")
    assert movie_id not in [m["id"] for m in before]
    assert [m["id"] for m in await walk(catalog, sort="title")] == [m["id"] for m in before], "served from memory"
    await asyncio.sleep(2.5)
    assert movie_id in [m["id"] for m in await walk(catalog, sort="title")]
