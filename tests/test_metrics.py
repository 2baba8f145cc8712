"""Request metrics: buffered per worker, added to Prometheus exactly as observe() would,
and labelled by route template so that paths cannot grow the number of series."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from prometheus_client import REGISTRY

from vedina.metrics import LATENCY, REQUESTS, RequestRecorder


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_buffered_samples_equal_what_observe_would_have_recorded():
    labels = {"method": "GET", "route": "/test/recorder/:id"}
    direct = {"method": "GET", "route": "/test/recorder/direct"}
    latencies = [0.0004, 0.001, 0.003, 0.02, 0.7, 9.0]
    recorder = RequestRecorder()
    for seconds in latencies:
        recorder.record("GET", labels["route"], 200, seconds)
        LATENCY.labels("GET", direct["route"]).observe(seconds)
    recorder.record("GET", labels["route"], 404, 0.002)
    assert sample("vedina_http_requests_total", {**labels, "status": "200"}) == 0  # not before the flush
    recorder.flush()
    assert sample("vedina_http_requests_total", {**labels, "status": "200"}) == len(latencies)
    assert sample("vedina_http_requests_total", {**labels, "status": "404"}) == 1
    for bound in ("0.001", "0.005", "0.025", "1.0", "+Inf"):
        expected = sample("vedina_http_request_duration_seconds_bucket", {**direct, "le": bound})
        expected += 1 if float(bound) >= 0.002 else 0  # the 404's latency
        assert sample("vedina_http_request_duration_seconds_bucket", {**labels, "le": bound}) == expected, bound
    assert sample("vedina_http_request_duration_seconds_sum", labels) == pytest.approx(sum(latencies) + 0.002)
    REQUESTS.remove("GET", labels["route"], "200")  # keep the default registry small for other tests


@pytest.mark.parametrize("profile", ["embedded"])
def test_metrics_labels_stay_bounded_whatever_paths_clients_send(live_servers, profile):
    live = live_servers("granian", profile)
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        for i in range(60):
            assert http.get(f"/x{i}-probe/{i}").status_code == 404
            assert http.request("PROPFIND", f"/y{i}").status_code == 404
        assert http.get("/api/movies/1").status_code == 200
        time.sleep(1.5)  # every worker has added its counts to the shared files
        exposition = http.get("/metrics").text
    routes = set(re.findall(r'vedina_http_requests_total\{[^}]*route="([^"]*)"', exposition))
    assert not any("probe" in route or route.startswith("/y") for route in routes), routes
    assert {"unmatched", "/api/movies/:id"} <= routes
    methods = set(re.findall(r'vedina_http_requests_total\{[^}]*method="([^"]*)"', exposition))
    assert "PROPFIND" not in methods and "OTHER" in methods


def test_metrics_answer_only_the_allowed_addresses(live_data, tmp_path):
    from tests.conftest import LiveServer

    env = {**live_data("embedded"), "METRICS_ALLOWED_IPS": "192.0.2.0/24"}
    live = LiveServer(server="granian", env=env, workers=1)
    try:
        refused = httpx.get(f"{live.base_url}/metrics", timeout=10)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert "vedina_http_requests_total" not in refused.text
        # A proxy the app trusts may vouch for an allowed client.
        env = {**env, "TRUSTED_PROXIES": "127.0.0.1"}
    finally:
        live.stop()
    behind = LiveServer(server="granian", env=env, workers=1)
    try:
        allowed = httpx.get(f"{behind.base_url}/metrics", headers={"x-forwarded-for": "192.0.2.9"}, timeout=10)
        assert allowed.status_code == 200 and "vedina_http_requests_total" in allowed.text
        outside = httpx.get(f"{behind.base_url}/metrics", headers={"x-forwarded-for": "203.0.113.9"}, timeout=10)
        assert outside.status_code == 404
    finally:
        behind.stop()
