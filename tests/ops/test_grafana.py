"""deploy/grafana: every metric a dashboard query names is one the app really exposes (a live scrape of
the API after traffic, and on the real profile of `vedina worker`'s WORKER_METRICS_PORT too)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROFILES, VEDINA, free_port
from tests.ops.observability import sample_names, scrape, start_server, traffic

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "vedina-dashboard.json"

REAL_PROFILE_ONLY = {"vedina_shared_cache_total"}
_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "offset", "bool", "abs", "absent", "clamp_min", "clamp_max",
    "label_replace", "vector", "scalar", "time", "sum_over_time", "avg_over_time", "max_over_time", "min_over_time",
}


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression (label matchers, ranges, strings and grouping removed)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group()
        if word in _FUNCTIONS or expr[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 15
    return set().union(*(metric_names(expr) for expr in exprs))


def test_metric_names_are_extracted_from_promql():
    assert metric_names('histogram_quantile(0.99, sum by (le, route) (rate(vedina_x_bucket{job=~"a|b"}[5m])))') \
        == {"vedina_x_bucket"}
    assert metric_names('sum(a_total{state="x"}) / sum(b) > 0.5') == {"a_total", "b"}


@pytest.fixture(scope="module")
def worker_exposition(live_data) -> str:
    """`vedina worker` of the real profile, with WORKER_METRICS_PORT."""
    port = free_port()
    env = {**os.environ, **live_data("real"), "WORKER_METRICS_PORT": str(port)}
    process = subprocess.Popen([VEDINA, "worker"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                if "vedina_job_queue_depth" in text:
                    return text
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "vedina worker did not serve /metrics"
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_dashboard_metric_is_exposed_by_a_live_server(live_data, profile, request):
    live = start_server(live_data, profile, RATE_LIMIT_ENABLED="true")
    try:
        traffic(live.base_url)
        exposed = sample_names(scrape(live.base_url))
    finally:
        live.stop()
    if profile == "real":  # jobs run in `vedina worker`: its own scrape
        exposed |= sample_names(request.getfixturevalue("worker_exposition"))
    if profile == "embedded":  # no Redis: no shared cache
        exposed |= REAL_PROFILE_ONLY
    missing = dashboard_metric_names() - exposed
    assert not missing, f"the dashboard names metrics no scrape has: {sorted(missing)}"
