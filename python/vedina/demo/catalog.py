"""``vedina demo-data --movies N``: a large, realistic catalog, generated quickly.

Movies with titles, synopses, years, ratings, genres, spoken and subtitle
languages, a director and writers, a billed cast, popularity and votes; their
video rows point at the demo clips. Deterministic for a seed. Rows are
written in batches of a few thousand per statement with ids chosen here (no
round trip per row), so 100k movies, ~700k credits and ~1M other rows take
well under a minute on either database.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.services.catalog_editor import slugify, sort_title
from vedina.storage import search
from vedina.storage.clock import utcnow
from vedina.storage.schema import (
    credits,
    genres,
    media_assets,
    movie_genres,
    movie_languages,
    movies,
    people,
)

GENRES = {
    "action": "Action", "adventure": "Adventure", "animation": "Animation", "comedy": "Comedy", "crime": "Crime",
    "documentary": "Documentary", "drama": "Drama", "family": "Family", "fantasy": "Fantasy", "history": "History",
    "horror": "Horror", "music": "Music", "mystery": "Mystery", "romance": "Romance", "sci-fi": "Science Fiction",
    "thriller": "Thriller", "war": "War", "western": "Western",
}
_FIRST = (
    "Ada Alan Alice Amara Ana Anton Aria Arjun Astrid Ben Bianca Carlos Chen Chloe Clara Dan Daria Diego Elena Elif "
    "Emil Erik Eva Farah Felix Freya Gabriel Grace Hana Hugo Ines Ivan Jade James Jana Jonas Julia Kai Kenji Lara "
    "Leo Lina Lucas Luna Maya Mateo Mia Mila Nadia Nico Nina Noah Nora Olga Omar Oscar Paula Pedro Priya Rafael "
    "Rosa Ruth Sami Sara Sofia Tariq Theo Uma Vera Victor Yara Yusuf Zoe"
).split()
_LAST = (
    "Abbott Adeyemi Alvarez Andersen Bauer Becker Bianchi Brandt Campbell Castro Chen Costa Dahl Dubois Eriksen "
    "Fischer Fontaine Garcia Gomez Hansen Hartmann Ito Ivanova Jensen Kaur Keller Kim Klein Kowalski Lambert Larsen "
    "Laurent Lee Lindqvist Lopez Marino Martin Meyer Moreau Morales Murphy Nakamura Nielsen Novak Okafor Olsen "
    "Ortiz Park Patel Perez Petrov Quinn Rahman Reyes Ricci Rossi Russo Sato Schmidt Silva Singh Sorensen Suzuki "
    "Tanaka Torres Valdez Vargas Wagner Weber Wolf Yamamoto Young Zimmermann"
).split()
_ADJECTIVES = (
    "Silent Broken Crimson Hidden Endless Frozen Golden Hollow Last Lost Midnight Northern Quiet Restless Secret "
    "Shattered Silver Burning Distant Electric Falling Forgotten Invisible Lonely Wild Scarlet Velvet Wandering "
    "Ancient Bitter Blind Bright Careless Cold Crooked Dark Deadly Desperate Dusty Eternal Fearless Fragile Gentle "
    "Glass Grand Haunted Heavy Hungry Iron Little Lucky Mad Marble Narrow Pale Perfect Proud Quick Rare Red Rough "
    "Sacred Savage Shallow Sleeping Small Solar Southern Stolen Strange Sweet Tender Thin Twisted Wicked Winding"
).split()
_NOUNS = (
    "Harbor Protocol Garden Signal Horizon Kingdom Letter Machine Mirror Orchard River Shadow Station Storm Summer "
    "Tide Winter Empire Frontier Lantern Voyage Archive Circuit Echo Fortress Island Matrix Meridian Orbit Paradox "
    "Anchor Arrow Bridge Canyon Castle Cathedral Chapter Compass Crown Desert Diamond Dragon Engine Falcon Feather "
    "Festival Forest Fountain Glacier Hammer Highway Hunter Journey Jungle Key Ladder Legacy Lighthouse Market Mask "
    "Melody Mountain Nightfall Ocean Opera Palace Passage Pilgrim Prophet Puzzle Railway Ransom Rebel Requiem Riddle "
    "Saint Sanctuary Satellite Secretary Serpent Sheriff Shore Siege Soldier Sparrow Spirit Stranger Sunrise Swan "
    "Temple Thief Throne Thunder Tower Treasure Tunnel Valley Village Voice Volcano Warden Whisper Widow Wolf"
).split()
_VERBS = ("discovers chases hides remembers betrays rescues follows questions builds loses guards forgives haunts "
          "inherits outwits deceives confronts abandons awakens escapes").split()
_SYLLABLES = "al bar cor dra el fen gar hal is jor ka lum mor nev or pra quel ros sal tor ul vel wyn xa yor zan".split()


def _invented(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables)).capitalize()


_LANGUAGES = ["en", "fr", "de", "es", "it", "ja", "ko", "pt", "sv", "hi", "zh", "ar", "pl", "nl", "tr"]
_RATINGS = ["G", "PG", "PG-13", "R", "NC-17"]
_RATING_WEIGHTS = [10, 25, 35, 25, 5]
_JOBS = ["Director", "Writer", "Composer", "Cinematographer"]
BATCH = 4000


def _title(rng: random.Random, places: list[str]) -> str:
    shape = rng.randrange(6)
    if shape == 0:
        return f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    if shape == 1:
        return f"{rng.choice(_NOUNS)} of {rng.choice(places)}"
    if shape == 2:
        return f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.randrange(2, 5)}"
    if shape == 3:
        return f"{rng.choice(places)} {rng.choice(_NOUNS)}"
    if shape == 4:
        return f"The {rng.choice(_NOUNS)} of {rng.choice(places)}"
    return f"A {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} in {rng.choice(places)}"


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


async def _insert(conn: AsyncConnection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for batch in _batches(rows):
        await conn.execute(sa.insert(table), batch)


async def _next_id(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)))).scalar_one()) + 1


async def ensure_genres(conn: AsyncConnection) -> dict[str, int]:
    existing = dict((await conn.execute(sa.select(genres.c.slug, genres.c.id))).all())
    missing = [{"slug": slug, "name": name} for slug, name in GENRES.items() if slug not in existing]
    if missing:
        await conn.execute(sa.insert(genres), missing)
        existing = dict((await conn.execute(sa.select(genres.c.slug, genres.c.id))).all())
    return existing


async def generate_catalog(engine: AsyncEngine, *, count: int, seed: int = 7, clips: list[str]) -> float:
    """Add ``count`` generated movies; returns the seconds it took."""
    started = time.perf_counter()
    rng = random.Random(seed)
    now = utcnow()
    async with engine.begin() as conn:
        genre_ids = await ensure_genres(conn)
        first_movie, first_person = await _next_id(conn, movies), await _next_id(conn, people)
    person_count = max(50, count // 2)
    # Real catalogs name thousands of places and people: invented ones keep words as rare as theirs.
    places = sorted({_invented(rng, rng.choice((2, 3))) for _ in range(max(100, count // 20))})
    surnames = _LAST + sorted({_invented(rng, 3) for _ in range(max(100, count // 10))})
    names = [f"{rng.choice(_FIRST)} {rng.choice(surnames)}" for _ in range(person_count)]
    person_rows = [{"id": first_person + i, "name": name, "created_at": now} for i, name in enumerate(names)]

    movie_rows: list[dict[str, Any]] = []
    genre_rows: list[dict[str, Any]] = []
    language_rows: list[dict[str, Any]] = []
    credit_rows: list[dict[str, Any]] = []
    asset_rows: list[dict[str, Any]] = []
    genre_slugs = list(genre_ids)
    for i in range(count):
        movie_id = first_movie + i
        title = _title(rng, places)
        chosen_genres = rng.sample(genre_slugs, rng.randint(1, 3))
        spoken = rng.sample(_LANGUAGES, rng.choice((1, 1, 1, 2)))
        subtitles = rng.sample(_LANGUAGES, rng.randint(1, 5))
        crew = [(first_person + rng.randrange(person_count), job) for job in _JOBS[: rng.randint(1, 4)]]
        cast = [first_person + rng.randrange(person_count) for _ in range(rng.randint(3, 6))]
        votes = int(rng.paretovariate(1.2) * 10) - 10
        average = rng.uniform(3.0, 9.5)
        rating_sum = round(votes * average)
        status = "published" if rng.random() < 0.96 else "draft"
        window = rng.random() < 0.02
        published_at = now - timedelta(minutes=rng.randrange(60 * 24 * 3650))
        movie_rows.append({
            "id": movie_id, "slug": f"{slugify(title)}-{movie_id}", "title": title, "original_title": "",
            "sort_title": sort_title(title),
            "synopsis": (f"In {rng.choice(places)}, a {rng.choice(_ADJECTIVES).lower()} "
                         f"{rng.choice(_NOUNS).lower()} {rng.choice(_VERBS)} the {rng.choice(_NOUNS).lower()} "
                         f"of {rng.choice(places)}."),
            "release_year": rng.randint(1930, 2026), "runtime_minutes": rng.randint(75, 190),
            "duration_seconds": 8, "maturity_rating": rng.choices(_RATINGS, _RATING_WEIGHTS)[0],
            "genres": chosen_genres, "spoken_languages": spoken, "subtitle_languages": subtitles,
            "plan_tier": rng.choices(["basic", "standard", "premium"], [70, 20, 10])[0],
            "status": status, "published_at": published_at if status == "published" else None,
            "available_from": now - timedelta(days=30) if window else None,
            "available_until": now + timedelta(days=rng.randint(1, 60)) if window else None,
            "version": 1,
            "people_text": " ".join(dict.fromkeys(names[p - first_person] for p in [*cast, *(c for c, _ in crew)])),
            "popularity": int(rng.paretovariate(1.1) * 100), "rating_count": votes, "rating_sum": rating_sum,
            "rating_avg": round(rating_sum * 100 / votes) if votes else 0, "created_at": now, "updated_at": now,
        })
        genre_rows += [{"movie_id": movie_id, "genre_id": genre_ids[g]} for g in chosen_genres]
        language_rows += [{"movie_id": movie_id, "kind": "spoken", "language": code} for code in spoken]
        language_rows += [{"movie_id": movie_id, "kind": "subtitle", "language": code} for code in subtitles]
        credit_rows += [{"movie_id": movie_id, "person_id": p, "department": "crew", "role": job, "position": n}
                        for n, (p, job) in enumerate(crew)]
        credit_rows += [{"movie_id": movie_id, "person_id": p, "department": "cast", "role": f"Role {n + 1}",
                         "position": n} for n, p in enumerate(cast)]
        if clips:
            asset_rows.append({"movie_id": movie_id, "kind": "video", "path": clips[i % len(clips)],
                               "content_type": "video/mp4", "status": "ready", "created_at": now})

    vocabulary = [row["title"] for row in movie_rows] + names
    async with engine.begin() as conn:
        await _insert(conn, people, person_rows)
        async with search.bulk_indexing(conn, first_id=first_movie):
            await _insert(conn, movies, movie_rows)
        await _insert(conn, movie_genres, genre_rows)
        await _insert(conn, movie_languages, language_rows)
        await _insert(conn, credits, credit_rows)
        await _insert(conn, media_assets, asset_rows)
        await search.add_to_vocabulary(conn, dict.fromkeys(vocabulary))
    async with engine.begin() as conn:  # fresh statistics: the planners pick the filter indexes by them
        if conn.dialect.name == "sqlite":
            await conn.execute(sa.text("ANALYZE"))
        else:
            await conn.execute(sa.text("ANALYZE TABLE movies, credits, movie_genres, movie_languages, people"))
    return time.perf_counter() - started
