"""Read replicas: read-mostly queries on a replica that holds every commit made before the read began.

Writes and transactions always use the primary engine. The repositories of the public catalog
reads are also given a *reader* (``vedina.composition``, ADR 0017) and open their read-only
connections from it; with ``DB_REPLICA_HOSTS`` empty the reader is the primary engine itself and
nothing changes.

The fence, on every replica read (MariaDB GTIDs, no clocks involved)::

    primary: SELECT @@gtid_binlog_pos                    -- every commit acknowledged so far
    replica: SELECT MASTER_GTID_WAIT(pos, DB_REPLICA_WAIT_MS / 1000)
             0  -> the query runs on this replica connection
             -1 -> the primary answers (and this worker rests the replica until its next check)

A read therefore sees at least what the primary held when the read began: the caller's own
writes (read-your-writes, on any host), and every write whose cache invalidation reached the
reader before it began its fill, so a near or shared cache filled after an invalidation can never
store what the replica held before that write. The price is one trivial primary round trip (no
rows read) per replica read; catalog reads are near-cache hits first, so replica reads are fills.

Health, per worker, every :data:`CHECK_INTERVAL` seconds, never per request: the primary's
position is sampled, each replica is asked to reach it within the wait and for its applied
position (``@@gtid_slave_pos``). Its lag is the age of the newest sample it has applied (0 when it
caught up with the latest). A replica that does not answer, or lags past ``DB_REPLICA_MAX_LAG_S``,
or has applied none of the samples kept (a fresh worker cannot tell its lag yet), is not used: the
primary serves its reads. ``vedina_db_replica_up`` / ``vedina_db_replica_lag_seconds`` show the
state, ``vedina_db_replica_reads_total{outcome}`` counts where reads went.

>>> reader = open_replicas(settings, primary_engine)      # None without DB_REPLICA_HOSTS
>>> reader.start()                                        # the health checks, in this worker's loop
>>> rows = await reader.read(fetch)                       # fetch(conn) on a fenced replica, or the primary

A replica that fails while ``fetch`` runs on it (stopped, connection lost, too slow) is rested and
``fetch`` runs again on the primary: the caller gets its answer, not an error (counted as
``outcome="error"``). Only the primary failing is the caller's outage (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from vedina.background import Background
from vedina.config import Settings, replica_addresses
from vedina.metrics import DB_REPLICA_LAG, DB_REPLICA_READS, DB_REPLICA_UP, BufferedCounter
from vedina.storage.database import create_replica_engine

log = logging.getLogger(__name__)
T = TypeVar("T")

CHECK_INTERVAL = 1.0
CHECK_TIMEOUT = 3.0  # a replica that takes longer to answer a check is down for this tick
READ_TIMEOUT = 3.0  # a replica read taking longer is abandoned and runs again on the primary

_POSITION = sa.text("SELECT @@gtid_binlog_pos")
_APPLIED = sa.text("SELECT @@gtid_slave_pos")
_WAIT = sa.text("SELECT MASTER_GTID_WAIT(:position, :timeout)")
# A replica that failed with one of these (unreachable, connection lost, too slow) is rested
# until the next check; other errors propagate.
_FAILURES = (OperationalError, InterfaceError, OSError, asyncio.TimeoutError)


class Reader(Protocol):
    """What a repository reads through (always with ``vedina.storage.reading.read``): an
    AsyncEngine (its ``connect()``), or a :class:`ReplicaReader` (its ``read(work)``)."""

    @property
    def dialect(self) -> Dialect: ...


def parse_position(text: str | None) -> dict[int, int]:
    """A GTID position (``"0-1-42,1-3-7"``) as domain -> sequence number.

    >>> parse_position("0-1-42,1-3-7")
    {0: 42, 1: 7}
    """
    position: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        domain, _server, sequence = item.split("-")
        position[int(domain)] = int(sequence)
    return position


def has_applied(applied: dict[int, int], position: dict[int, int]) -> bool:
    """Whether a replica at ``applied`` holds every transaction up to ``position`` (per domain)."""
    return all(applied.get(domain, -1) >= sequence for domain, sequence in position.items())


class Replica:
    def __init__(self, name: str, engine: AsyncEngine) -> None:
        self.name = name  # host:port, the metrics' label
        self.engine = engine
        self.usable = False  # until a check says otherwise
        self.lag: float | None = None

    def rest(self) -> None:
        """Not used by this worker until its next check (a read found it down or behind)."""
        self.usable = False
        DB_REPLICA_UP.labels(self.name).set(0)


class ReplicaReader:
    def __init__(self, primary: AsyncEngine, replicas: list[Replica], *, max_lag: float, wait: float,
                 interval: float = CHECK_INTERVAL) -> None:
        self._primary = primary
        self.replicas = replicas
        self._max_lag = max_lag
        self._wait = wait
        self._interval = interval
        self._samples: deque[tuple[float, dict[int, int]]] = deque()  # (monotonic time, primary position)
        self._turn = itertools.count()
        self._task = Background("replica checks")
        self._reads = {outcome: BufferedCounter(DB_REPLICA_READS.labels(outcome))
                       for outcome in ("replica", "unusable", "behind", "error")}
        for replica in replicas:
            DB_REPLICA_UP.labels(replica.name).set(0)

    @property
    def dialect(self) -> Dialect:
        return self._primary.dialect

    # -- reads --------------------------------------------------------------------------

    async def read(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``work(conn)`` (read-only statements) on a usable replica that has applied the primary's
        current position, else on the primary; again on the primary if the replica fails meanwhile."""
        replica, conn = await self._fenced_replica()
        if replica is not None and conn is not None:
            answered = False
            try:
                async with asyncio.timeout(READ_TIMEOUT):  # a replica gone silent must not hold the request
                    result = await work(conn)
                answered = True
            except _FAILURES as exc:
                log.warning("replica lost during a read: the primary serves it",
                            extra={"replica": replica.name, "error": f"{type(exc).__name__}: {exc}"[:200]})
                replica.rest()  # the next check decides when it is back
                self._reads["error"].inc()
            finally:
                if answered:
                    with contextlib.suppress(*_FAILURES):
                        await conn.close()
                else:  # failed, timed out or cancelled mid-read: never back into the pool half-read
                    await self._discard(conn)
            if answered:
                return result
        async with self._primary.connect() as primary:
            return await work(primary)

    def _choose(self) -> Replica | None:
        usable = [replica for replica in self.replicas if replica.usable]
        return usable[next(self._turn) % len(usable)] if usable else None

    async def _fenced_replica(self) -> tuple[Replica | None, AsyncConnection | None]:
        replica = self._choose()
        if replica is None:
            self._reads["unusable"].inc()
            return None, None
        async with self._primary.connect() as primary:  # the primary failing is a primary outage
            position = await primary.scalar(_POSITION)
        conn = None
        try:
            async with asyncio.timeout(self._wait + CHECK_TIMEOUT):
                conn = await replica.engine.connect()
                reached = await conn.scalar(_WAIT, {"position": position or "", "timeout": self._wait})
        except _FAILURES as exc:
            log.warning("replica read failed: the primary serves it",
                        extra={"replica": replica.name, "error": f"{type(exc).__name__}: {exc}"[:200]})
            await self._discard(conn)
            replica.rest()
            self._reads["error"].inc()
            return None, None
        if reached != 0:
            await self._discard(conn)
            replica.rest()
            self._reads["behind"].inc()
            return None, None
        self._reads["replica"].inc()
        return replica, conn

    @staticmethod
    async def _discard(conn: AsyncConnection | None) -> None:
        """Drop a connection whose query may have been cut off by a timeout: its protocol state
        is unknown, so it is invalidated (the socket closed, no exchange with the server) instead
        of being rolled back into the pool, which could wait forever on a half-read answer."""
        if conn is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await conn.invalidate()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await conn.close()

    # -- health ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task.start(self._loop)

    async def close(self) -> None:
        await self._task.stop()
        for replica in self.replicas:
            await replica.engine.dispose()

    async def _loop(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # the primary failed: keep the last view, try again next tick
                log.warning("replica check failed", exc_info=True)
            await asyncio.sleep(self._interval)

    async def check(self) -> None:
        """One round of checks: sample the primary's position, then ask every replica."""
        async with self._primary.connect() as primary:
            position = await primary.scalar(_POSITION)
        now = time.monotonic()
        self._samples.append((now, parse_position(position)))
        horizon = now - self._max_lag - 2 * self._interval  # enough to tell any lag up to the bound
        while len(self._samples) > 1 and self._samples[0][0] < horizon:
            self._samples.popleft()
        await asyncio.gather(*(self._check(replica, position or "") for replica in self.replicas))

    async def _check(self, replica: Replica, position: str) -> None:
        conn = None
        try:
            async with asyncio.timeout(self._wait + CHECK_TIMEOUT):
                conn = await replica.engine.connect()
                caught_up = await conn.scalar(_WAIT, {"position": position, "timeout": self._wait}) == 0
                applied = parse_position(await conn.scalar(_APPLIED))
                await conn.close()
        except _FAILURES as exc:
            await self._discard(conn)
            if replica.usable or replica.lag is not None:
                log.warning("replica down: the primary serves its reads",
                            extra={"replica": replica.name, "error": f"{type(exc).__name__}: {exc}"[:200]})
            replica.lag = None
            replica.rest()
            return
        now = time.monotonic()
        if caught_up:
            replica.lag = 0.0
        else:
            reached = [at for at, sample in self._samples if has_applied(applied, sample)]
            # None applied: it is behind everything kept, at least this far.
            replica.lag = now - (reached[-1] if reached else self._samples[0][0])
            if not reached:
                replica.lag = max(replica.lag, self._max_lag + self._interval)
        replica.usable = replica.lag <= self._max_lag
        DB_REPLICA_LAG.labels(replica.name).set(replica.lag)
        DB_REPLICA_UP.labels(replica.name).set(1 if replica.usable else 0)


def open_replicas(settings: Settings, primary: AsyncEngine) -> ReplicaReader | None:
    addresses = replica_addresses(settings)
    if not addresses:
        return None
    replicas = [Replica(f"{host}:{port}", create_replica_engine(settings, host, port)) for host, port in addresses]
    return ReplicaReader(primary, replicas, max_lag=settings.db_replica_max_lag_s,
                         wait=settings.db_replica_wait_ms / 1000)
