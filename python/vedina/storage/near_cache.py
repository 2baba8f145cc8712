"""A per-worker cache whose entries die the moment what they were built from changes.

Each entry is stamped (:meth:`Invalidations.stamp`) with the keys it depends
on, *before* its value is loaded; a lookup is a hit only while the stamp is
unchanged, the entry is younger than its TTL, and the invalidation channel is
trusted (:mod:`vedina.storage.invalidation`). A hit is a dict lookup and one
native call: no I/O.

Loads are single-flight: concurrent misses of one key under one stamp share
a single load, so a cold key under load reaches the database once per worker.
A request that starts after an invalidation never joins a load that began
before it (the stamps differ).

>>> cache = NearCache(invalidations, name="movies", max_entries=10_000, ttl=300)
>>> movie = await cache.get_or_load("movie:7", ("catalog:movie:7",), lambda: repository.get(7))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from vedina.metrics import NEAR_CACHE, BufferedCounter
from vedina.storage.invalidation import Invalidations

V = TypeVar("V")


class _LeaderGone(Exception):
    """The request whose load others joined was cancelled before it finished."""


class NearCache(Generic[V]):
    def __init__(self, invalidations: Invalidations, *, name: str, max_entries: int, ttl: float) -> None:
        self._invalidations = invalidations
        self._entries: dict[str, tuple[int, float, V]] = {}
        self._loads: dict[tuple[str, int | None], asyncio.Future[V]] = {}
        self._max_entries = max_entries
        self._ttl = ttl
        self._hit = BufferedCounter(NEAR_CACHE.labels(name, "hit"))
        self._miss = BufferedCounter(NEAR_CACHE.labels(name, "miss"))

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: str, depends_on: tuple[str, ...]) -> V | None:
        """The cached value on a hit, else None (no load: the hot path's first try)."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == self._invalidations.stamp(*depends_on) and entry[1] > time.monotonic():
            self._hit.inc()
            return entry[2]
        return None

    async def get_or_load(self, key: str, depends_on: tuple[str, ...], load: Callable[[], Awaitable[V]]) -> V:
        stamp = self._invalidations.stamp(*depends_on)
        entry = self._entries.get(key)
        if entry is not None and stamp is not None and entry[0] == stamp and entry[1] > time.monotonic():
            self._hit.inc()
            return entry[2]
        self._miss.inc()
        if stamp is None:
            # Untrusted (no invalidation channel right now): no sharing either, since a load
            # that began before a revocation could not be told from one that began after.
            return await load()
        flight = (key, stamp)
        pending = self._loads.get(flight)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except _LeaderGone:  # the request that was loading was cancelled: load for ourselves
                return await self.get_or_load(key, depends_on, load)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loads[flight] = future
        try:
            value = await load()
        except BaseException as exc:
            future.set_exception(_LeaderGone() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody joined
            raise
        else:
            future.set_result(value)
            if stamp is not None and self._max_entries:
                self._store(key, stamp, value)
            return value
        finally:
            del self._loads[flight]

    def _store(self, key: str, stamp: int, value: V) -> None:
        entries = self._entries
        entries.pop(key, None)  # re-inserted last: eviction takes the oldest fills first
        entries[key] = (stamp, time.monotonic() + self._ttl, value)
        while len(entries) > self._max_entries:
            del entries[next(iter(entries))]

    def clear(self) -> None:
        self._entries.clear()
