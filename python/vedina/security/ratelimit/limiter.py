"""The two tiers together: Redis (cluster) when configured, the host table otherwise.

The host tier is a :class:`vedina._native.HostRateLimiter`: a GCRA table in a
memory-mapped file that every worker of one server opens, so the workers of a
host share exact counts with no round trip. With ``REDIS_URL`` (or ``REDIS_SENTINELS``) set, decisions
are taken in Redis so every host of the cluster shares them; when Redis fails
or answers slower than ``RATE_LIMIT_REDIS_TIMEOUT_MS``, the host tier decides
instead (limiting never stops), ``vedina_rate_limit_fallbacks_total`` counts
the decision, and Redis is left alone for ``COOLDOWN`` seconds so an outage
does not add a timeout to every request. Warnings are logged at most once per
``WARN_EVERY`` seconds.

>>> limiter = RateLimiter(HostRateLimiter("/dev/shm/vedina-rl-test"))
>>> (await limiter.decide(Policy("api", 200_000, 10), "ip:192.0.2.1")).remaining
9
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from pathlib import Path

from redis.exceptions import RedisError

from vedina._native import HostRateLimiter
from vedina.config import Settings
from vedina.metrics import RATE_LIMIT_EVICTIONS, RATE_LIMIT_FALLBACKS
from vedina.security.ratelimit.decision import Decision
from vedina.security.ratelimit.policies import Policy
from vedina.security.ratelimit.redis_gcra import RedisGCRA
from vedina.storage.host_files import private_dir

log = logging.getLogger(__name__)

COOLDOWN = 1.0  # seconds without trying Redis after it failed
WARN_EVERY = 30.0  # seconds between two warnings about Redis


def default_shm_path(settings: Settings) -> Path:
    """Per server (DATA_DIR and PORT), so two servers of one machine never share by
    accident, in the user's private directory (:mod:`vedina.storage.host_files`)."""
    data_dir = str(Path(settings.data_dir).resolve())
    name = f"ratelimit-{hashlib.sha256(data_dir.encode()).hexdigest()[:12]}-{settings.port}.shm"
    return private_dir(settings.data_dir) / name


class RateLimiter:
    def __init__(self, host: HostRateLimiter, cluster: RedisGCRA | None = None) -> None:
        self.host = host
        self.cluster = cluster
        self._cluster_paused_until = 0.0
        self._last_warning = -WARN_EVERY
        self._unreported = 0

    def decide_host(self, policy: Policy, principal: str, *, cost: int = 1) -> Decision:
        d = self.host.check(
            f"{policy.name}:{principal}", limit=1, period=policy.period_seconds, burst=policy.burst, cost=cost
        )
        if d.evicted:
            RATE_LIMIT_EVICTIONS.inc()
        return Decision(d.allowed, d.limit, d.remaining, d.retry_after, d.reset_after, "host")

    async def decide(self, policy: Policy, principal: str, *, cost: int = 1) -> Decision:
        if self.cluster is None:
            return self.decide_host(policy, principal, cost=cost)
        if time.monotonic() >= self._cluster_paused_until:
            try:
                return await self.cluster.decide(f"{policy.name}:{principal}", policy, cost=cost)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._cluster_failed(exc)
        RATE_LIMIT_FALLBACKS.inc()
        return self.decide_host(policy, principal, cost=cost)

    def _cluster_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._cluster_paused_until = now + COOLDOWN
        self._unreported += 1
        if now - self._last_warning >= WARN_EVERY:
            log.warning(
                "rate limiting: Redis failed (%s: %s), the host tier decides; %d Redis failure(s) since the last warning",
                type(exc).__name__, exc, self._unreported,
            )
            self._last_warning, self._unreported = now, 0

    async def close(self) -> None:
        if self.cluster is not None:
            await self.cluster.client.aclose()


def open_limiter(settings: Settings) -> RateLimiter:
    """The limiter of this process: call it in the worker, never before the fork."""
    # A full probe window evicts its least live key; only if every slot of it is being handed
    # over at that instant is there no slot, and then the request is refused, never let through.
    host = HostRateLimiter(settings.rate_limit_shm_path or default_shm_path(settings), fail_open=False)
    cluster = None
    if settings.redis_enabled:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        from vedina.storage.redis_clients import redis_client

        timeout = settings.rate_limit_redis_timeout_ms / 1000
        client = redis_client(
            settings, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        cluster = RedisGCRA(client)
    return RateLimiter(host, cluster)


_PROCESS_LIMITERS: dict[tuple[int, str, str], RateLimiter] = {}


def process_limiter(settings: Settings) -> RateLimiter:
    """The one limiter of this process for these settings, opened on first use.

    Opened lazily in the process that serves: a worker never inherits the
    parent's Redis connections. Shared by the middleware and the login guard.
    """
    key = (os.getpid(), settings.rate_limit_shm_path or str(default_shm_path(settings)),
           settings.redis_url + "|" + settings.redis_sentinels)
    limiter = _PROCESS_LIMITERS.get(key)
    if limiter is None:
        limiter = _PROCESS_LIMITERS[key] = open_limiter(settings)
    return limiter
