"""Rate limiting units: settings, policies, principals, the Lua script against
the Rust GCRA, the Redis fallback, and the middleware's use of the request context."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket

import pytest
from prometheus_client import REGISTRY
from robyn import Headers, Request, Response
from robyn.robyn import QueryParams, Url

from tests.conftest import free_port, require_profile
from vedina._native import HostRateLimiter, gcra_decide
from vedina.config import ConfigError, load_settings, parse_rate, parse_trusted_proxies
from vedina.http.context import context_of
from vedina.http.middleware import begin
from vedina.security.ratelimit import (
    Policy,
    RateLimiter,
    RateLimitMiddleware,
    RedisGCRA,
    build_policies,
    client_ip,
    default_shm_path,
    group_of,
    principal_of,
)

PROXIES = parse_trusted_proxies("10.0.0.0/8, 2001:db8:ffff::/48")


def make_request(path: str = "/api/movies", *, method: str = "GET", peer: str = "192.0.2.1", headers=None) -> Request:
    h = Headers({})
    for name, value in (headers or {}).items():
        h.set(name, value)
    return begin(Request(QueryParams(), h, {}, b"", method, Url("http", "test", path), {}, {}, None, peer))


def principal(kind: str, subject: str):
    from vedina.services.principals import Principal

    return Principal(kind=kind, subject=subject, role="viewer", permissions=frozenset(), via="bearer")


def fallbacks() -> float:
    return REGISTRY.get_sample_value("vedina_rate_limit_fallbacks_total") or 0.0


def redis_client(url: str, *, timeout: float = 0.05):
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


# -- settings -----------------------------------------------------------------------


def test_rate_format_parses_count_period_and_burst():
    assert parse_rate("V", "300/60s burst 100").interval_us == 200_000
    rate = parse_rate("V", "10/m")
    assert (rate.count, rate.period_us, rate.burst) == (10, 60_000_000, 10)
    assert parse_rate("V", "5/250ms burst 2").interval_us == 50_000
    assert parse_rate("V", " off ") is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [("RATE_LIMIT_API", "lots"), ("RATE_LIMIT_AUTH", "0/1s"), ("RATE_LIMIT_STREAM", "5/1s burst 0"),
     ("RATE_LIMIT_API", "2000000/1s"), ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"),
     ("RATE_LIMIT_REDIS_TIMEOUT_MS", "0"), ("RATE_LIMIT_ENABLED", "maybe")],
)
def test_bad_rate_limit_settings_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        load_settings({variable: value})


def test_policy_off_removes_it_and_defaults_keep_the_others():
    policies = build_policies(load_settings({"RATE_LIMIT_STREAM": "off"}))
    assert set(policies) == {"auth", "api"}
    assert policies["api"] == Policy("api", 200_000, 100)


def test_default_shm_path_differs_per_port_and_data_dir(tmp_path):
    a = default_shm_path(load_settings({"DATA_DIR": str(tmp_path / "a"), "PORT": "8000"}))
    b = default_shm_path(load_settings({"DATA_DIR": str(tmp_path / "a"), "PORT": "8001"}))
    c = default_shm_path(load_settings({"DATA_DIR": str(tmp_path / "c"), "PORT": "8000"}))
    assert len({a, b, c}) == 3
    if os.path.isdir("/dev/shm"):
        assert str(a).startswith(f"/dev/shm/vedina-{os.geteuid()}/ratelimit-")


# -- policies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "range_header", "group"),
    [
        ("GET", "/health", None, None), ("GET", "/ready", None, None), ("GET", "/metrics", None, None),
        ("POST", "/api/auth/login", None, "auth"), ("POST", "/api/auth/register", None, "auth"),
        ("POST", "/api/auth/password-reset/confirm", None, "auth"), ("GET", "/api/auth/whoami", None, "api"),
        ("GET", "/api/authors", None, "api"), ("POST", "/api/authors", None, "api"),
        ("GET", "/api/media/7", None, "stream"), ("HEAD", "/api/media/7", None, "stream"),
        ("GET", "/api/media/7", "bytes=0-", "stream"), ("GET", "/api/media/7", "bytes=0-1023", "stream"),
        ("GET", "/api/media/7", "bytes=1048576-", "api"), ("GET", "/api/media/7", "bytes=100-199", "api"),
        # Several ranges are judged by what is served after merging: conservatively, a start.
        ("GET", "/api/media/7", "bytes=100-199, 300-", "stream"), ("GET", "/api/media/7", "bytes=1-1,0-", "stream"),
        ("GET", "/api/media/7", "bytes=1-,0-0", "stream"), ("GET", "/api/media/7", "bytes=5-3", "stream"),
        # The endpoint answers these with the whole file, so they are stream starts:
        ("GET", "/api/media/7", "x", "stream"), ("GET", "/api/media/7", "bytes=-99999999999", "stream"),
        ("GET", "/api/media/7", "bytes=5-4x", "stream"), ("GET", "/api/media/7", "items=5-9", "stream"),
        ("POST", "/api/media/7", None, "api"),
        ("GET", "/api/movies", None, "api"), ("GET", "/docs", None, "api"), ("GET", "/healthz", None, "api"),
    ],
)
def test_route_groups(method, path, range_header, group):
    assert group_of(method, path, range_header) == group


# -- principals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.1", None, "192.0.2.1"),
        ("192.0.2.1", "203.0.113.9", "192.0.2.1"),  # untrusted peer: the header is ignored
        ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
        ("10.0.0.2", "198.51.100.1, 203.0.113.9", "203.0.113.9"),  # the client cannot choose what it prepends
        ("10.0.0.2", "203.0.113.9, 10.0.0.7", "203.0.113.9"),  # two trusted hops
        ("10.0.0.2", "garbage, 10.0.0.7", "10.0.0.7"),
        ("10.0.0.2", "", "10.0.0.2"),
        ("::ffff:192.0.2.5", None, "192.0.2.5"),
        ("2001:db8:1:2:aaaa::1", None, "2001:db8:1:2::/64"),
        ("[2001:db8:ffff::1]", "2001:db8:1:2::9", "2001:db8:1:2::/64"),
    ],
)
def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(peer, forwarded, expected):
    assert client_ip(peer, forwarded, PROXIES) == expected


def test_client_ip_with_no_trusted_proxy_ignores_the_header():
    assert client_ip("10.0.0.2", "203.0.113.9", ()) == "10.0.0.2"


def test_principal_is_the_identity_when_present_else_the_ip():
    request = make_request(peer="10.0.0.2", headers={"x-forwarded-for": "203.0.113.9"})
    assert principal_of(request, PROXIES) == "ip:203.0.113.9"
    assert principal_of(request, ()) == "ip:10.0.0.2"
    context_of(request).principal = principal("user", "42")
    assert principal_of(request, PROXIES) == "user:42"
    context_of(request).principal = principal("api_key", "AKIDEXAMPLE")
    assert principal_of(request, PROXIES) == "api_key:AKIDEXAMPLE"


# -- the cluster tier's Lua script is the Rust GCRA ---------------------------------------

POLICIES = [
    Policy("a", 100_000, 5),  # 10/s burst 5
    Policy("b", 8_571_428, 3),  # "7/60s burst 3": T floored to whole microseconds
    Policy("c", 1, 1),  # the smallest T
    Policy("d", 3_600_000_000, 1_000),  # 1/h burst 1000: large values
]


def script_of(policy: Policy, seed: int, start_us: int) -> list[tuple[int, int]]:
    """(now_us, cost) steps: bursts, boundaries (1 µs before/at retry time), idle gaps, costs 0..burst."""
    rng = random.Random(seed)
    now, steps = start_us, []
    for _ in range(300):
        choice = rng.random()
        if choice < 0.5:
            now += 0
        elif choice < 0.8:
            now += rng.randrange(0, 3 * policy.interval_us + 1)
        elif choice < 0.95:
            now += policy.interval_us - 1 if rng.random() < 0.5 else policy.interval_us
        else:
            now += policy.interval_us * policy.burst * rng.randrange(1, 3)
        steps.append((now, rng.choice([1, 1, 1, 0, min(2, policy.burst), policy.burst])))
    return steps


@pytest.fixture
async def redis_url():
    require_profile("real")
    url = f"{os.environ['VEDINA_TEST_REDIS']}/5"
    client = redis_client(url, timeout=5)
    await client.flushdb()
    yield url
    await client.flushdb()
    await client.aclose()


@pytest.mark.integration
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
async def test_lua_script_and_rust_gcra_take_identical_decisions(redis_url, policy):
    client = redis_client(redis_url, timeout=5)
    gcra = RedisGCRA(client)
    start_us = 1_764_000_000_000_000
    key = "vedina:rl:cross-check"
    tat_ns, seen = 0, set()
    try:
        for step, (now_us, cost) in enumerate(script_of(policy, seed=policy.burst * 7919 + policy.interval_us, start_us=start_us)):
            # Redis expires keys on its own clock, not the scripted one: give
            # the script the state the Rust side holds before every step.
            if tat_ns:
                await client.set(key, tat_ns // 1000)
            else:
                await client.delete(key)
            lua = await gcra.raw("cross-check", policy, cost=cost, now_us=now_us)
            rust, new_tat_ns = gcra_decide(
                tat_ns, now_us * 1000, limit=1, period=policy.period_seconds, burst=policy.burst, cost=cost
            )
            expected = [
                int(rust.allowed), rust.remaining, round(rust.retry_after * 1e6), round(rust.reset_after * 1e6),
                new_tat_ns // 1000,
            ]
            assert lua == expected, f"step {step}: now={now_us} cost={cost}"
            assert new_tat_ns % 1000 == 0  # the host tier's T is a whole number of microseconds too
            stored = await client.get(key)
            expires_ms = -(-round(rust.reset_after * 1e6) // 1000)  # at the reset time, rounded up
            if rust.allowed and expires_ms >= 100:  # shorter ones may be gone already
                assert int(stored) * 1000 == new_tat_ns
                assert expires_ms - 100 < await client.pttl(key) <= expires_ms
            elif rust.allowed and rust.reset_after > 0:
                assert stored is None or int(stored) * 1000 == new_tat_ns
            seen.add(rust.allowed)
            tat_ns = new_tat_ns
        assert {True, False} <= seen  # the script exercised both answers
    finally:
        await client.aclose()


@pytest.mark.integration
async def test_lua_script_uses_redis_time_and_expires_keys_at_reset(redis_url):
    client = redis_client(redis_url, timeout=5)
    gcra = RedisGCRA(client)
    policy = Policy("t", 2_000_000, 3)  # T = 2 s
    try:
        decisions = [await gcra.decide("timed", policy) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert decisions[3].tier == "cluster"
        assert 1.9 < decisions[3].retry_after <= 2.0
        assert 5.9 < decisions[3].reset_after <= 6.0
        pttl = await client.pttl("vedina:rl:timed")
        assert 5_800 < pttl <= 6_000
        assert await client.ttl("vedina:rl:other") == -2
    finally:
        await client.aclose()


# -- Redis failure: the host tier decides -------------------------------------------------


def _limiter(tmp_path, url: str) -> RateLimiter:
    return RateLimiter(HostRateLimiter(str(tmp_path / "host.shm"), 1024), RedisGCRA(redis_client(url)))


async def test_redis_unreachable_falls_back_to_host_tier_and_still_limits(tmp_path, caplog):
    limiter = _limiter(tmp_path, f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    policy = Policy("api", 60_000_000, 5)
    before = fallbacks()
    with caplog.at_level(logging.WARNING, logger="vedina.security.ratelimit.limiter"):
        decisions = [await limiter.decide(policy, "ip:192.0.2.1") for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert {d.tier for d in decisions} == {"host"}
    assert fallbacks() - before == 8
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Redis failed" in warnings[0].getMessage()
    await limiter.close()


async def test_redis_that_never_answers_times_out_into_the_host_tier(tmp_path):
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        limiter = _limiter(tmp_path, f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        before = fallbacks()
        loop = asyncio.get_running_loop()
        started = loop.time()
        decision = await limiter.decide(Policy("api", 60_000_000, 2), "ip:192.0.2.9")
        assert loop.time() - started < 1.0
        assert decision.allowed and decision.tier == "host" and decision.remaining == 1
        assert fallbacks() - before == 1
        await limiter.close()


# -- middleware: the decision travels in the request context, never in a header -------------


@pytest.fixture
def limiting(tmp_path) -> RateLimitMiddleware:
    settings = load_settings({
        "DATA_DIR": str(tmp_path), "RATE_LIMIT_API": "1/h burst 3", "RATE_LIMIT_SHM_PATH": str(tmp_path / "rl.shm"),
    })
    return RateLimitMiddleware(settings)


# What the old design used as its internal header: a client sending it changes nothing.
FORGED = {"x-vedina-ratelimit": "0123456789abcdef0123456789abcdef 999 999 0"}


async def test_exempt_paths_get_no_ratelimit_headers_whatever_the_client_sends(limiting):
    request = await limiting.before(make_request("/health", headers=FORGED))
    response = limiting.after(request, Response(200, Headers({}), b"ok"))
    assert not response.headers.contains("ratelimit-remaining")


async def test_after_without_a_decision_adds_nothing(limiting):
    response = limiting.after(make_request(headers=FORGED), Response(200, Headers({}), b"ok"))
    assert not response.headers.contains("ratelimit-limit")


async def test_client_headers_do_not_change_the_decision(limiting):
    answers = []
    for _ in range(4):
        result = await limiting.before(make_request(headers=FORGED))
        if isinstance(result, Response):
            answers.append((result.status_code, result.headers.get("ratelimit-remaining")))
        else:
            response = limiting.after(result, Response(200, Headers({}), b"ok"))
            answers.append((200, response.headers.get("ratelimit-remaining")))
    assert answers == [(200, "2"), (200, "1"), (200, "0"), (429, "0")]


async def test_refusal_is_the_common_error_shape_with_retry_after(limiting):
    for _ in range(3):
        assert isinstance(await limiting.before(make_request(peer="192.0.2.77")), Request)
    before = REGISTRY.get_sample_value("vedina_rate_limited_total", {"policy": "api"}) or 0.0
    refusal = await limiting.before(make_request(peer="192.0.2.77", headers={"x-request-id": "req-1"}))
    assert refusal.status_code == 429
    assert refusal.headers.get("retry-after") == "3600"
    assert refusal.headers.get("ratelimit-limit") == "3"
    assert refusal.headers.get("x-request-id") == "req-1"
    assert refusal.headers.get("x-content-type-options") == "nosniff"
    import msgspec

    body = msgspec.json.decode(refusal.description)
    assert body["error"]["code"] == "rate_limited" and body["error"]["status"] == "fail"
    assert body["error"]["details"] == {"policy": "api", "retry_after": 3600}
    assert REGISTRY.get_sample_value("vedina_rate_limited_total", {"policy": "api"}) == before + 1
    # another client is not affected
    assert isinstance(await limiting.before(make_request(peer="192.0.2.78")), Request)
