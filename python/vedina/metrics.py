"""Prometheus metrics, summed across all worker processes.

Granian and Robyn run several worker processes; prometheus-client's
multiprocess mode has each process write its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (in any worker) adds them up.
``vedina serve`` sets that directory (under DATA_DIR, see
:func:`vedina.http.serve.prepare_multiprocess_dir`) and empties it at start;
a process without it (a test, a one-off command) uses the default registry.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from vedina.background import Background

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("vedina_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "vedina_http_request_duration_seconds", "Time to answer", ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
RATE_LIMIT_FALLBACKS = Counter(
    "vedina_rate_limit_fallbacks_total", "Rate-limit decisions taken by the host tier because Redis failed"
)
RATE_LIMITED = Counter("vedina_rate_limited_total", "Requests refused with 429", ["policy"])
RATE_LIMIT_EVICTIONS = Counter(
    "vedina_rate_limit_evictions_total",
    "Live keys the host-tier table evicted to track a new one (a flood of keys fills probe windows)",
)
INVALIDATION_LEASE_LOST = Counter(
    "vedina_invalidation_lease_lost_total",
    "Times a worker's invalidation subscription dropped (its near caches were bypassed until resubscribed)",
)
NEAR_CACHE = Counter("vedina_near_cache_total", "Per-worker cache lookups", ["cache", "result"])
SHARED_CACHE = Counter("vedina_shared_cache_total", "Shared (Redis) cache lookups: hit, miss, error (Redis failed)",
                       ["cache", "result"])
REDIS_GUARD = Counter(
    "vedina_redis_unavailable_total",
    "Request-path Redis commands that failed (outcome=failed: refused, reset, or over REDIS_TIMEOUT_MS) or were "
    "not sent because Redis had just failed (outcome=skipped: failing fast until a probe succeeds)", ["outcome"])

# -- requests beyond REQUESTS/LATENCY (vedina.http.bridge, vedina.http.responses) -----------
IN_FLIGHT = Gauge(
    "vedina_http_requests_in_flight",
    "Requests being answered, sampled by each worker every second and at each scrape (the scrape excluded)",
    multiprocess_mode="livesum",
)
ERRORS = Counter("vedina_http_errors_total", "Error answers by the code of their JSON body", ["code"])
MEDIA_BYTES = Counter(
    "vedina_media_bytes_sent_total",
    "Bytes of media file answers handed to the server (their Content-Length), by status (200 whole, 206 range)",
    ["status"],
)
ACCESS_LOG_DROPPED = Counter(
    "vedina_access_log_dropped_total",
    "Access-log lines dropped: more than the cap were waiting in a worker for the once-a-second write",
)
# -- resources, sampled each second by every worker (RequestRecorder.flush) -----------------
DB_POOL = Gauge("vedina_db_pool_connections", "Database pool connections: checked_out (in use), idle (open, free)",
                ["state"], multiprocess_mode="livesum")
DB_POOL_MAX = Gauge("vedina_db_pool_max_connections", "Connections the pools may open (size + overflow)",
                    multiprocess_mode="livesum")
# -- read replicas (vedina.storage.replicas): each worker checks every replica once a second -------
DB_REPLICA_UP = Gauge(
    "vedina_db_replica_up", "1 while reads may use the replica (it answers and is within DB_REPLICA_MAX_LAG_S), "
    "0 while the primary serves its reads (the worst view among the workers)", ["replica"], multiprocess_mode="livemin",
)
DB_REPLICA_LAG = Gauge(
    "vedina_db_replica_lag_seconds", "How far behind the primary the replica's data is (age of the newest primary "
    "GTID position it has applied; 0 when caught up within DB_REPLICA_WAIT_MS)", ["replica"],
    multiprocess_mode="livemax",
)
DB_REPLICA_READS = Counter(
    "vedina_db_replica_reads_total", "Replica-eligible reads: outcome=replica (served by one), or served by the "
    "primary because no replica was usable (unusable), it did not reach the primary's position in time (behind) "
    "or could not be reached (error)", ["outcome"],
)
JWT_CACHE_ENTRIES = Gauge("vedina_jwt_verifier_cache_entries", "Verified tokens held by the workers' verifier caches",
                          multiprocess_mode="livesum")
PLAYBACK_SESSIONS = Gauge(
    "vedina_playback_sessions_active", "Live playback sessions of all accounts (counted by the scheduler's leader)",
    multiprocess_mode="livemostrecent",
)

# -- jobs (vedina.jobs.retry, vedina.storage.broker, vedina.storage.outbox) ----------------
# Counters and the histogram are written by the process that runs the job: a serving
# worker in the embedded profile, `vedina worker` in the real one (WORKER_METRICS_PORT).
JOB_RETRIES = Counter("vedina_job_retries_total", "Counted job failures scheduled for another try", ["topic"])
JOB_DEAD_LETTERS = Counter("vedina_job_dead_letters_total", "Jobs moved to the dead letters after their last try",
                           ["topic"])
JOB_DURATION = Histogram(
    "vedina_job_duration_seconds", "Time a job handler ran, by outcome (ok, failed, postponed, duplicate, cancelled)",
    ["topic", "outcome"], buckets=(0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600),
)
# Gauges are refreshed every few seconds by each process that runs Services.start()
# (vedina.jobs.monitoring); a scrape shows the most recent value of a live process.
JOB_QUEUE_DEPTH = Gauge(
    "vedina_job_queue_depth", "Jobs waiting: queue=jobs (ready), retry (backing off), dead (dead letters)", ["queue"],
    multiprocess_mode="livemostrecent",
)
SCHEDULED_RUNS = Counter("vedina_scheduled_task_runs_total", "Periodic task ticks run (vedina.jobs.scheduler)",
                         ["task", "outcome"])
OUTBOX_BACKLOG = Gauge("vedina_outbox_backlog", "Outbox rows not yet published (dead rows included)",
                       multiprocess_mode="livemostrecent")


class BufferedCounter:
    """A counter child incremented in memory and added to the shared files by
    :func:`flush_buffered` (RequestRecorder's once-a-second flush)."""

    def __init__(self, child) -> None:
        self.child = child
        self.pending = 0
        _BUFFERED.append(self)

    def inc(self) -> None:
        self.pending += 1

    def add(self, amount: int) -> None:
        self.pending += amount

    def flush(self) -> None:
        pending, self.pending = self.pending, 0
        if pending:
            self.child.inc(pending)


_BUFFERED: list[BufferedCounter] = []
_FLUSH_HOOKS: list[Callable[[], None]] = []
_ERROR_COUNTS: dict[str, int] = {}
_MAX_ERROR_CODES = 200  # codes are the program's own; a guard all the same


def count_error(code: str) -> None:
    """One error answer with this JSON ``code`` (added to ERRORS at the next flush)."""
    if code not in _ERROR_COUNTS and len(_ERROR_COUNTS) >= _MAX_ERROR_CODES:
        code = "other"
    _ERROR_COUNTS[code] = _ERROR_COUNTS.get(code, 0) + 1


def add_flush_hook(hook: Callable[[], None]) -> None:
    """``hook()`` runs at every flush (each second, and at each scrape): a sampler setting
    gauges from process state, or the access log writing its lines."""
    _FLUSH_HOOKS.append(hook)


def remove_flush_hook(hook: Callable[[], None]) -> None:
    if hook in _FLUSH_HOOKS:
        _FLUSH_HOOKS.remove(hook)


def resource_sampler(engine, verifier) -> Callable[[], None]:
    """A flush hook setting the pool and JWT-cache gauges of this process (engine: an AsyncEngine,
    verifier: the JwtVerifier). Both profiles use SQLAlchemy's queue pool."""
    pool = engine.pool
    capacity = pool.size() + max(getattr(pool, "_max_overflow", 0), 0) if hasattr(pool, "checkedout") else 0

    def sample() -> None:
        if capacity:
            DB_POOL.labels("checked_out").set(pool.checkedout())
            DB_POOL.labels("idle").set(pool.checkedin())
            DB_POOL_MAX.set(capacity)
        JWT_CACHE_ENTRIES.set(verifier.cache_size)

    return sample


class InFlight:
    """Requests this process is answering: a plain int the server moves (no shared write per
    request); IN_FLIGHT is set from it at each flush and scrape."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


IN_FLIGHT_REQUESTS = InFlight()


def flush_buffered(*, scraping: bool = False) -> None:
    for counter in _BUFFERED:
        counter.flush()
    if _ERROR_COUNTS:
        counts = dict(_ERROR_COUNTS)
        _ERROR_COUNTS.clear()
        for code, count in counts.items():
            ERRORS.labels(code).inc(count)
    IN_FLIGHT.set(max(IN_FLIGHT_REQUESTS.count - scraping, 0))
    for hook in list(_FLUSH_HOOKS):
        try:
            hook()
        except Exception:  # one failing hook must not stop the others (nor the flush loop)
            log.warning("metrics flush hook failed", exc_info=True)


class RequestRecorder:
    """Answered requests, counted in plain dicts and added to REQUESTS and LATENCY once a
    second (and at shutdown): a sample in multiprocess mode is a locked write to a
    memory-mapped file, three per request otherwise. A scrape sees each worker's
    requests at most :attr:`interval` seconds late.

    >>> recorder = RequestRecorder()
    >>> recorder.record("GET", "/api/movies/:id", 200, 0.0021)
    >>> recorder.flush()    # or: recorder.start() in the worker's event loop
    """

    def __init__(self, *, interval: float = 1.0) -> None:
        self.interval = interval
        self._counts: dict[tuple[str, str, int], int] = {}
        self._latencies: dict[tuple[str, str], list] = {}  # -> [sum, count per bucket]
        self._bounds = LATENCY._upper_bounds  # the histogram's buckets, +Inf last
        self._task = Background("request metrics")

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        latency = self._latencies.get(key[:2])
        if latency is None:
            latency = self._latencies[key[:2]] = [0.0, [0] * len(self._bounds)]
        latency[0] += seconds
        latency[1][bisect.bisect_left(self._bounds, seconds)] += 1

    def flush(self, *, scraping: bool = False) -> None:
        flush_buffered(scraping=scraping)
        counts, self._counts = self._counts, {}
        latencies, self._latencies = self._latencies, {}
        for (method, route, status), count in counts.items():
            REQUESTS.labels(method, route, str(status)).inc(count)
        for (method, route), (total, buckets) in latencies.items():
            # Histogram.observe() adds one sample; this adds many at once, to the same values.
            child = LATENCY.labels(method, route)
            child._sum.inc(total)
            for index, count in enumerate(buckets):
                if count:
                    child._buckets[index].inc(count)

    def start(self) -> None:
        self._task.start(self._loop)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.flush()

    async def close(self) -> None:
        await self._task.stop()
        self.flush()


def forget_process(pid: int) -> None:
    """In a server's main process, once worker ``pid`` has exited: remove its live gauges
    (``livesum``, ``liveall``, ``livemostrecent``, ...) from the multiprocess files, or
    every scrape would keep adding the values of a worker that is gone."""
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)


def serve_worker_metrics(port: int) -> None:
    """``vedina worker``'s own /metrics on 127.0.0.1:``port`` (it has no HTTP server otherwise)."""
    from prometheus_client import REGISTRY, start_http_server

    registry = REGISTRY
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr="127.0.0.1", registry=registry)


def exposition() -> tuple[bytes, str]:
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
