"""DB_REPLICA_HOSTS (ADR 0017): catalog reads on a real MariaDB replica, fenced at the primary's GTID
position; writes on the primary; a replica down or lagging past DB_REPLICA_MAX_LAG_S is skipped.

The replica (tests/scale/replica_server.py) runs on 127.0.0.1:3317 for the session, replicating the
test databases from the main server; it is torn down at the end even when a test fails."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from tests.conftest import TEST_DB, TEST_REDIS_DB, profile_env, require_profile, reset_database
from tests.scale.replica_server import ReplicaServer
from vedina.config import ConfigError, load_settings
from vedina.metrics import flush_buffered
from vedina.services.visibility import Audience
from vedina.storage import replicas as replicas_module
from vedina.storage.clock import utcnow
from vedina.storage.movies import GenreRepository, MovieRepository
from vedina.storage.schema import genres

REPLICA_PORT = 3317
REPLICA = f"127.0.0.1:{REPLICA_PORT}"
MAX_LAG_S = 2
VIEWER = Audience()


@pytest.fixture(scope="session")
def replica():
    require_profile("real")
    import os

    # Only the test database: the session's live servers keep writing to theirs, whose tables
    # the replica never received (it starts from the primary's current position).
    server = ReplicaServer(Path(tempfile.mkdtemp(prefix="vedina-replica-")), port=REPLICA_PORT,
                           databases=[TEST_DB], app_user="vedina",
                           app_password=os.environ.get("VEDINA_TEST_DB_PASSWORD", ""))
    try:
        server.start()
        server.follow_primary()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def replica_settings(replica, tmp_path_factory):
    env = profile_env("real", tmp_path_factory.mktemp("replicas"), database=TEST_DB, redis_db=TEST_REDIS_DB,
                      amqp_prefix=f"vt-{uuid.uuid4().hex[:8]}")
    env.update(DB_REPLICA_HOSTS=REPLICA, DB_REPLICA_MAX_LAG_S=str(MAX_LAG_S), DB_REPLICA_WAIT_MS="100")
    for name in ("AMQP_URL", "AMQP_QUEUE_PREFIX"):  # jobs in-process: these tests are about the database
        env.pop(name)
    settings = load_settings(env)
    asyncio.run(reset_database(settings))  # on the primary; replication builds the replica's copy
    replica.wait_caught_up()
    assert "movies" in replica.sql(f"SHOW TABLES FROM `{TEST_DB}`").split()
    return settings


@pytest.fixture
async def services(replica_settings, replica):
    from vedina.composition import open_services

    opened = await open_services(replica_settings)
    opened.resources.invalidations.start()  # near caches trusted, as in a serving worker
    await asyncio.wait_for(opened.resources.invalidations.ready(), timeout=10)
    replica.wait_caught_up()
    await opened.resources.db_replicas.check()
    yield opened
    await asyncio.wait_for(opened.close(), 30)  # a close that hangs is a failure, not a stuck run


def reads(outcome: str) -> float:
    flush_buffered()
    return REGISTRY.get_sample_value("vedina_db_replica_reads_total", {"outcome": outcome}) or 0.0


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"replica": REPLICA})


async def add_genre(services, slug: str) -> None:
    async with services.resources.engine.begin() as conn:
        await GenreRepository.insert(conn, slug=slug, name=slug.title())


async def add_movie(services, title: str) -> int:
    now = utcnow()
    async with services.resources.engine.begin() as conn:
        return await MovieRepository.insert(conn, slug=f"m-{uuid.uuid4().hex[:10]}", title=title, status="published",
                                            published_at=now)


async def rename_movie(services, movie_id: int, title: str) -> None:
    async with services.resources.engine.begin() as conn:
        await MovieRepository.update(conn, movie_id, title=title)


def title_of(document) -> str:
    return msgspec.json.decode(document.body)["title"]


# -- settings ------------------------------------------------------------------------------


def test_replica_hosts_need_the_mariadb_profile_and_well_formed_entries():
    with pytest.raises(ConfigError, match="DB_REPLICA_HOSTS needs DB_HOST"):
        load_settings({"DB_REPLICA_HOSTS": "db2"})
    for bad in ("db2:x", "db2:0", "db2:70000", "::1", "db1", "db2,db2", ",", "user@db2"):
        with pytest.raises(ConfigError, match="DB_REPLICA_HOSTS"):
            load_settings({"DB_HOST": "db1", "DB_REPLICA_HOSTS": bad})
    with pytest.raises(ConfigError, match="DB_REPLICA_MAX_LAG_S"):
        load_settings({"DB_HOST": "db1", "DB_REPLICA_HOSTS": "db2", "DB_REPLICA_MAX_LAG_S": "0"})
    with pytest.raises(ConfigError, match="DB_REPLICA_WAIT_MS"):
        load_settings({"DB_HOST": "db1", "DB_REPLICA_HOSTS": "db2", "DB_REPLICA_WAIT_MS": "-1"})


async def test_without_replica_hosts_the_reader_is_the_primary_engine(resources):
    assert resources.db_replicas is None
    assert resources.reader is resources.engine


# -- routing -------------------------------------------------------------------------------


async def test_catalog_reads_are_served_by_the_replica(services, replica):
    await add_genre(services, "drama")
    replica.wait_caught_up()
    # A row the replica alone holds: a read that returns it was served by the replica.
    replica.sql(f"INSERT INTO `{TEST_DB}`.genres (id, slug, name) VALUES (900001, 'replica-only', 'Replica only')")
    try:
        before = reads("replica")
        assert {"drama", "replica-only"} <= {g["slug"] for g in await services.genres.all()}
        assert await services.genres.id_of("replica-only") == 900001
        assert reads("replica") == before + 2
        assert gauge("vedina_db_replica_up") == 1 and gauge("vedina_db_replica_lag_seconds") == 0
    finally:
        replica.sql(f"DELETE FROM `{TEST_DB}`.genres WHERE id = 900001")


async def test_writes_and_transactions_go_to_the_primary(services, replica):
    await add_genre(services, "comedy")  # a write through the reader would fail: the replica is read-only
    replica.sql(f"INSERT INTO `{TEST_DB}`.genres (id, slug, name) VALUES (900002, 'replica-only-2', 'R')")
    try:
        async with services.resources.engine.connect() as conn:
            slugs = set((await conn.execute(sa.select(genres.c.slug))).scalars())
        assert "comedy" in slugs and "replica-only-2" not in slugs
    finally:
        replica.sql(f"DELETE FROM `{TEST_DB}`.genres WHERE id = 900002")


async def test_a_write_is_read_back_at_once_while_the_replica_sql_thread_is_stopped(services, replica):
    replica.sql("STOP SLAVE SQL_THREAD")
    try:
        behind = reads("behind")
        await add_genre(services, "thriller")
        assert "thriller" not in replica.sql(f"SELECT slug FROM `{TEST_DB}`.genres")  # the replica lags
        started = time.monotonic()
        assert "thriller" in {g["slug"] for g in await services.genres.all()}  # the writer's next read
        assert time.monotonic() - started < 1.0  # bounded by DB_REPLICA_WAIT_MS, then the primary
        assert reads("behind") == behind + 1
        # Another caller (another host: its own services) reads it too: no caller reads older
        # data than the primary held when its read began.
        from vedina.composition import open_services

        other = await open_services(services.settings)
        try:
            await other.resources.db_replicas.check()
            assert await other.genres.id_of("thriller") is not None
        finally:
            await other.close()
    finally:
        replica.sql("START SLAVE SQL_THREAD")


async def test_a_cache_fill_after_an_invalidation_cannot_store_stale_replica_data(services, replica):
    movie_id = await add_movie(services, "Old title")
    replica.wait_caught_up()
    await services.resources.db_replicas.check()
    served = reads("replica")
    assert title_of(await services.catalog.get_movie(movie_id=movie_id, audience=VIEWER)) == "Old title"
    assert reads("replica") == served + 1  # the fill read the replica
    replica.sql("STOP SLAVE SQL_THREAD")
    try:
        await rename_movie(services, movie_id, "New title")
        await services.catalog.movies_changed(movie_id)  # after the commit, as every writer does
        # The fill that follows the invalidation (near cache, then the shared one in Redis).
        assert title_of(await services.catalog.get_movie(movie_id=movie_id, audience=VIEWER)) == "New title"
    finally:
        replica.sql("START SLAVE SQL_THREAD")
    replica.wait_caught_up()
    # What the fill stored is the new title: another host's first read (its shared-cache hit) agrees.
    from vedina.composition import open_services

    other = await open_services(services.settings)
    try:
        assert title_of(await other.catalog.get_movie(movie_id=movie_id, audience=VIEWER)) == "New title"
    finally:
        await other.close()


# -- health --------------------------------------------------------------------------------


async def test_a_stopped_replica_is_skipped_without_errors_and_used_again_when_back(services, replica):
    await add_genre(services, "western")
    replica.wait_caught_up()
    reader = services.resources.db_replicas
    lost = reads("error")

    async def interrupted(conn):  # a read in progress on the replica when it stops
        first = await conn.scalar(sa.text("SELECT @@server_id"))
        if first == 2:
            replica.shutdown()
        return first, await asyncio.wait_for(conn.scalar(sa.text("SELECT @@server_id")), timeout=10)

    # The replica's connection is lost mid-read: the primary answers the read, no error, no hang.
    assert await reader.read(interrupted) == (1, 1)
    assert reads("error") == lost + 1
    # Every later read: served by the primary, no error; the check says why.
    assert "western" in {g["slug"] for g in await services.genres.all()}
    await reader.check()
    assert gauge("vedina_db_replica_up") == 0
    unusable = reads("unusable")
    assert "western" in {g["slug"] for g in await services.genres.all()}
    assert reads("unusable") == unusable + 1
    replica.start()  # replication resumes where it stopped
    replica.wait_caught_up()
    await reader.check()
    assert gauge("vedina_db_replica_up") == 1
    served = reads("replica")
    assert "western" in {g["slug"] for g in await services.genres.all()}
    assert reads("replica") == served + 1  # the pool recovered by itself


async def test_a_replica_read_that_hangs_is_abandoned_and_answered_by_the_primary(services, replica, monkeypatch):
    replica.wait_caught_up()
    reader = services.resources.db_replicas
    await reader.check()
    monkeypatch.setattr(replicas_module, "READ_TIMEOUT", 0.5)
    lost = reads("error")

    async def slow_on_the_replica(conn):  # a replica gone silent mid-read, as far as the app can tell
        return await conn.scalar(sa.text("SELECT IF(@@server_id = 2, SLEEP(5), 0) + @@server_id"))

    started = time.monotonic()
    assert await reader.read(slow_on_the_replica) == 1  # the primary's answer
    assert time.monotonic() - started < 3
    assert reads("error") == lost + 1
    await reader.check()  # the replica itself is fine: used again after the next check


async def test_a_replica_lagging_past_the_bound_is_skipped_until_it_catches_up(services, replica):
    reader = services.resources.db_replicas
    replica.sql("STOP SLAVE SQL_THREAD")
    try:
        deadline = time.monotonic() + 30
        samples = []  # (lag, up) after each check
        while True:
            await add_genre(services, f"g-{uuid.uuid4().hex[:8]}")  # the primary moves on
            await reader.check()
            samples.append((gauge("vedina_db_replica_lag_seconds"), gauge("vedina_db_replica_up")))
            lag, up = samples[-1]
            if up == 0 and lag is not None and lag > MAX_LAG_S:
                break
            assert time.monotonic() < deadline, samples
            await asyncio.sleep(0.5)
        # used while it lagged within the bound, skipped past it (a check that times out under
        # load skips it for a tick too: that is the "down" rule, not the lag rule)
        assert any(up == 1 and 0 < lag <= MAX_LAG_S for lag, up in samples[:-1]), samples
        unusable = reads("unusable")
        await services.genres.all()
        assert reads("unusable") == unusable + 1
    finally:
        replica.sql("START SLAVE SQL_THREAD")
    replica.wait_caught_up()
    await reader.check()
    assert gauge("vedina_db_replica_up") == 1 and gauge("vedina_db_replica_lag_seconds") == 0


async def test_the_replica_metrics_are_exposed(services):
    from vedina.metrics import exposition

    text = exposition()[0].decode()
    assert f'vedina_db_replica_up{{replica="{REPLICA}"}}' in text
    assert f'vedina_db_replica_lag_seconds{{replica="{REPLICA}"}}' in text
    assert 'vedina_db_replica_reads_total{outcome="replica"}' in text
