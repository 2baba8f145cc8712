"""Catalog queries at 1k and 100k movies, both profiles: does the latency stay flat?

Run (services from scripts/services.sh for the real profile):

    python benches/bench_catalog_scale.py                 # 1k and 100k, embedded and real
    python benches/bench_catalog_scale.py --sizes 1000,20000 --profiles embedded

For each profile and size: a fresh database (SQLite file; MariaDB ``vedina_bench``), migrated,
``vedina demo-data --movies N``'s generator, then each query below run ``--reads`` times in a
rotation, timing what a cache miss costs (the database round trips through the repositories;
a cache hit costs no query at all, see benches/load/bench_api.py):

- ``list``: the first page, newest first;
- ``list_deep``: the page after 50 pages (a keyset cursor, no offset);
- ``list_genre``: a page of one genre sorted by popularity;
- ``search``: what a user types to find a movie they know: two words of a random title, the
  last one half-typed (a prefix);
- ``search_typo``: one word of a random title with two letters swapped (nothing matches: the
  fallback's trigram lookup, then the corrected search);
- ``detail``: one movie with its credits and media.

Prints p50/p95 in ms per query and the ratio p50(largest)/p50(smallest); the aim is <= 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vedina.config import load_settings  # noqa: E402
from vedina.demo.catalog import generate_catalog  # noqa: E402
from vedina.storage import search  # noqa: E402
from vedina.storage.catalog_queries import CatalogQueries, Filters, Keyset  # noqa: E402
from vedina.storage.clock import utcnow  # noqa: E402
from vedina.storage.database import create_engine  # noqa: E402
from vedina.storage.migrate import upgrade  # noqa: E402
from vedina.storage.movies import MovieRepository  # noqa: E402
from vedina.storage.schema import genres, movies  # noqa: E402

PAGE = 20


def settings_for(profile: str, data_dir: Path):
    env = {"DATA_DIR": str(data_dir), "VEDINA_ENV": "test", "LOG_LEVEL": "error"}
    if profile == "real":
        env.update(DB_HOST=os.environ.get("VEDINA_TEST_DB_HOST", "127.0.0.1"), DB_NAME="vedina_bench", DB_USER="vedina",
                   DB_PASSWORD=os.environ.get("VEDINA_TEST_DB_PASSWORD", "vedina-test-password"))
    return load_settings(env)


async def fresh_database(settings) -> None:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        def drop(sync_conn) -> None:
            existing = sa.MetaData()
            existing.reflect(sync_conn)
            existing.drop_all(sync_conn)
        await conn.run_sync(drop)
    await engine.dispose()
    await upgrade(settings)


async def measure(settings, *, size: int, reads: int) -> dict[str, list[float]]:
    await fresh_database(settings)
    engine = create_engine(settings)
    seconds = await generate_catalog(engine, count=size, seed=1, clips=["demo/color-bars.mp4"])
    print(f"  generated {size} movies in {seconds:.1f} s", flush=True)
    queries, repository = CatalogQueries(engine), MovieRepository(engine)
    rng = random.Random(5)
    async with engine.connect() as conn:
        genre_id = (await conn.execute(sa.select(genres.c.id).where(genres.c.slug == "drama"))).scalar_one()
        ids = (await conn.execute(sa.select(movies.c.id).where(movies.c.status == "published"))).scalars().all()
        titles = (await conn.execute(sa.select(movies.c.title).where(movies.c.id.in_(rng.sample(ids, 300))))).scalars().all()
    typed = []
    for title in titles:
        words = search.terms(title)[:2]
        if words:
            words[-1] = words[-1][: max(3, len(words[-1]) // 2 + 1)]
            typed.append(words)
    typos = []
    for title in titles:
        long_words = [w for w in search.terms(title) if len(w) >= 6]
        if long_words:
            word = rng.choice(long_words)
            i = rng.randrange(1, len(word) - 2)
            typos.append(word[:i] + word[i + 1] + word[i] + word[i + 2:])
    now = utcnow()
    visible = Filters(window_at=now)
    # The 50th page's keyset, found once by walking (what a client's cursor holds).
    after = None
    for _ in range(min(50, size // PAGE - 1)):
        after = (await queries.list(visible, sort="newest", after=after, limit=PAGE)).next_keyset
    deep: Keyset | None = after

    def expression(words: list[str]) -> str:
        if queries.dialect == "sqlite":
            return search.fts5_expression(words, prefix=True)
        return search.mariadb_expression(words, prefix=True)

    async def typo() -> None:
        word = rng.choice(typos)
        page = await queries.search(expression([word]), visible, offset=0, limit=PAGE)
        if not page.rows:
            corrected = await queries.correct(word) or word
            await queries.search(expression([corrected]), visible, offset=0, limit=PAGE)

    cases = {
        "list": lambda: queries.list(visible, sort="newest", after=None, limit=PAGE),
        "list_deep": lambda: queries.list(visible, sort="newest", after=deep, limit=PAGE),
        "list_genre": lambda: queries.list(Filters(window_at=now, genre_id=genre_id), sort="popularity", after=None,
                                           limit=PAGE),
        "search": lambda: queries.search(expression(rng.choice(typed)), visible, offset=0, limit=PAGE),
        "search_typo": typo,
        "detail": lambda: repository.get(rng.choice(ids)),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for name, run in cases.items():  # warm up
        await run()
    for _ in range(reads):
        for name, run in cases.items():
            started = time.perf_counter()
            await run()
            timings[name].append((time.perf_counter() - started) * 1000)
    await engine.dispose()
    return timings


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--profiles", default="embedded,real")
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("asyncmy").setLevel(logging.ERROR)  # the server's notes on DDL and INSERT IGNORE
    sizes = [int(s) for s in args.sizes.split(",")]
    worst = 0.0
    for profile in args.profiles.split(","):
        results: dict[int, dict[str, list[float]]] = {}
        for size in sizes:
            with tempfile.TemporaryDirectory() as data_dir:
                print(f"{profile} @ {size}:", flush=True)
                results[size] = asyncio.run(measure(settings_for(profile, Path(data_dir)), size=size, reads=args.reads))
        small, large = sizes[0], sizes[-1]
        print(f"\n{profile}: p50 / p95 in ms, and p50 ratio {large}/{small}")
        print(f"{'query':<12}" + "".join(f"{size:>20}" for size in sizes) + f"{'ratio':>8}")
        for name in results[small]:
            cells = "".join(
                f"{percentile(results[s][name], 50):>11.2f} /{percentile(results[s][name], 95):>7.2f}" for s in sizes
            )
            ratio = percentile(results[large][name], 50) / percentile(results[small][name], 50)
            worst = max(worst, ratio)
            print(f"{name:<12}{cells}{ratio:>7.2f}x")
        print()
    print(f"worst p50 ratio: {worst:.2f}x (aim: <= 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
