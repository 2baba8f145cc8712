"""The push channel that keeps per-worker caches honest.

A writer calls :meth:`Invalidations.publish` with the keys its change touched,
*after* the change committed; every worker of every host then stops trusting
cache entries that depend on those keys. Readers never ask a server per
request: they compare stamps (:class:`vedina._native.GenerationTable`, a table
of counters in shared memory) with one native call.

Two channels, both behind the same interface:

- :class:`HostInvalidations` (embedded profile, one host): a bump of the
  shared table *is* the push; every process on the host sees it at once.
- :class:`RedisInvalidations` (real profile, any number of hosts): the writer
  bumps its own host's table and PUBLISHes the keys; each worker subscribes
  and bumps its host's table on every message. Pub/sub can lose messages only
  when the subscription drops, so each worker holds a *lease*: the
  subscription is pinged every :data:`HEARTBEAT` seconds, and near caches are
  trusted only until :data:`LEASE` seconds after the *sending* of the last
  PING that was answered (Redis delivers a channel's messages before the answer
  to a later PING, in order, so a slow link cannot stretch the bound).
  The subscription has its own connection without automatic retries, and any
  (re)subscription confirmation withdraws trust, so a reconnect can never hide
  lost messages.
  Past the lease, :meth:`stamp` answers ``None`` and readers go to the shared
  store as if they had no cache; a new subscription invalidates everything
  (``bump_all``) before the lease is granted again. So a lost message cannot
  keep a revoked token usable for longer than :data:`LEASE` + one heartbeat,
  under :data:`PROPAGATION_BOUND`.

>>> invalidations = HostInvalidations(GenerationTable("/dev/shm/vedina-gen-test"))
>>> stamp = invalidations.stamp("auth:user:7")
>>> await invalidations.publish("auth:user:7")
>>> invalidations.stamp("auth:user:7") != stamp
True
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from pathlib import Path
from typing import Protocol

from vedina._native import GenerationTable
from vedina.background import Background
from vedina.config import Settings
from vedina.metrics import INVALIDATION_LEASE_LOST
from vedina.storage.host_files import host_file

log = logging.getLogger(__name__)

# Seconds: how stale a worker's view may be after a revocation on another host.
PROPAGATION_BOUND = 1.0
HEARTBEAT = 0.2
LEASE = 0.7
CHANNEL = "vedina:invalidate"


class Invalidations(Protocol):
    def stamp(self, *keys: str) -> int | None:
        """The current stamp of ``keys``, or None when caches must not be trusted now."""
        ...

    async def publish(self, *keys: str) -> None:
        """Invalidate ``keys`` everywhere; call after the change committed."""
        ...

    def start(self) -> None: ...

    async def ready(self) -> None:
        """Wait until caches may be trusted (a subscription is held)."""
        ...

    async def close(self) -> None: ...


def default_table_path(settings: Settings) -> Path:
    """One table per database: every process that can change the data bumps the
    table that the servers of this host read (CLI commands included)."""
    if settings.invalidation_shm_path:
        return Path(settings.invalidation_shm_path)
    return host_file(settings, "gen")


class HostInvalidations:
    """One host: the shared table is the channel."""

    def __init__(self, table: GenerationTable) -> None:
        self.table = table

    def stamp(self, *keys: str) -> int | None:
        return self.table.stamp(*keys)

    async def publish(self, *keys: str) -> None:
        self.table.bump(*keys)

    def start(self) -> None:
        return None

    async def ready(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisInvalidations(HostInvalidations):
    """Many hosts: the host table, fed by a Redis pub/sub subscription held under a lease."""

    def __init__(self, table: GenerationTable, redis, *, subscriber=None, channel: str = CHANNEL) -> None:
        """``redis`` publishes; ``subscriber`` (default: the same client) listens, and should
        not retry by itself (see :func:`open_invalidations`). Both: redis.asyncio.Redis."""
        super().__init__(table)
        self._redis = redis
        self._subscriber = subscriber if subscriber is not None else redis
        self._channel = channel
        self._trusted_until = 0.0
        self._task = Background("invalidation subscription")
        self.subscribed = asyncio.Event()

    @property
    def trusted(self) -> bool:
        return time.monotonic() < self._trusted_until

    def stamp(self, *keys: str) -> int | None:
        if time.monotonic() >= self._trusted_until:
            return None
        return self.table.stamp(*keys)

    async def publish(self, *keys: str) -> None:
        self.table.bump(*keys)  # this host at once, whatever Redis does
        await self._redis.publish(self._channel, "\n".join(keys).encode())

    def start(self) -> None:
        self._task.start(self._listen)

    async def ready(self) -> None:
        await self.subscribed.wait()

    async def close(self) -> None:
        await self._task.stop()
        self._trusted_until = 0.0
        if self._subscriber is not self._redis:
            await self._subscriber.aclose()

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._subscribed_loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the subscription: untrusted until resubscribed
                if self._trusted_until:
                    INVALIDATION_LEASE_LOST.inc()
                    log.warning("invalidation subscription lost", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
                self._trusted_until = 0.0
                self.subscribed.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            else:
                backoff = 0.1

    async def _subscribed_loop(self) -> None:
        pubsub = self._subscriber.pubsub()
        pings: dict[bytes, float] = {}  # PING payload -> when it was sent
        sequence = itertools.count()
        try:
            await pubsub.subscribe(self._channel)
            next_ping = last_answer = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= next_ping:
                    token = str(next(sequence)).encode()
                    pings[token] = now
                    await pubsub.ping(token)
                    next_ping = now + HEARTBEAT
                    if now - last_answer > 3 * LEASE:
                        raise ConnectionError("no answer on the subscription")
                message = await pubsub.get_message(timeout=HEARTBEAT)
                if message is None:
                    continue
                kind = message["type"]
                if kind == "message":
                    self.table.bump(*message["data"].decode().split("\n"))
                elif kind == "subscribe":
                    # A (re)subscription: whatever was published while none was held is
                    # unknown; trust returns, after bump_all, with the next answered PING.
                    self._trusted_until = 0.0
                elif kind == "pong":
                    sent = pings.pop(message["data"], None)
                    if sent is None:
                        continue  # not one of ours
                    for older in [t for t, at in pings.items() if at < sent]:
                        del pings[older]
                    last_answer = time.monotonic()
                    if not self._trusted_until:
                        self.table.bump_all()
                        self.subscribed.set()
                    self._trusted_until = sent + LEASE
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def open_invalidations(settings: Settings, redis=None) -> HostInvalidations:
    table = GenerationTable(str(default_table_path(settings)))
    if redis is None:
        return HostInvalidations(table)
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from vedina.storage.redis_clients import redis_client

    # No automatic reconnect on the subscription: a connection that failed must be seen
    # to fail, so that the lease ends and the next subscription invalidates everything.
    # Behind Sentinel the new subscription goes to whichever master the sentinels name now.
    subscriber = redis_client(settings, socket_timeout=5, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))
    return RedisInvalidations(table, redis, subscriber=subscriber)
