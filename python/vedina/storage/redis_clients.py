"""Every Redis client of a process is made here: from ``REDIS_URL``, or through Sentinel.

Callers choose the options of their client (timeouts, retries) and get the
same kind of ``redis.asyncio.Redis`` either way:

- ``REDIS_URL`` alone: ``redis.asyncio.from_url(url, **options)``, as always.
- ``REDIS_SENTINELS`` set: ``Sentinel(sentinels).master_for(REDIS_SENTINEL_SERVICE, ...)``.
  The client's pool asks the sentinels for the master's address each time it
  opens a connection, and drops its idle connections when the answer changes.
  After a failover a connection to the dead master fails (connection error),
  one to a master demoted to replica answers READONLY, which redis-py turns
  into a connection error: both are outages (503, or the rate limiter's host
  tier) that end by themselves at the next connection, which goes to the
  promoted replica. The invalidation subscriber's connection fails the same
  way, and its lease logic (``vedina.storage.invalidation``) resubscribes and
  invalidates everything it may have missed. ``REDIS_URL``, if also set, gives
  the password, user and db number (its host is ignored).

Replication is asynchronous, so a write the master acknowledged may die with
it. Writes that must survive a failover (revocations: ``RedisStore.set(...,
durable=True)``) therefore wait for one replica's acknowledgement
(:data:`REPLICA_WAIT_MS` at most) when Sentinel is in use.

>>> client = redis_client(load_settings({"REDIS_SENTINELS": "127.0.0.1:26379"}), socket_timeout=5)
>>> await client.ping()
True
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis_asyncio
from redis.asyncio.client import Pipeline

from vedina.config import Settings, parse_sentinels
from vedina.storage.redis_guard import RedisGuard

# With Sentinel: how long a durable write waits for a replica to hold it (WAIT 1 <ms>).
REPLICA_WAIT_MS = 100


def redis_client(settings: Settings, *, guard: RedisGuard | None = None, **options: Any):
    """A ``redis.asyncio.Redis`` for the master, with ``options`` (socket_timeout, retry, ...);
    with ``guard``, its commands and pipelines fail fast while Redis is unreachable."""
    if not settings.redis_sentinels:
        client = GuardedRedis.from_url(settings.redis_url, **options)
    else:
        from redis.asyncio.sentinel import Sentinel

        sentinel = Sentinel(parse_sentinels(settings), sentinel_kwargs=_sentinel_options(settings, options))
        client = sentinel.master_for(settings.redis_sentinel_service, redis_class=SentinelMaster,
                                     **_url_credentials(settings.redis_url), **options)
        client.sentinel = sentinel
    client.guard = guard
    return client


class GuardedRedis(redis_asyncio.Redis):
    """A client whose commands and pipelines run through its ``guard`` (when it has one)."""

    guard: RedisGuard | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.guard is None:
            return await super().execute_command(*args, **options)
        return await self.guard.run(lambda: super(GuardedRedis, self).execute_command(*args, **options),
                                    ping=self._ping, pool=self.connection_pool)

    async def _ping(self) -> Any:
        return await super().execute_command("PING")

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.guard is not None:
            await self.guard.close()
        await super().aclose(close_connection_pool)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = GuardedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.guard, pipe.ping = self.guard, self._ping
        return pipe


class GuardedPipeline(Pipeline):
    guard: RedisGuard | None = None
    ping: Any = None

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.guard is None:
            return await super().execute(raise_on_error)
        return await self.guard.run(lambda: super(GuardedPipeline, self).execute(raise_on_error),
                                    ping=self.ping, pool=self.connection_pool)


class SentinelMaster(GuardedRedis):
    """The master behind Sentinel; closing it closes its connections to the sentinels too."""

    sentinel: Any = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            await self.sentinel.aclose()


def sync_redis_client(settings: Settings, **options: Any):
    """The blocking counterpart of :func:`redis_client` (CLI commands and tests)."""
    if not settings.redis_sentinels:
        import redis

        return redis.from_url(settings.redis_url, **options)
    from redis.sentinel import Sentinel

    return Sentinel(parse_sentinels(settings),
                    sentinel_kwargs=_sentinel_options(settings, options, blocking=True)).master_for(
        settings.redis_sentinel_service, **_url_credentials(settings.redis_url), **options)


def replicas_to_wait(settings: Settings) -> int:
    """Replicas a durable write waits for: one behind Sentinel (a failover promotes one), else none."""
    return 1 if settings.redis_sentinels else 0


# A sentinel answers at once or is skipped for the next one: the list is the redundancy.
SENTINEL_TIMEOUT_S = 0.5


def _sentinel_options(settings: Settings, options: dict[str, Any], *, blocking: bool = False) -> dict[str, Any]:
    # Asking the sentinels costs no more time than the client's own budget, and no retries:
    # redis-py's default (3 retries, backoff from 1 s) made a cut-off host wait ~15 s for
    # "no master found" with three sentinels.
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    sentinel: dict[str, Any] = {"retry": (Retry if blocking else AsyncRetry)(NoBackoff(), 0)}
    for key in ("socket_timeout", "socket_connect_timeout"):
        sentinel[key] = min(options.get(key) or SENTINEL_TIMEOUT_S, SENTINEL_TIMEOUT_S)
    if settings.redis_sentinel_password:
        sentinel["password"] = settings.redis_sentinel_password
    return sentinel


def _url_credentials(url: str) -> dict[str, Any]:
    """Password, user and db number of ``redis://[user:password@]host[:port][/db]`` (the host is ignored)."""
    if not url:
        return {}
    parts = urlsplit(url)
    found: dict[str, Any] = {}
    if parts.username:
        found["username"] = unquote(parts.username)
    if parts.password:
        found["password"] = unquote(parts.password)
    path = parts.path.strip("/")
    if path:
        found["db"] = int(path)
    return found
