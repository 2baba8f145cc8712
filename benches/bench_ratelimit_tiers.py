"""The app's limiter against the `limits` library, tier by tier, in one run.

Run: python -m pytest benches/bench_ratelimit_tiers.py -p no:cacheprovider -s --benchmark-columns=mean,ops
(the Redis pair needs VEDINA_TEST_REDIS, e.g. redis://127.0.0.1:6379)

- host tier: ``RateLimiter.decide_host`` (policy key, the Rust call over shared
  memory, the Decision) vs `limits` MemoryStorage with the moving window;
- cluster tier: ``RateLimiter.decide`` with Redis (one EVALSHA) vs `limits`
  async Redis storage (redis-py) with the moving window; both awaited in
  batches of ``BATCH`` on one event loop, so the loop's cost is shared.

Every call is an allowed decision (limits far above the request rate), i.e.
a full read-modify-write. The ratios are printed at the end.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindowRateLimiter
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from vedina._native import HostRateLimiter
from vedina.security.ratelimit import Policy, RateLimiter, RedisGCRA

BATCH = 100
POLICY = Policy("api", 1, 1_000_000)  # T = 1 µs, burst 1e6: always allowed
ITEM = RateLimitItemPerSecond(1_000_000)
_means: dict[str, float] = {}


def _record(name: str, benchmark, per_call: int = 1) -> None:
    _means[name] = benchmark.stats.stats.mean / per_call


def _redis_url() -> str:
    url = os.environ.get("VEDINA_TEST_REDIS")
    if not url:
        pytest.skip("VEDINA_TEST_REDIS not set")
    return f"{url}/7"


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_host_tier_app_limiter(benchmark, tmp_path):
    limiter = RateLimiter(HostRateLimiter(str(tmp_path / "bench.shm")))
    assert benchmark(limiter.decide_host, POLICY, "ip:192.0.2.1").allowed
    _record("host: app limiter", benchmark)


def test_host_tier_limits_memory_moving_window(benchmark):
    limiter = MovingWindowRateLimiter(MemoryStorage())
    assert benchmark(limiter.hit, RateLimitItemPerSecond(100_000), "ip", "192.0.2.1")
    _record("host: limits memory", benchmark)


def test_cluster_tier_app_limiter(benchmark, tmp_path, loop):
    import redis.asyncio as redis

    client = redis.from_url(_redis_url(), socket_timeout=1, socket_connect_timeout=1)
    limiter = RateLimiter(HostRateLimiter(str(tmp_path / "bench.shm")), RedisGCRA(client))

    async def batch():
        return [await limiter.decide(POLICY, "ip:192.0.2.1") for _ in range(BATCH)]

    decisions = benchmark(lambda: loop.run_until_complete(batch()))
    assert all(d.allowed and d.tier == "cluster" for d in decisions)
    _record("cluster: app limiter (Redis Lua)", benchmark, BATCH)
    loop.run_until_complete(client.aclose())


def test_cluster_tier_limits_redis_moving_window(benchmark, loop):
    storage = AsyncRedisStorage(_redis_url().replace("redis://", "async+redis://"), implementation="redispy")
    limiter = AsyncMovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(100_000)

    async def batch():
        return [await limiter.hit(item, "ip", "192.0.2.1") for _ in range(BATCH)]

    assert all(benchmark(lambda: loop.run_until_complete(batch())))
    _record("cluster: limits redis", benchmark, BATCH)


def test_print_ratios():
    """Last in the file: the table of means and ratios (pytest -s shows it)."""
    lines = [f"{name:36s} {mean * 1e6:9.2f} µs" for name, mean in _means.items()]
    for ours, theirs in (("host: app limiter", "host: limits memory"),
                         ("cluster: app limiter (Redis Lua)", "cluster: limits redis")):
        if ours in _means and theirs in _means:
            lines.append(f"{theirs} / {ours} = {_means[theirs] / _means[ours]:.2f} (>1: the app is faster)")
    print("\n" + "\n".join(lines))
    assert "host: app limiter" in _means
