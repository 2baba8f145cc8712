"""Prometheus metrics, summed across all worker processes.

Granian and Robyn run several worker processes; prometheus-client's
multiprocess mode has each process write its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` (in any worker) adds them up.
``vedina serve`` sets that directory (under DATA_DIR, see
:func:`vedina.http.serve.prepare_multiprocess_dir`) and empties it at start;
a process without it (a test, a one-off command) uses the default registry.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

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
INVALIDATION_LEASE_LOST = Counter(
    "vedina_invalidation_lease_lost_total",
    "Times a worker's invalidation subscription dropped (its near caches were bypassed until resubscribed)",
)
NEAR_CACHE = Counter("vedina_near_cache_total", "Per-worker cache lookups", ["cache", "result"])


def route_group(path: str) -> str:
    """A bounded label for a path: ``/api/movies/42`` -> ``/api/movies``."""
    parts = [p for p in path.split("/") if p][:2]
    if len(parts) == 2 and parts[0] != "api":
        parts = parts[:1]
    return "/" + "/".join(parts)


def exposition() -> tuple[bytes, str]:
    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
