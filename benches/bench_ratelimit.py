"""Host-tier rate limit decision: HostRateLimiter.check vs the `limits` library.

Run: python -m pytest benches/bench_ratelimit.py -p no:cacheprovider --benchmark-columns=mean,ops

Both limiters allow (a limit far above the request rate), so each call is a
full read-modify-write. `limits` uses its in-process MemoryStorage with the
moving-window strategy; the host tier is shared by every process of the host.
"""

import pytest
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from vedina._native import HostRateLimiter


@pytest.fixture
def host(tmp_path):
    return HostRateLimiter(str(tmp_path / "bench.shm"), 65536)


def test_host_tier_check(benchmark, host):
    def decide():
        return host.check("user:42", limit=1_000_000_000, period=1.0, burst=1_000_000)

    assert benchmark(decide).allowed


def test_limits_moving_window(benchmark):
    limiter = MovingWindowRateLimiter(MemoryStorage())
    # the moving window keeps one entry per hit: a smaller limit keeps it bounded
    item = RateLimitItemPerSecond(100_000)

    def decide():
        return limiter.hit(item, "user", "42")

    benchmark(decide)
