"""Helpers of the observability tests: a live server, some traffic, a scrape, metric names."""

from __future__ import annotations

import re
import subprocess
import time
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_PASSWORD, LiveServer

OBSERVED_ENV = {"RATE_LIMIT_ENABLED": "false", "PLAYBACK_DEFAULT_PLAN": "premium"}


def start_server(live_data, profile: str, **env: str) -> LiveServer:
    return LiveServer(server="granian", env={**live_data(profile), **OBSERVED_ENV, **env}, workers=2)


def register(http: httpx.Client, *, password: str = TEST_PASSWORD) -> tuple[str, dict]:
    """A new account's email and its login answer (tokens)."""
    email = f"obs-{uuid.uuid4().hex[:12]}@example.org"
    registered = http.post("/api/auth/register", json={"email": email, "password": password, "display_name": "Obs"})
    assert registered.status_code == 202, registered.text
    login = http.post("/api/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    return email, login.json()


def first_movie_id(http: httpx.Client) -> int:
    listing = http.get("/api/movies", params={"limit": 1})
    assert listing.status_code == 200, listing.text
    return listing.json()["items"][0]["id"]


def play(http: httpx.Client, movie_id: int, token: str) -> httpx.Response:
    """Start playback and fetch the first 100 bytes of the first rendition (a 206)."""
    started = http.get(f"/api/movies/{movie_id}/playback", params={"device_id": "obs-tv", "device_name": "obs-tv"},
                       headers={"authorization": f"Bearer {token}"})
    assert started.status_code == 200, started.text
    media = http.get(started.json()["renditions"][0]["url"], headers={"range": "bytes=0-99"})
    assert media.status_code == 206 and len(media.content) == 100, media.status_code
    return started


def traffic(base_url: str) -> None:
    """Answers of every kind: cached reads (hits), a deep route, 404, 405, an early 401, playback, media."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        movie_id = first_movie_id(http)
        for _ in range(3):
            assert http.get(f"/api/movies/{movie_id}").status_code == 200
        assert http.get(f"/api/movies/{movie_id}/comments").status_code == 200
        assert http.get("/no/such/route").status_code == 404
        assert http.delete("/health").status_code == 405
        bad = http.get("/api/users/me", headers={"authorization": "Bearer not.a.token"})
        assert bad.status_code == 401  # answered by a before-middleware
        _, tokens = register(http)
        for _ in range(3):  # the token's principal is cached after the first
            assert http.get("/api/users/me", headers={"authorization": f"Bearer {tokens['access_token']}"}).status_code == 200
        play(http, movie_id, tokens["access_token"])


def scrape(base_url: str) -> str:
    time.sleep(1.3)  # every worker has flushed its last second
    response = httpx.get(f"{base_url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def sample_names(exposition: str) -> set[str]:
    """Every sample name of a scrape (with _total, _bucket, _sum, _count suffixes)."""
    return {sample.name for family in text_string_to_metric_families(exposition) for sample in family.samples}


def sample_value(exposition: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def labels_of(exposition: str, name: str, label: str) -> set[str]:
    return set(re.findall(rf'^{name}\{{[^}}]*{label}="([^"]*)"', exposition, re.M))


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, timeout=60)
