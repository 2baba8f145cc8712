"""The embedded profile's database read (a cache miss): aiosqlite vs alternatives.

Run: python -m pytest benches/bench_sqlite_access.py -p no:cacheprovider -s --benchmark-columns=mean,ops

One movie by primary key, 200 times per round, on a WAL SQLite file:

- ``repository``: what Vedina does (``MovieRepository.get``: SQLAlchemy Core, statements built
  once, on aiosqlite, whose every statement is a hop to its worker thread and back);
- ``aiosqlite_raw``: the same query on aiosqlite without SQLAlchemy;
- ``sqlite3_inline``: the stdlib driver called directly on the event loop's thread (no hop).

Why Vedina keeps aiosqlite (ADR 0008): a read reaches the database only on a near-cache miss,
and a synchronous call on the event loop would block every request of the worker for as long as
SQLite waits on another process's write lock (``busy_timeout``), which the thread hop avoids.
"""

from __future__ import annotations

import asyncio
import sqlite3

import aiosqlite
import pytest

READS = 200


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """(loop, settings, file) of a migrated embedded database holding one movie."""
    from vedina.config import load_settings
    from vedina.storage.database import create_engine
    from vedina.storage.migrate import upgrade
    from vedina.storage.movies import MovieRepository

    data_dir = tmp_path_factory.mktemp("sqlite-access")
    settings = load_settings({"DATA_DIR": str(data_dir)})
    loop = asyncio.new_event_loop()
    loop.run_until_complete(upgrade(settings))

    async def add_movie() -> None:
        engine = create_engine(settings)
        async with engine.begin() as conn:
            movie_id = await MovieRepository.insert(conn, slug="m", title="M", synopsis="", maturity_rating="G", genres=[])
            await MovieRepository.insert_asset(conn, movie_id=movie_id, kind="video", path="m.mp4", content_type="video/mp4")
        await engine.dispose()

    loop.run_until_complete(add_movie())
    yield loop, settings, str(data_dir / "vedina.sqlite3")
    loop.close()


QUERY = "SELECT id, slug, title, synopsis, release_year, duration_seconds, maturity_rating, genres FROM movies WHERE id = ?"
ASSETS = "SELECT id, movie_id, kind, path, content_type, size_bytes, language, label FROM media_assets WHERE movie_id = ?"


def test_repository(benchmark, database):
    from vedina.storage.database import create_engine
    from vedina.storage.movies import MovieRepository

    loop, settings, _ = database
    engine = create_engine(settings)
    movies = MovieRepository(engine)

    async def reads():
        for _ in range(READS):
            assert (await movies.get(1))["slug"] == "m"

    benchmark(lambda: loop.run_until_complete(reads()))
    print(f"\nrepository (SQLAlchemy + aiosqlite): {benchmark.stats['mean'] / READS * 1e6:.0f} us/read")
    loop.run_until_complete(engine.dispose())


def test_aiosqlite_raw(benchmark, database):
    loop, _, path = database
    connection = loop.run_until_complete(aiosqlite.connect(path))

    async def reads():
        for _ in range(READS):
            async with connection.execute(QUERY, (1,)) as cursor:
                assert (await cursor.fetchone())[1] == "m"
            async with connection.execute(ASSETS, (1,)) as cursor:
                await cursor.fetchall()

    benchmark(lambda: loop.run_until_complete(reads()))
    print(f"\naiosqlite without SQLAlchemy: {benchmark.stats['mean'] / READS * 1e6:.0f} us/read")
    loop.run_until_complete(connection.close())


def test_sqlite3_inline(benchmark, database):
    _, _, path = database
    connection = sqlite3.connect(path)

    def reads():
        for _ in range(READS):
            assert connection.execute(QUERY, (1,)).fetchone()[1] == "m"
            connection.execute(ASSETS, (1,)).fetchall()

    benchmark(reads)
    print(f"\nsqlite3 on the loop's thread: {benchmark.stats['mean'] / READS * 1e6:.0f} us/read")
    connection.close()
