"""Key-value stores: short-lived shared state (sessions, deny lists, nonces) and caches.

One protocol, two implementations (per-worker caches are :mod:`vedina.storage.near_cache`):

- :class:`RedisStore`: the real profile; shared by every worker and host.
- :class:`SqlStore`: the embedded profile's shared store, a table in the
  SQLite database, so every worker process on the machine sees the same keys.

>>> store = SqlStore(engine)
>>> await store.add("nonce:abc", b"1", ttl=300)
True
"""

from __future__ import annotations

from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.storage.clock import now_ms
from vedina.storage.schema import kv_entries


class KeyValueStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` in order, in one round trip."""
        ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, durable: bool = False) -> None:
        """Overwrite; ``durable``: the write must survive a failover of the store (revocations)."""
        ...

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Set only if absent (Redis SET NX); True when this call set it."""
        ...

    async def delete(self, key: str) -> bool: ...

    async def ping(self) -> None: ...


def _expiry_ms(ttl: float | None) -> int | None:
    return None if ttl is None else now_ms() + int(ttl * 1000)


# Built once (bound parameters, an expanding IN): see storage/movies.py.
_GET_MANY = sa.select(kv_entries.c.key, kv_entries.c.value).where(
    kv_entries.c.key.in_(sa.bindparam("keys", expanding=True)),
    sa.or_(kv_entries.c.expires_at.is_(None), kv_entries.c.expires_at > sa.bindparam("now")),
)


class SqlStore:
    """Key-value rows in the database; expired rows are ignored and swept."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, key: str) -> bytes | None:
        query = sa.select(kv_entries.c.value).where(
            kv_entries.c.key == key,
            sa.or_(kv_entries.c.expires_at.is_(None), kv_entries.c.expires_at > now_ms()),
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).scalar_one_or_none()

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        async with self._engine.connect() as conn:
            found = dict((await conn.execute(_GET_MANY, {"keys": keys, "now": now_ms()})).all())
        return [found.get(key) for key in keys]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, durable: bool = False) -> None:
        async with self._engine.begin() as conn:  # committed: durable whatever ``durable`` says
            await conn.execute(sa.delete(kv_entries).where(kv_entries.c.key == key))
            await conn.execute(sa.insert(kv_entries).values(key=key, value=value, expires_at=_expiry_ms(ttl)))

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        async with self._engine.begin() as conn:
            # An expired row must not block the key; delete it in the same transaction.
            await conn.execute(
                sa.delete(kv_entries).where(kv_entries.c.key == key, kv_entries.c.expires_at <= now_ms())
            )
            try:
                async with conn.begin_nested():
                    await conn.execute(sa.insert(kv_entries).values(key=key, value=value, expires_at=_expiry_ms(ttl)))
            except IntegrityError:
                return False
        return True

    async def delete(self, key: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(kv_entries).where(kv_entries.c.key == key))
        return result.rowcount > 0

    async def sweep(self) -> int:
        """Delete expired rows; returns how many."""
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(kv_entries).where(kv_entries.c.expires_at <= now_ms()))
        return result.rowcount

    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


class RedisStore:
    """Redis-backed store; ``prefix`` keeps the shared state and the cache apart."""

    def __init__(self, client, *, prefix: str, replicas: int = 0) -> None:  # client: redis.asyncio.Redis
        """``replicas``: how many replicas hold a durable write before it returns (behind Sentinel: 1)."""
        self._redis = client
        self._prefix = prefix
        self._replicas = replicas

    async def get(self, key: str) -> bytes | None:
        return await self._redis.get(self._prefix + key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self._redis.mget([self._prefix + key for key in keys])

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, durable: bool = False) -> None:
        px = None if ttl is None else int(ttl * 1000)
        if not (durable and self._replicas):
            await self._redis.set(self._prefix + key, value, px=px)
            return
        # Replication is asynchronous: a master that dies right after answering may take the
        # write with it, and the promoted replica would still hold the old value (an "active"
        # session). WAIT, on the connection that wrote, returns once a replica holds it
        # (or after REPLICA_WAIT_MS, when no replica answers: then no replica could be promoted).
        from vedina.storage.redis_clients import REPLICA_WAIT_MS

        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._prefix + key, value, px=px)
            pipe.wait(self._replicas, REPLICA_WAIT_MS)
            await pipe.execute()

    async def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        px = None if ttl is None else int(ttl * 1000)
        return bool(await self._redis.set(self._prefix + key, value, nx=True, px=px))

    async def delete(self, key: str) -> bool:
        return bool(await self._redis.delete(self._prefix + key))

    async def ping(self) -> None:
        await self._redis.ping()
