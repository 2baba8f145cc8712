"""The request path's Redis client fails fast while Redis cannot be reached (vedina.storage.redis_guard).

A "silent" Redis is a TCP server that accepts and never answers: what a client sees when the
network to Redis is cut or its host hangs (no refusal, no reset, just nothing).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.conftest import TEST_REDIS_DB, require_profile
from vedina.config import ConfigError, load_settings
from vedina.storage.redis_clients import redis_client
from vedina.storage.redis_guard import RedisGuard


async def refused() -> None:
    raise RedisConnectionError("Error 111 connecting")


async def answered() -> str:
    return "PONG"


class Pings:
    """A background probe's PING: fails until ``up`` is set; counts the tries."""

    def __init__(self) -> None:
        self.up = False
        self.tries = 0

    async def __call__(self) -> str:
        self.tries += 1
        if not self.up:
            raise RedisConnectionError("still refused")
        return "PONG"


async def test_a_failure_opens_the_guard_and_commands_fail_at_once_until_a_background_ping_answers():
    guard, pings = RedisGuard(deadline=1, cooldown=0.05), Pings()
    with pytest.raises(RedisConnectionError):
        await guard.run(refused, ping=pings)
    assert guard.is_open
    sent = []

    async def command():
        sent.append(1)
        return "PONG"

    for _ in range(3):
        with pytest.raises(RedisConnectionError, match="failing fast"):
            await guard.run(command, ping=pings)
    assert sent == []  # not even tried while open
    await asyncio.sleep(0.3)
    assert guard.is_open and pings.tries >= 3  # the probe keeps trying, in the background
    pings.up = True
    await asyncio.sleep(0.15)
    assert not guard.is_open
    assert await guard.run(command, ping=pings) == "PONG" and sent == [1]
    await guard.close()


async def test_no_command_waits_for_the_probe_and_one_probe_runs_at_a_time():
    guard = RedisGuard(deadline=5, cooldown=0.01)
    running = []

    async def hanging_ping():
        running.append(1)
        await asyncio.sleep(10)

    with pytest.raises(RedisConnectionError):
        await guard.run(refused, ping=hanging_ping)
    with pytest.raises(RedisConnectionError):
        await guard.run(refused, ping=hanging_ping)  # a command sent before it opened
    await asyncio.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError, match="failing fast"):
        await guard.run(answered, ping=hanging_ping)
    assert time.monotonic() - started < 0.05
    assert running == [1]
    await guard.close()


async def test_a_command_over_the_deadline_fails_and_opens_the_guard():
    guard = RedisGuard(deadline=0.05, cooldown=5)

    async def hangs():
        await asyncio.sleep(10)

    started = time.monotonic()
    with pytest.raises(RedisConnectionError, match="TimeoutError"):
        await guard.run(hangs, ping=answered)
    assert time.monotonic() - started < 1
    assert guard.is_open
    await guard.close()


async def test_errors_that_are_not_outages_pass_through_and_leave_it_closed():
    guard = RedisGuard(deadline=1)

    async def wrong_type():
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")

    async def bug():
        raise RuntimeError("a programming error")

    for command, kind in ((wrong_type, ResponseError), (bug, RuntimeError)):
        with pytest.raises(kind):
            await guard.run(command, ping=answered)
        assert not guard.is_open


@pytest.fixture
def silent_redis():
    """A listening socket that never answers (accepted connections sit in the backlog)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


async def test_a_silent_redis_costs_one_deadline_then_commands_fail_at_once(silent_redis):
    settings = load_settings({"REDIS_URL": silent_redis})
    client = redis_client(settings, socket_timeout=5, socket_connect_timeout=5,
                          guard=RedisGuard(deadline=0.3, cooldown=5))
    try:
        started = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await client.get("vedina:anything")
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(RedisConnectionError, match="failing fast"):
                async with client.pipeline(transaction=False) as pipe:
                    pipe.get("a")
                    await pipe.execute()
        later = time.monotonic() - started
    finally:
        await client.aclose()
    assert 0.25 < first < 2  # the deadline, not the 5 s socket timeouts
    assert later < 0.2  # twenty commands, none of them waited


async def test_on_a_real_redis_commands_and_pipelines_pass_and_error_replies_are_answers():
    require_profile("real")
    url = f"{os.environ['VEDINA_TEST_REDIS']}/{TEST_REDIS_DB}"
    guard = RedisGuard(deadline=1)
    client = redis_client(load_settings({"REDIS_URL": url}), guard=guard)
    try:
        await client.set("vedina:test:guard", b"text")
        async with client.pipeline(transaction=False) as pipe:
            pipe.get("vedina:test:guard")
            pipe.delete("vedina:test:guard")
            assert await pipe.execute() == [b"text", 1]
        await client.set("vedina:test:guard", b"text")
        with pytest.raises(ResponseError):
            await client.incr("vedina:test:guard")
        assert not guard.is_open
        await client.delete("vedina:test:guard")
    finally:
        await client.aclose()


@pytest.mark.parametrize("value", ["0", "9", "60001", "soon"])
def test_a_redis_timeout_out_of_range_stops_the_start(value):
    with pytest.raises(ConfigError, match="REDIS_TIMEOUT_MS"):
        load_settings({"REDIS_TIMEOUT_MS": value})
