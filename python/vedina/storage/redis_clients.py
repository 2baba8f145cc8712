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

from vedina.config import Settings, parse_sentinels

# With Sentinel: how long a durable write waits for a replica to hold it (WAIT 1 <ms>).
REPLICA_WAIT_MS = 100


def redis_client(settings: Settings, **options: Any):
    """A ``redis.asyncio.Redis`` for the master, with ``options`` (socket_timeout, retry, ...)."""
    if not settings.redis_sentinels:
        return redis_asyncio.from_url(settings.redis_url, **options)
    from redis.asyncio.sentinel import Sentinel

    sentinel = Sentinel(parse_sentinels(settings), sentinel_kwargs=_sentinel_options(settings, options))
    client = sentinel.master_for(settings.redis_sentinel_service, redis_class=SentinelMaster,
                                 **_url_credentials(settings.redis_url), **options)
    client.sentinel = sentinel
    return client


class SentinelMaster(redis_asyncio.Redis):
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

    return Sentinel(parse_sentinels(settings), sentinel_kwargs=_sentinel_options(settings, options)).master_for(
        settings.redis_sentinel_service, **_url_credentials(settings.redis_url), **options)


def replicas_to_wait(settings: Settings) -> int:
    """Replicas a durable write waits for: one behind Sentinel (a failover promotes one), else none."""
    return 1 if settings.redis_sentinels else 0


def _sentinel_options(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    # Asking the sentinels costs no more time than the client's own budget.
    sentinel = {key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options}
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
