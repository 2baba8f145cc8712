"""The invalidation channel and the caches on it: generation table, near cache, shared cache.

Real Redis for the pub/sub channel and the shared cache (the real profile);
the host table is a real shared-memory file, bumped from another process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import require_profile
from vedina._native import GenerationTable
from vedina.storage.invalidation import LEASE, PROPAGATION_BOUND, HostInvalidations, RedisInvalidations
from vedina.storage.near_cache import NearCache
from vedina.storage.shared_cache import SharedCache


def table(tmp_path, name: str = "gen.shm") -> GenerationTable:
    return GenerationTable(str(tmp_path / name), 1024)


# -- the host table ---------------------------------------------------------------------


def test_a_bump_in_another_process_changes_the_stamp_here(tmp_path):
    here = table(tmp_path)
    before = here.stamp("auth:user:1", "auth:session:f")
    code = f"from vedina._native import GenerationTable; GenerationTable({str(tmp_path / 'gen.shm')!r}, 1024).bump('auth:user:1')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert here.stamp("auth:user:1", "auth:session:f") != before
    assert here.stamp("auth:user:2") == here.stamp("auth:user:2"), "other keys keep their stamp"


def test_table_file_is_private_and_a_world_writable_one_is_refused(tmp_path):
    t = table(tmp_path)
    assert os.stat(t.path).st_mode & 0o777 == 0o600
    os.chmod(t.path, 0o666)
    with pytest.raises(ValueError, match="writable by it alone"):
        GenerationTable(t.path, 1024)


def test_stamp_takes_only_strings(tmp_path):
    with pytest.raises(TypeError):
        table(tmp_path).stamp("a", 7)


# -- near cache -----------------------------------------------------------------------------


class Loads:
    def __init__(self, value="v", delay: float = 0.0) -> None:
        self.count = 0
        self.value = value
        self.delay = delay

    async def __call__(self):
        self.count += 1
        number = self.count
        await asyncio.sleep(self.delay)
        return f"{self.value}{number}"


async def test_near_cache_hits_until_a_dependency_is_published(tmp_path):
    channel = HostInvalidations(table(tmp_path))
    cache = NearCache(channel, name="t", max_entries=10, ttl=60)
    load = Loads()
    assert await cache.get_or_load("k", ("dep:a", "dep:b"), load) == "v1"
    assert await cache.get_or_load("k", ("dep:a", "dep:b"), load) == "v1"
    await channel.publish("dep:b")
    assert await cache.get_or_load("k", ("dep:a", "dep:b"), load) == "v2"
    assert load.count == 2


async def test_near_cache_loads_a_cold_key_once_for_concurrent_readers(tmp_path):
    cache = NearCache(HostInvalidations(table(tmp_path)), name="t", max_entries=10, ttl=60)
    load = Loads(delay=0.05)
    values = await asyncio.gather(*(cache.get_or_load("k", ("d",), load) for _ in range(50)))
    assert load.count == 1 and set(values) == {"v1"}


async def test_a_reader_after_an_invalidation_never_joins_an_older_load(tmp_path):
    channel = HostInvalidations(table(tmp_path))
    cache = NearCache(channel, name="t", max_entries=10, ttl=60)
    load = Loads(delay=0.05)
    first = asyncio.create_task(cache.get_or_load("k", ("d",), load))
    await asyncio.sleep(0.01)  # the first load is in flight...
    await channel.publish("d")  # ...when the data changes
    second = await cache.get_or_load("k", ("d",), load)
    assert await first == "v1" and second == "v2"
    # The first load's value was stamped before the change: it is not served again.
    assert await cache.get_or_load("k", ("d",), load) == "v2"


async def test_failed_loads_are_not_cached_and_reach_every_joined_reader(tmp_path):
    cache = NearCache(HostInvalidations(table(tmp_path)), name="t", max_entries=10, ttl=60)
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise LookupError("gone")

    results = await asyncio.gather(*(cache.get_or_load("k", ("d",), failing) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, LookupError) for r in results)
    assert await cache.get_or_load("k", ("d",), Loads()) == "v1"


async def test_near_cache_is_bounded_and_entries_expire(tmp_path):
    cache = NearCache(HostInvalidations(table(tmp_path)), name="t", max_entries=3, ttl=0.05)
    for i in range(10):
        await cache.get_or_load(f"k{i}", ("d",), Loads())
    assert len(cache) == 3
    load = Loads()
    await cache.get_or_load("k9", ("d",), load)
    assert load.count == 0
    await asyncio.sleep(0.06)
    await cache.get_or_load("k9", ("d",), load)
    assert load.count == 1


# -- Redis: pub/sub between hosts, under a lease ----------------------------------------------


@pytest.fixture
async def redis_url():
    require_profile("real")
    return f"{os.environ['VEDINA_TEST_REDIS']}/3"


def redis_client(url: str):
    import redis.asyncio as redis

    return redis.from_url(url, socket_timeout=5)


async def wait_until(predicate, timeout: float) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def test_a_publish_on_one_host_reaches_the_other_within_the_bound(tmp_path, redis_url):
    # Two hosts: their own shared-memory tables, one Redis.
    a = RedisInvalidations(table(tmp_path, "a.shm"), redis_client(redis_url), channel="test:inv")
    b = RedisInvalidations(table(tmp_path, "b.shm"), redis_client(redis_url), channel="test:inv")
    try:
        for host in (a, b):
            host.start()
            await asyncio.wait_for(host.ready(), 5)
        before = b.stamp("auth:deny:x")
        assert before is not None
        await a.publish("auth:deny:x")
        assert await wait_until(lambda: b.stamp("auth:deny:x") != before, PROPAGATION_BOUND) < PROPAGATION_BOUND
    finally:
        await a.close()
        await b.close()


async def test_a_dropped_subscription_stops_trust_and_a_new_one_invalidates_everything(tmp_path, redis_url):
    client = redis_client(redis_url)
    host = RedisInvalidations(table(tmp_path), client, channel="test:inv-drop")
    try:
        host.start()
        await asyncio.wait_for(host.ready(), 5)
        stamp = host.stamp("catalog:movie:1")
        # Kill the subscriber's connection, as a Redis restart or a network cut would.
        killer = redis_client(redis_url)
        await killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        # Messages published now are lost to this host: it must not trust its caches...
        await wait_until(lambda: host.stamp("catalog:movie:1") is None, LEASE + 0.5)
        await killer.publish("test:inv-drop", b"catalog:movie:2")
        # ...until it holds a subscription again, and then nothing cached before is trusted.
        await wait_until(lambda: host.stamp("catalog:movie:1") is not None, 10)
        assert host.stamp("catalog:movie:1") != stamp
        await killer.aclose()
    finally:
        await host.close()
        await client.aclose()


async def test_an_unanswered_subscription_loses_trust_within_the_lease(tmp_path, redis_url):
    """A silent cut (no error, no answers): trust ends by itself."""
    host = RedisInvalidations(table(tmp_path), redis_client(redis_url), channel="test:inv-pause")
    pauser = redis_client(redis_url)
    try:
        host.start()
        await asyncio.wait_for(host.ready(), 5)
        await pauser.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        waited = await wait_until(lambda: host.stamp("k") is None, PROPAGATION_BOUND)
        assert waited <= PROPAGATION_BOUND
    finally:
        await pauser.execute_command("CLIENT", "UNPAUSE")
        await pauser.aclose()
        await host.close()


# -- the shared (Redis) cache: a late fill cannot resurrect stale data -------------------------


async def test_shared_cache_serves_the_stored_copy_until_invalidated(redis_url):
    client = redis_client(redis_url)
    await client.flushdb()
    cache = SharedCache(client, prefix="test:", ttl=60)
    calls = []

    async def load():
        calls.append(1)
        return b"doc%d" % len(calls)

    assert await cache.get_or_load("d:1", "v:1", load) == b"doc1"
    assert await cache.get_or_load("d:1", "v:1", load) == b"doc1"
    await cache.invalidate("v:1")
    assert await cache.get_or_load("d:1", "v:1", load) == b"doc2"
    await client.aclose()


async def test_shared_cache_fill_that_raced_a_write_is_never_served(redis_url):
    client = redis_client(redis_url)
    await client.flushdb()
    cache = SharedCache(client, prefix="test:", ttl=60)
    writer_done = asyncio.Event()

    async def slow_old_read():
        await writer_done.wait()  # the write commits and invalidates while this read is in flight
        return b"old"

    reader = asyncio.create_task(cache.get_or_load("movie", "movie", slow_old_read))
    await asyncio.sleep(0.02)
    await cache.invalidate("movie")
    writer_done.set()
    assert await reader == b"old"  # that request began before the write: it may see the old row

    async def fresh():
        return b"new"

    assert await cache.get_or_load("movie", "movie", fresh) == b"new"
    await client.aclose()


async def test_shared_cache_without_redis_reads_the_database(redis_url):
    import redis.asyncio as redis

    dead = redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    cache = SharedCache(dead, ttl=60)

    async def load():
        return b"from the database"

    assert await cache.get_or_load("k", "k", load) == b"from the database"
    await dead.aclose()


# -- review findings ---------------------------------------------------------------------------


class Untrusted:
    """An invalidation channel that is down: nothing may be trusted."""

    def stamp(self, *keys):
        return None


async def test_an_untrusted_cache_shares_no_load(tmp_path):
    cache = NearCache(Untrusted(), name="t", max_entries=10, ttl=60)
    load = Loads(delay=0.02)
    await asyncio.gather(*(cache.get_or_load("k", ("d",), load) for _ in range(5)))
    assert load.count == 5 and len(cache) == 0  # each request read for itself; nothing kept


async def test_a_cancelled_leader_does_not_fail_the_requests_that_joined_it(tmp_path):
    cache = NearCache(HostInvalidations(table(tmp_path)), name="t", max_entries=10, ttl=60)
    load = Loads(delay=0.05)
    leader = asyncio.create_task(cache.get_or_load("k", ("d",), load))
    await asyncio.sleep(0.01)
    follower = asyncio.create_task(cache.get_or_load("k", ("d",), load))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await follower == "v2"  # it loaded for itself
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_a_silent_reconnect_of_the_subscription_still_invalidates_everything(tmp_path, redis_url):
    """A client that reconnects and resubscribes by itself (redis-py with retries) must not hide
    the messages published while it was away: the new subscription withdraws trust and bumps all."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError

    retrying = redis.from_url(redis_url, retry=Retry(NoBackoff(), 3), retry_on_error=[RedisConnectionError])
    host = RedisInvalidations(table(tmp_path), retrying, channel="test:inv-silent")
    try:
        host.start()
        await asyncio.wait_for(host.ready(), 5)
        stamp = host.stamp("auth:deny:x")
        killer = redis_client(redis_url)
        await killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await killer.aclose()
        await wait_until(lambda: host.stamp("auth:deny:x") not in (None, stamp), 5)
    finally:
        await host.close()
        await retrying.aclose()
