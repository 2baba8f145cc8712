"""Rate limiting in a live server: 2 Granian workers, one key hammered by
concurrent clients. Embedded profile: the host tier (shared memory across the
workers); real profile: the Redis tier."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import LiveServer
from vedina._native import HostRateLimiter

BURST = 20
INTERVAL_S = 30.0  # "2/60s": one request's worth of time, slow enough that a test run adds at most one
FORGED = {"x-vedina-ratelimit": "0123456789abcdef0123456789abcdef 999 999 0"}


@pytest.fixture(scope="module", params=["embedded", "real"])
def limited_server(request, live_data, tmp_path_factory):
    profile = request.param
    env = dict(live_data(profile))
    shm = tmp_path_factory.mktemp(f"rl-{profile}") / "ratelimit.shm"
    env.update(
        RATE_LIMIT_API=f"2/60s burst {BURST}", RATE_LIMIT_SHM_PATH=str(shm), TRUSTED_PROXIES="127.0.0.1",
    )
    if profile == "real":
        import redis

        env["REDIS_URL"] = f"{os.environ['VEDINA_TEST_REDIS']}/6"
        redis.from_url(env["REDIS_URL"]).flushdb()
    server = LiveServer(server="granian", env=env, workers=2)
    yield profile, server, env
    server.stop()


def test_concurrent_clients_get_what_gcra_allows_across_workers(limited_server):
    profile, server, env = limited_server
    url = f"{server.base_url}/api/movies"

    def one(_):
        # a fresh connection per request, so both workers answer
        return httpx.get(url, timeout=10)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(one, range(60)))
    elapsed = time.monotonic() - started

    allowed = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(allowed) + len(refused) == 60
    gcra_allows = BURST + int(elapsed // INTERVAL_S)
    assert abs(len(allowed) - gcra_allows) <= 1, (len(allowed), gcra_allows)

    for r in allowed:
        assert r.headers["ratelimit-limit"] == str(BURST)
        assert 0 <= int(r.headers["ratelimit-remaining"]) < BURST
        assert int(r.headers["ratelimit-reset"]) > 0
    assert sorted(int(r.headers["ratelimit-remaining"]) for r in allowed)[:2] == [0, 1]
    for r in refused:
        assert 1 <= int(r.headers["retry-after"]) <= INTERVAL_S
        assert r.headers["ratelimit-remaining"] == "0"
        assert r.headers["x-request-id"]
        error = r.json()["error"]
        assert (error["code"], error["status"], error["details"]["policy"]) == ("rate_limited", "fail", "api")

    if profile == "real":  # decided in Redis: the key is there, expiring at the reset time
        import redis

        client = redis.from_url(env["REDIS_URL"])
        assert 0 < client.pttl("vedina:rl:api:ip:127.0.0.1") <= (BURST + 1) * INTERVAL_S * 1000
    else:  # decided in the shared table every worker opened
        host = HostRateLimiter(env["RATE_LIMIT_SHM_PATH"])
        probe = host.check("api:ip:127.0.0.1", limit=1, period=INTERVAL_S, burst=BURST, cost=0)
        assert probe.remaining == 0


def test_health_is_never_limited_and_forged_header_adds_nothing(limited_server):
    _, server, _ = limited_server
    for _ in range(BURST + 5):
        response = httpx.get(f"{server.base_url}/health", headers=FORGED)
        assert response.status_code == 200
        assert "ratelimit-remaining" not in response.headers


def test_forwarded_for_from_a_trusted_proxy_is_the_client_and_forged_header_changes_nothing(limited_server):
    _, server, _ = limited_server
    url = f"{server.base_url}/api/movies"
    # the peer (127.0.0.1) is a trusted proxy here: each forwarded client has its own budget
    first = httpx.get(url, headers={"x-forwarded-for": "198.51.100.1, 203.0.113.50", **FORGED})
    second = httpx.get(url, headers={"x-forwarded-for": "203.0.113.50", **FORGED})
    other = httpx.get(url, headers={"x-forwarded-for": "203.0.113.51"})
    assert [r.status_code for r in (first, second, other)] == [200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in (first, second, other)] == [
        str(BURST - 1), str(BURST - 2), str(BURST - 1)
    ]
