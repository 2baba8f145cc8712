"""A real scrape after real traffic: promtool-clean, route templates in full, and the operations metrics
(in-flight, errors by code, pool, caches, JWT cache, bytes streamed) present with plausible values."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest

from tests.conftest import PROFILES
from tests.ops.observability import labels_of, promtool, sample_names, sample_value, scrape, start_server, traffic
from vedina.storage.stream_sessions import SqlStreamSessions, StreamSession, stream_sessions

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus)")


@pytest.fixture(scope="module", params=PROFILES)
def exposition(request, live_data) -> str:
    live = start_server(live_data, request.param)
    try:
        traffic(live.base_url)
        yield scrape(live.base_url)
    finally:
        live.stop()


def test_a_scrape_after_traffic_passes_promtool_check_metrics(exposition):
    checked = promtool("check", "metrics", stdin=exposition)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_route_labels_are_full_route_templates(exposition):
    routes = labels_of(exposition, "vedina_http_requests_total", "route")
    assert {"/api/movies/:id", "/api/movies/:id/comments", "/api/movies/:id/playback", "/api/media/:asset_id",
            "/api/users/me", "unmatched"} <= routes, routes
    assert not any(part.isdigit() for route in routes for part in route.split("/")), routes


def test_errors_are_counted_by_code_even_when_a_before_middleware_answers(exposition):
    assert sample_value(exposition, "vedina_http_errors_total", code="not_found") >= 1
    assert sample_value(exposition, "vedina_http_errors_total", code="method_not_allowed") >= 1
    assert sample_value(exposition, "vedina_http_errors_total", code="unauthorized") >= 1
    # The 401 from the authentication middleware is a request like any other.
    assert sample_value(exposition, "vedina_http_requests_total", route="/api/users/me", status="401") >= 1


def test_in_flight_pool_and_jwt_cache_gauges_are_sampled(exposition):
    assert "vedina_http_requests_in_flight" in sample_names(exposition)
    assert sample_value(exposition, "vedina_http_requests_in_flight") == 0  # the scrape itself is not counted
    assert sample_value(exposition, "vedina_db_pool_max_connections") > 0
    assert sample_value(exposition, "vedina_db_pool_connections", state="idle") >= 1  # connections were made
    assert sample_value(exposition, "vedina_jwt_verifier_cache_entries") >= 1  # the bearer token we sent


def test_caches_report_hits_and_misses(exposition):
    assert sample_value(exposition, "vedina_near_cache_total", cache="catalog", result="hit") >= 1
    assert sample_value(exposition, "vedina_near_cache_total", cache="principals", result="hit") >= 1
    assert sample_value(exposition, "vedina_near_cache_total", cache="principals", result="miss") >= 1


def test_media_bytes_count_the_range_answers_length(exposition):
    assert sample_value(exposition, "vedina_media_bytes_sent_total", status="206") >= 100


@pytest.mark.parametrize("store", ["sql", "redis"])
async def test_live_playback_sessions_are_counted_across_accounts(resources, store):
    if store == "redis" and resources.redis is None:
        pytest.skip("the embedded profile has no Redis")
    sessions = stream_sessions(resources) if store == "redis" else SqlStreamSessions(resources.engine)
    now = 1_900_000_000_000
    before = await sessions.count_live(now_ms=now)
    for user_id, expires in ((901, now + 60_000), (902, now + 60_000), (902, now + 1), (903, now - 1)):
        candidate = StreamSession(id=uuid.uuid4().hex, user_id=user_id, device_id=uuid.uuid4().hex,
                                  device="tv", movie_id=1, started_at=now - 10, expires_at=expires)
        assert (await sessions.open(candidate, limit=5, now_ms=now - 5)).session is not None
    assert await sessions.count_live(now_ms=now) == before + 3  # 903's had expired
    assert await sessions.count_live(now_ms=now + 2) == before + 2
    await asyncio.sleep(0)
