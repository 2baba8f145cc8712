"""Catalog documents shared by every worker and host, in Redis, that a late fill cannot make stale.

The naive scheme (read the database, SET the key; writers DEL it) has a race:
a reader that read the old row before a write committed can SET it *after*
the writer's DEL, and the stale copy lives until its TTL. Here each document
is stored with the *version* of what it depends on, read before the database
was, and a writer bumps that version (INCR) after its commit:

    reader: MGET version, document  -> document hit iff its version == version
            miss: v = version; value = load(); SET document (v, value)
    writer: commit; INCR version

A fill that raced a write carries the old version and is never served.
A lookup is one round trip (MGET). Redis failing is not the reader's
problem: the cache is skipped and the database answers.

>>> cache = SharedCache(redis_client, ttl=300)
>>> await cache.get_or_load("catalog:movie:7", "catalog:movie:7", load)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from vedina.metrics import SHARED_CACHE, BufferedCounter

log = logging.getLogger(__name__)


class SharedCache:
    def __init__(self, redis, *, prefix: str = "vedina:cache:", ttl: int, name: str = "catalog") -> None:
        self._redis = redis  # redis.asyncio.Redis
        self._prefix = prefix
        self._ttl = ttl
        self._hit, self._miss, self._error = (BufferedCounter(SHARED_CACHE.labels(name, result))
                                              for result in ("hit", "miss", "error"))

    async def get_or_load(self, key: str, version_key: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        version_name, document_name = f"{self._prefix}v:{version_key}", f"{self._prefix}d:{key}"
        try:
            version, document = await self._redis.mget([version_name, document_name])
        except RedisError as exc:
            log.warning("shared cache unavailable: reading the database", extra={"error": type(exc).__name__})
            self._error.inc()
            return await load()
        version = version or b"0"
        if document is not None:
            stored_version, _, value = document.partition(b"\n")
            if stored_version == version:
                self._hit.inc()
                return value
        self._miss.inc()
        value = await load()
        try:
            await self._redis.set(document_name, version + b"\n" + value, ex=self._ttl)
        except RedisError as exc:
            log.warning("shared cache unavailable: not stored", extra={"error": type(exc).__name__})
        return value

    async def invalidate(self, *version_keys: str) -> None:
        """Call after the change committed."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in version_keys:
                pipe.incr(f"{self._prefix}v:{key}")
            await pipe.execute()
