"""One HTTP suite against the app on Granian (through the RSGI bridge) and on
Robyn's own server, on both storage profiles; then the two servers' answers
are compared case by case.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PROFILES, SERVERS

SECURITY_HEADERS = ["x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy"]


@pytest.fixture(params=[(s, p) for p in PROFILES for s in SERVERS], ids=lambda sp: f"{sp[0]}-{sp[1]}")
def client(request, live_servers):
    server, profile = request.param
    live = live_servers(server, profile)
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        yield http


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert error["status"] == ("fail" if status < 500 else "error")
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_health_is_ok_with_security_headers_and_request_id(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    for header in SECURITY_HEADERS:
        assert header in response.headers
    assert len(response.headers["x-request-id"]) == 32


def test_client_request_id_is_echoed_and_unsafe_one_replaced(client):
    assert client.get("/health", headers={"x-request-id": "trace-42"}).headers["x-request-id"] == "trace-42"
    replaced = client.get("/health", headers={"x-request-id": "bad id\twith<html>"}).headers["x-request-id"]
    assert replaced != "bad id\twith<html>" and len(replaced) == 32


def test_ready_reports_every_backing_service(client):
    body = client.get("/ready").json()
    assert body["status"] == "ready"
    assert set(body["checks"]) >= {"database", "broker"}
    assert all(result == "ok" for result in body["checks"].values())


def test_movies_list_serves_the_demo_catalog(client):
    body = client.get("/api/movies").json()
    assert len(body["items"]) >= 4
    slugs = {movie["slug"] for movie in body["items"]}
    assert {"color-bars", "mandelbrot-nights", "game-of-life", "test-pattern-2"} <= slugs


def test_movies_list_paginates_by_cursor(client):
    first = client.get("/api/movies", params={"limit": 2}).json()
    second = client.get("/api/movies", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 2 and first["limit"] == 2 and first["next_cursor"]
    assert {m["id"] for m in first["items"]}.isdisjoint({m["id"] for m in second["items"]})


def test_movie_detail_has_assets_probed_by_the_job(client):
    # A demo movie (other suites add movies of their own to the session's catalog).
    movie_id = next(m["id"] for m in client.get("/api/movies", params={"limit": 100}).json()["items"]
                    if m["slug"] == "color-bars")
    movie = client.get(f"/api/movies/{movie_id}").json()
    kinds = {asset["kind"] for asset in movie["assets"]}
    assert {"video", "subtitle"} <= kinds  # and the renditions media.transcode made, once it ran
    video = next(a for a in movie["assets"] if a["kind"] == "video")
    assert video["size_bytes"] > 10_000  # filled in by the media.probe job
    assert movie["duration_seconds"] == 8


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1e3", "9" * 40, "1; DROP TABLE movies"])
def test_bad_pagination_is_422_naming_the_field(client, limit):
    error = assert_error(client.get("/api/movies", params={"limit": limit}), 422, "validation_failed")
    assert error["details"]["field"] == "limit"


@pytest.mark.parametrize("movie_id", ["abc", "0", "1.5", "<b>onerror=alert(1)<b>", "99999999999999999999999"])
def test_bad_movie_id_is_422(client, movie_id):
    assert_error(client.get(f"/api/movies/{movie_id}"), 422, "validation_failed")


def test_unknown_movie_is_404(client):
    assert_error(client.get("/api/movies/987654321"), 404, "not_found")


def test_unknown_route_is_404_json(client):
    error = assert_error(client.get("/no/such/route"), 404, "not_found")
    assert "/no/such/route" in error["message"]
    assert_error(client.post("/no/such/route", content=b"{}"), 404, "not_found")


def test_known_path_with_wrong_method_is_405_with_allow(client):
    response = client.put("/api/movies/1")
    error = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert error["details"]["allowed"] == ["DELETE", "GET", "HEAD", "PATCH"]


def test_html_in_path_is_not_reflected_as_html(client):
    response = client.get("/<img src=x onerror=alert(1)>")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_oversized_body_is_413(client):
    response = client.post("/api/movies", content=b"x" * (1_048_576 + 1))
    assert_error(response, 413, "payload_too_large")


def test_head_answers_like_get_without_body(client):
    response = client.head("/health")
    assert response.status_code == 200
    assert response.content == b""


# -- the two servers agree ----------------------------------------------------------

CASES = [
    ("GET", "/health"),
    ("GET", "/api/movies"),
    ("GET", "/api/movies?limit=1&sort=title"),
    ("GET", "/api/movies/1"),
    ("GET", "/api/movies/abc"),
    ("GET", "/api/movies/424242"),
    ("GET", "/api/movies?limit=500"),
    ("PUT", "/api/movies/1"),
    ("GET", "/nowhere"),
    ("HEAD", "/health"),
]


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("method", "path"), CASES)
def test_granian_bridge_and_robyn_server_agree(live_servers, profile, method, path):
    answers = []
    for server in SERVERS:
        live = live_servers(server, profile)
        response = httpx.request(method, live.base_url + path, timeout=10)
        headers = {name: response.headers.get(name) for name in ["content-type", *SECURITY_HEADERS, "cache-control"]}
        answers.append((response.status_code, headers, response.content))
    assert answers[0] == answers[1]


@pytest.mark.parametrize("value", ["--5", "-", "5-", "+5", "５", "0x10"])
def test_odd_integers_are_422_never_500(client, value):
    assert_error(client.get("/api/movies", params={"limit": value}), 422, "validation_failed")
    assert_error(client.get(f"/api/movies/{value}"), 422, "validation_failed")
