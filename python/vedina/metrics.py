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
import os

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

    def flush(self) -> None:
        pending, self.pending = self.pending, 0
        if pending:
            self.child.inc(pending)


_BUFFERED: list[BufferedCounter] = []


def flush_buffered() -> None:
    for counter in _BUFFERED:
        counter.flush()


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

    def flush(self) -> None:
        flush_buffered()
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
