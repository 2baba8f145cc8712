"""Everything a worker process holds open: engine, stores, broker, invalidation channel.

Opened once per process (after Granian or Robyn forked it) and closed at
shutdown. The profile is chosen by the settings: ``DB_HOST`` selects
MySQL/MariaDB, ``REDIS_URL`` (or ``REDIS_SENTINELS``) Redis, ``AMQP_URL`` (or ``AMQP_URLS``) RabbitMQ; each one left empty
uses its embedded counterpart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.config import Settings
from vedina.storage.broker import Broker, InProcessBroker, RabbitBroker
from vedina.storage.database import create_engine
from vedina.storage.host_files import host_file
from vedina.storage.invalidation import HostInvalidations, open_invalidations
from vedina.storage.keyvalue import KeyValueStore, RedisStore, SqlStore
from vedina.storage.outbox import HostLock, OutboxRelay, RelayLoop
from vedina.storage.redis_clients import redis_client as make_redis_client
from vedina.storage.redis_clients import replicas_to_wait
from vedina.storage.redis_guard import RedisGuard
from vedina.storage.replicas import Reader, ReplicaReader, open_replicas

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    shared: KeyValueStore  # seen by every worker (sessions, deny lists, nonces)
    broker: Broker  # job handlers are attached by the composition root (vedina.composition)
    invalidations: HostInvalidations
    redis: object | None = None
    relay: OutboxRelay | None = None
    relay_loop: RelayLoop | None = None
    db_replicas: ReplicaReader | None = None  # DB_REPLICA_HOSTS (vedina.storage.replicas)

    @property
    def reader(self) -> Reader:
        """What the read-mostly repositories read through: the replicas, else the primary engine."""
        return self.db_replicas if self.db_replicas is not None else self.engine

    async def check(self) -> dict[str, str]:
        """Readiness of each backing service: name -> "ok" or the error."""
        checks = {"database": self._ping_db, "broker": self.broker.ping}
        if self.redis is not None:
            checks["redis"] = self.redis.ping
        results = {}
        for name, ping in checks.items():
            try:
                await asyncio.wait_for(ping(), timeout=2)
                results[name] = "ok"
            except Exception as exc:  # readiness reports, it does not raise
                # The detail (hosts, driver messages) goes to the log, not to anonymous callers.
                log.warning("readiness check failed", extra={"service": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
                results[name] = "failed"
        return results

    async def _ping_db(self) -> None:
        await SqlStore(self.engine).ping()

    def start_relay(self, *, interval: float = 1.0) -> None:
        """In the background of this process, if it holds the host's relay lock: relay
        the outbox to the broker. (Sweeps of expired rows are periodic tasks:
        vedina.composition.Services.periodic_tasks, run by vedina.jobs.scheduler.)"""
        lock = HostLock(host_file(self.settings, "relay"))
        self.relay_loop = RelayLoop(self.relay, lock, interval=interval)
        self.relay_loop.start()

    async def close(self) -> None:
        if self.relay_loop is not None:
            await self.relay_loop.close()
        await self.invalidations.close()
        await self.broker.close()
        if self.redis is not None:
            await self.redis.aclose()
        if self.db_replicas is not None:
            await self.db_replicas.close()
        await self.engine.dispose()


async def open_resources(settings: Settings) -> Resources:
    engine = create_engine(settings)
    redis_client = None
    if settings.redis_enabled:
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError, TimeoutError

        # A connection left stale by a Redis restart is checked before use and a
        # command that meets a dead one is retried on a fresh one, so one restart
        # costs no request an error.
        redis_client = make_redis_client(
            settings, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10,
            retry=Retry(ExponentialBackoff(cap=0.25, base=0.025), 3), retry_on_error=[ConnectionError, TimeoutError],
            # Within REDIS_TIMEOUT_MS in all, and failing fast while Redis is unreachable.
            guard=RedisGuard(deadline=settings.redis_timeout_ms / 1000),
        )
        shared: KeyValueStore = RedisStore(redis_client, prefix="vedina:", replicas=replicas_to_wait(settings))
    else:
        shared = SqlStore(engine)

    broker: Broker = (
        RabbitBroker(list(settings.amqp_nodes) if settings.amqp_urls else settings.amqp_url,
                     prefix=settings.amqp_queue_prefix, queue_type=settings.amqp_queue_kind)
        if settings.amqp_nodes else InProcessBroker()
    )
    return Resources(
        settings=settings,
        engine=engine,
        shared=shared,
        broker=broker,
        invalidations=open_invalidations(settings, redis_client),
        redis=redis_client,
        relay=OutboxRelay(engine, broker),
        db_replicas=open_replicas(settings, engine),
    )
