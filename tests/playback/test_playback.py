"""GET /api/movies/:id/playback, signed media URLs, and the stream limit, on live servers (both profiles)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import SESSION_SECRET, LiveServer
from tests.playback.conftest import HOUR, PASSWORD, TIMEOUT, PlaybackServer, bearer
from vedina.security.keys import derive_key
from vedina.security.playback_tokens import PlaybackTokens
from vedina.storage.clock import utcnow


def start(http: httpx.Client, movie_id: int, device: str, **headers) -> httpx.Response:
    return http.get(f"/api/movies/{movie_id}/playback", params={"device_id": device, "device_name": device},
                    headers=headers)


def error_code(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json", response.text
    return response.json()["error"]["code"]


def token_of(url: str) -> str:
    return url.partition("?t=")[2]


@pytest.fixture
def movie(server: PlaybackServer) -> dict:
    return server.new_movie()


@pytest.fixture
def viewer(server: PlaybackServer):
    with server.client(server.user()) as http:
        yield http


# -- the answer ----------------------------------------------------------------------------


def test_playback_answer_lists_signed_renditions_subtitles_and_the_session(server, viewer, movie):
    response = start(viewer, movie["id"], "tv-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["movie_id"] == movie["id"]
    assert body["heartbeat_interval_seconds"] == TIMEOUT // 3
    *renditions, video = body["renditions"]  # renditions made by media.transcode (if any), best first, then the source
    assert video["asset_id"] == movie["video"] and video["kind"] == "video"
    assert all(r["kind"] == "rendition" for r in renditions)
    assert [r["height"] for r in renditions] == sorted((r["height"] for r in renditions), reverse=True)
    for item in body["renditions"]:
        assert item["content_type"] == "video/mp4"
        assert {"label", "width", "height", "bitrate"} <= set(item)
        assert item["url"].startswith(f"/api/media/{item['asset_id']}?t=")
    [subtitle] = body["subtitles"]
    assert subtitle["language"] == "en" and subtitle["url"].startswith(f"/api/media/{movie['subtitle']}?t=")
    for art in (body["poster"], body["sprite"], body["sprite_image"]):  # made by media.transcode when it ran
        assert art is None or art["url"].startswith(f"/api/media/{art['asset_id']}?t=")
    assert body["resume_position_seconds"] is None
    session = body["session"]
    assert session["device"] == "tv-1" and session["movie_id"] == movie["id"]
    assert token_of(video["url"]).split(".")[3] == session["id"]  # URLs are bound to the session
    assert {"started_at", "last_heartbeat_at", "expires_at"} <= set(session)


def test_signed_url_streams_ranges_and_subtitles(server, viewer, movie):
    body = start(viewer, movie["id"], "tv-1").json()
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:  # no credentials: the URL is enough
        url = body["renditions"][-1]["url"]  # the source
        ranged = anonymous.get(url, headers={"range": "bytes=0-99"})
        assert ranged.status_code == 206 and len(ranged.content) == 100
        assert ranged.headers["content-range"].startswith("bytes 0-99/")
        assert ranged.content[4:8] == b"ftyp"
        later = anonymous.get(url, headers={"range": "bytes=1000-1999"})
        assert later.status_code == 206 and len(later.content) == 1000
        vtt = anonymous.get(body["subtitles"][0]["url"])
        assert vtt.status_code == 200 and vtt.content.startswith(b"WEBVTT")


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffmpeg not installed")
def test_ffprobe_plays_the_signed_url(server, viewer, movie):
    url = server.base_url + start(viewer, movie["id"], "tv-1").json()["renditions"][-1]["url"]
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_format", url], capture_output=True, text=True,
                           timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert "format_name=mov,mp4" in probe.stdout


def test_opening_a_session_counts_a_start_but_the_same_device_reopening_does_not(server, viewer, movie):
    first = start(viewer, movie["id"], "tv-1").json()["session"]["id"]
    assert server.popularity(movie["id"]) == 1
    again = start(viewer, movie["id"], "tv-1").json()["session"]["id"]
    assert again == first and server.popularity(movie["id"]) == 1
    listed = viewer.get("/api/playback/sessions").json()
    assert [s["id"] for s in listed["items"]] == [first] and listed["limit"] == 2


# -- refused media requests ----------------------------------------------------------------


def test_tampered_expired_and_other_asset_tokens_are_refused(server, viewer, movie):
    body = start(viewer, movie["id"], "tv-1").json()
    url = body["renditions"][-1]["url"]
    token = token_of(url)
    exp, user, asset, session, sig = token.split(".")
    tokens = PlaybackTokens(derive_key(SESSION_SECRET, "playback"), ttl=300)
    cases = {
        "tampered user": (movie["video"], f"{exp}.{int(user) + 1}.{asset}.{session}.{sig}", "playback_token_invalid"),
        "tampered expiry": (movie["video"], f"{int(exp) + 60}.{user}.{asset}.{session}.{sig}", "playback_token_invalid"),
        "other asset": (movie["subtitle"], token, "playback_token_invalid"),
        "garbage": (movie["video"], "not-a-token", "playback_token_invalid"),
        "expired": (movie["video"], tokens.issue(user_id=int(user), asset_id=movie["video"], session_id=session,
                                                  now=int(time.time()) - 301), "playback_token_expired"),
    }
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        for name, (asset_id, bad, code) in cases.items():
            response = anonymous.get(f"/api/media/{asset_id}", params={"t": bad}, headers={"range": "bytes=0-9"})
            assert response.status_code == 403, name
            assert error_code(response) == code, name
        # a token signed with the test secret by the test itself works: the key is the server's
        good = tokens.issue(user_id=int(user), asset_id=movie["video"])
        assert anonymous.get(f"/api/media/{movie['video']}", params={"t": good},
                             headers={"range": "bytes=0-9"}).status_code == 206


def test_no_token_and_no_credentials_is_401_and_credentials_stream_only_a_movie_being_watched(server, viewer, movie):
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        response = anonymous.get(f"/api/media/{movie['video']}", headers={"range": "bytes=0-9"})
        assert response.status_code == 401 and error_code(response) == "unauthorized"
        assert anonymous.head(f"/api/media/{movie['video']}").status_code == 401
    # Credentials alone would get round the stream limit: a live playback session is needed.
    before = viewer.get(f"/api/media/{movie['video']}", headers={"range": "bytes=0-9"})
    assert before.status_code == 403 and error_code(before) == "playback_session_required"
    start(viewer, movie["id"], "tv-1")
    own = viewer.get(f"/api/media/{movie['video']}", headers={"range": "bytes=0-9"})
    assert own.status_code == 206 and len(own.content) == 10


def test_devices_sharing_a_device_id_across_logins_count_apart(server, movie):
    address = f"sharer-{uuid.uuid4().hex[:12]}@example.org"
    with server.client() as http:
        assert http.post("/api/auth/register", json={"email": address, "password": PASSWORD,
                                                     "display_name": "Sharer"}).status_code == 202
    sessions = []
    for device in range(3):  # three logins (three devices) all claiming to be device "shared"
        with server.client() as http:
            token = http.post("/api/auth/login", json={"email": address, "password": PASSWORD}).json()["access_token"]
        with server.client(token) as device_client:
            sessions.append(start(device_client, movie["id"], "shared"))
    assert [r.status_code for r in sessions] == [200, 200, 409]
    assert error_code(sessions[2]) == "too_many_streams"


def test_an_ended_session_stops_its_urls(server, viewer, movie):
    body = start(viewer, movie["id"], "tv-1").json()
    url = body["renditions"][0]["url"]
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        for _ in range(4):  # both workers cache the session as live
            assert anonymous.get(url, headers={"range": "bytes=0-9"}).status_code == 206
        assert viewer.delete(f"/api/playback/sessions/{body['session']['id']}").status_code == 204
        for _ in range(4):
            response = anonymous.get(url, headers={"range": "bytes=0-9"})
            assert response.status_code == 403 and error_code(response) == "playback_session_ended"


# -- the stream limit ----------------------------------------------------------------------


def test_third_device_is_409_listing_the_two_then_ending_one_lets_it_in(server, viewer, movie):
    first = start(viewer, movie["id"], "phone").json()["session"]["id"]
    assert start(viewer, movie["id"], "tablet").status_code == 200
    refused = start(viewer, movie["id"], "laptop")
    assert refused.status_code == 409 and error_code(refused) == "too_many_streams"
    active = refused.json()["error"]["details"]["active"]
    assert [s["device"] for s in active] == ["phone", "tablet"]
    assert all({"id", "started_at"} <= set(s) for s in active)
    assert viewer.delete(f"/api/playback/sessions/{first}").status_code == 204
    assert start(viewer, movie["id"], "laptop").status_code == 200
    assert sorted(s["device"] for s in viewer.get("/api/playback/sessions").json()["items"]) == ["laptop", "tablet"]


def test_heartbeats_keep_a_session_alive_and_silence_frees_it(server, viewer, movie):
    session = start(viewer, movie["id"], "tv-1").json()["session"]["id"]
    start(viewer, movie["id"], "tv-2")
    for _ in range(3):  # past the timeout in total, alive thanks to the heartbeats
        time.sleep(TIMEOUT / 2.5)
        beat = viewer.post(f"/api/playback/sessions/{session}/heartbeat")
        assert beat.status_code == 200 and beat.json()["id"] == session
    assert [s["id"] for s in viewer.get("/api/playback/sessions").json()["items"]] == [session]  # tv-2 timed out
    time.sleep(TIMEOUT + 0.5)
    assert viewer.get("/api/playback/sessions").json()["items"] == []
    assert error_code(viewer.post(f"/api/playback/sessions/{session}/heartbeat")) == "not_found"
    assert start(viewer, movie["id"], "tv-3").status_code == 200 and start(viewer, movie["id"], "tv-4").status_code == 200


def _concurrent_opens(base_urls: list[str], token: str, movie_id: int, count: int) -> list[int]:
    def one(i: int) -> int:
        with httpx.Client(base_url=base_urls[i % len(base_urls)], timeout=60, headers=bearer(token)) as http:
            return start(http, movie_id, f"device-{i}").status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_opens_across_two_workers_let_exactly_the_limit_in(server, movie):
    statuses = _concurrent_opens([server.base_url], server.user(), movie["id"], 10)
    assert sorted(statuses) == [200, 200] + [409] * 8


def test_concurrent_opens_across_two_servers_sharing_the_stores_let_exactly_the_limit_in(server, movie):
    other = LiveServer(server="granian", env=server.env)
    try:
        statuses = _concurrent_opens([server.base_url, other.base_url], server.user(), movie["id"], 10)
    finally:
        other.stop()
    assert sorted(statuses) == [200, 200] + [409] * 8


# -- accounts are isolated -------------------------------------------------------------------


def test_another_users_sessions_are_404_and_invisible(server, viewer, movie):
    body = start(viewer, movie["id"], "tv-1").json()
    sid = body["session"]["id"]
    with server.client(server.user()) as other:
        assert error_code(other.post(f"/api/playback/sessions/{sid}/heartbeat")) == "not_found"
        assert error_code(other.delete(f"/api/playback/sessions/{sid}")) == "not_found"
        assert other.get("/api/playback/sessions").json()["items"] == []
        # B's own token for the same asset is bound to B's session, and A's session survives B
        mine = start(other, movie["id"], "tv-1").json()
        assert mine["session"]["id"] != sid
        assert token_of(mine["renditions"][0]["url"]).split(".")[1] != token_of(body["renditions"][0]["url"]).split(".")[1]
    assert viewer.post(f"/api/playback/sessions/{sid}/heartbeat").status_code == 200


@pytest.mark.parametrize(("path", "method"), [("/api/playback/sessions/bad%20id/heartbeat", "POST"),
                                              ("/api/playback/sessions/" + "a" * 65, "DELETE")])
def test_bad_session_ids_are_422_naming_the_field(viewer, path, method):
    response = viewer.request(method, path)
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "sid"


@pytest.mark.parametrize(("params", "field"), [({"device_id": "a b"}, "device_id"), ({"device_id": "x" * 65}, "device_id"),
                                               ({"device_name": "a\x01b"}, "device_name"),
                                               ({"device_name": "x" * 101}, "device_name")])
def test_bad_device_parameters_are_422_and_open_nothing(viewer, movie, params, field):
    response = viewer.get(f"/api/movies/{movie['id']}/playback", params=params)
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == field
    assert viewer.get("/api/playback/sessions").json()["items"] == []


def test_playback_needs_credentials(server, movie):
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        assert anonymous.get(f"/api/movies/{movie['id']}/playback").status_code == 401
        assert anonymous.get("/api/playback/sessions").status_code == 401


# -- refusals --------------------------------------------------------------------------------


def test_draft_movie_is_not_published(server, viewer):
    draft = server.new_movie(status="draft", published_at=None)
    response = start(viewer, draft["id"], "tv-1")
    assert response.status_code == 403 and error_code(response) == "not_published"
    # and its media is refused to the viewer without a token too
    assert error_code(viewer.get(f"/api/media/{draft['video']}")) == "not_published"
    assert viewer.get("/api/playback/sessions").json()["items"] == []


def test_movie_outside_its_window_is_refused(server, viewer):
    ended = server.new_movie(available_until=utcnow() - HOUR)
    assert error_code(start(viewer, ended["id"], "tv-1")) == "outside_window"
    future = server.new_movie(available_from=utcnow() + HOUR)
    assert error_code(start(viewer, future["id"], "tv-1")) == "outside_window"


def test_age_limit_of_the_profile_is_enforced(server, viewer):
    rated = server.new_movie(maturity_rating="R")
    kid = viewer.post("/api/profiles", json={"name": "Kid", "max_age_rating": "PG"})
    assert kid.status_code == 201, kid.text
    response = start(viewer, rated["id"], "tv-1", **{"X-Profile-Id": str(kid.json()["id"])})
    assert response.status_code == 403 and error_code(response) == "age_restricted"
    assert start(viewer, rated["id"], "tv-1").status_code == 200  # the main profile has no limit


def test_premium_movie_needs_the_plan(server, live_data, movie):
    premium = server.new_movie(plan_tier="premium")
    assert start(server.client(server.user()), premium["id"], "tv-1").status_code == 200  # default plan: premium
    basic = LiveServer(server="granian", env={**server.env, "PLAYBACK_DEFAULT_PLAN": "basic"}, workers=1)
    try:
        plain = PlaybackServer(basic)
        with plain.client(plain.user()) as http:
            response = start(http, premium["id"], "tv-1")
            assert response.status_code == 403 and error_code(response) == "plan_required"
            assert response.json()["error"]["details"]["required"] == "premium"
            assert start(http, movie["id"], "tv-1").status_code == 200  # a basic movie plays
    finally:
        basic.stop()
