"""Fail fast while Redis cannot be reached, instead of every request waiting out TCP timeouts.

Redis answers in well under a millisecond, so a command that takes a second is not slow: its master
is gone, a failover is under way, or the network to it is cut. Behind Sentinel each new connection
first asks the sentinels, so one command on a cut link could wait for several connect timeouts in a
row (measured: 14 s for a catalog read and a timed-out login on an app host cut off from Redis).

Every command of the request path's client (and every pipeline) runs through one
:class:`RedisGuard` per process:

- it gets ``deadline`` seconds in all (connecting, asking the sentinels, its retries);
- a failure (refused, reset, timed out, a transport found closed) *opens* the guard: from then on
  every command fails at once with ``redis.exceptions.ConnectionError``, which callers already
  treat as the outage it is (the shared cache reads the database, the rest answers ``503`` with
  ``Retry-After``);
- meanwhile a background task PINGs Redis every ``cooldown`` seconds (each PING within the
  deadline); the first answer closes the guard. No request ever waits for a probe, so a request
  that needs Redis several times costs at most one deadline, and only when the outage begins.

A command that Redis answers with an error (a wrong type, a script error) is an answer, not an
outage: it passes through and leaves the guard closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from vedina.metrics import REDIS_GUARD

T = TypeVar("T")

COOLDOWN_S = 1.0


def _broken_transport(exc: BaseException) -> bool:
    """uvloop's error for a write on a transport the peer closed (redis-py passes it through as is)."""
    return isinstance(exc, RuntimeError) and "handler is closed" in str(exc)


class RedisGuard:
    def __init__(self, *, deadline: float, cooldown: float = COOLDOWN_S) -> None:
        self.deadline = deadline
        self.cooldown = cooldown
        self._open = False
        self._prober: asyncio.Task | None = None
        self._failed = REDIS_GUARD.labels("failed")
        self._skipped = REDIS_GUARD.labels("skipped")

    @property
    def is_open(self) -> bool:
        return self._open

    async def run(self, command: Callable[[], Awaitable[T]], *, ping: Callable[[], Awaitable[Any]],
                  pool: Any = None) -> T:
        """``command()`` within the deadline, or a ConnectionError (at once while the guard is open).
        ``ping``: an unguarded PING for the background probe; ``pool``: the client's connection
        pool, emptied when a connection turns out broken."""
        if self._open:
            self._skipped.inc()
            raise RedisConnectionError("Redis is unavailable (failing fast until a PING is answered)")
        try:
            async with asyncio.timeout(self.deadline):
                return await command()
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not _broken_transport(exc):
                raise
            self._failed.inc()
            if _broken_transport(exc) and pool is not None:
                await pool.disconnect()  # the pool held a connection whose transport is gone
            self._trip(ping)
            raise RedisConnectionError(f"Redis is unavailable: {type(exc).__name__}: {exc}") from exc

    def _trip(self, ping: Callable[[], Awaitable[Any]]) -> None:
        self._open = True
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe(ping))

    async def _probe(self, ping: Callable[[], Awaitable[Any]]) -> None:
        while True:
            await asyncio.sleep(self.cooldown)
            try:
                async with asyncio.timeout(self.deadline):
                    await ping()
            except Exception:  # still down (or answering garbage): keep failing fast
                continue
            self._open = False
            return

    async def close(self) -> None:
        """Stop the background probe (the client is closing)."""
        if self._prober is not None and not self._prober.done():
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
