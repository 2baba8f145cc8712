"""Access logs: one JSON line per request (id, method, route template, status, duration, user), and no
secret of a full flow (passwords, tokens, cookies, CSRF tokens, API-key secrets, signatures, playback
tokens, webhook secrets) anywhere in what the server wrote."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import PROFILES, WEBHOOK_SECRETS, run_cli
from tests.ops.observability import first_movie_id, play, start_server
from vedina._native import sign_sigv4
from vedina.logs import AccessLog
from vedina.services.webhooks import signature_header


def cookie_values(response: httpx.Response) -> dict[str, str]:
    return {line.split("=", 1)[0]: line.split("=", 1)[1].split(";", 1)[0]
            for line in response.headers.get_list("set-cookie")}


@pytest.mark.parametrize("profile", PROFILES)
def test_a_full_flow_logs_one_line_per_request_and_no_secret(live_data, profile):
    live = start_server(live_data, profile)
    answers: list[httpx.Response] = []
    secrets: set[str] = set()
    try:
        http = httpx.Client(base_url=live.base_url, timeout=30, event_hooks={"response": [answers.append]})
        email, password, new_password = f"logs-{uuid.uuid4().hex[:10]}@example.org", uuid.uuid4().hex, uuid.uuid4().hex
        secrets |= {password, new_password}
        assert http.post("/api/auth/register", json={"email": email, "password": password,
                                                     "display_name": "Logs"}).status_code == 202
        run_cli(live.env, "set-role", email, "admin")
        tokens = http.post("/api/auth/login", json={"email": email, "password": password}).json()
        refreshed = http.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        tokens = {**tokens, **{f"new_{k}": v for k, v in refreshed.json().items() if k.endswith("token")}}
        secrets |= {tokens["access_token"], tokens["refresh_token"], tokens["new_access_token"],
                    tokens["new_refresh_token"]}
        bearer = {"authorization": f"Bearer {tokens['new_access_token']}"}
        assert http.get("/api/users/me", headers=bearer).status_code == 200

        # A cookie session, and an unsafe request with its CSRF token.
        login = http.post("/api/auth/login", json={"email": email, "password": password, "session": "cookie"})
        assert login.status_code == 200, login.text
        cookies = cookie_values(login)
        csrf = login.json()["csrf_token"]
        secrets |= set(cookies.values()) | {csrf}
        session = {"cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()), "x-csrf-token": csrf}
        assert http.patch("/api/users/me", json={"display_name": "Cookie"}, headers=session).status_code == 200

        # An API key, and a SigV4-signed request with it.
        key = http.post("/api/api-keys", json={"name": "logs", "scopes": ["catalog:read"]}, headers=bearer)
        assert key.status_code == 201, key.text
        key = key.json()
        host = live.base_url.removeprefix("http://")
        signed = sign_sigv4("GET", "/api/auth/whoami", "", [("Host", host)], b"", access_key_id=key["access_key_id"],
                            secret=key["secret"], region="us-east-1")
        secrets |= {key["secret"], dict(signed)["Authorization"].rsplit("Signature=", 1)[1]}
        assert http.get("/api/auth/whoami", headers=dict(signed)).status_code == 200

        # Playback: its signed media URL's token.
        started = play(http, first_movie_id(http), tokens["new_access_token"])
        secrets.add(started.json()["renditions"][0]["url"].split("t=", 1)[1])

        # A signed webhook.
        webhook_secret = WEBHOOK_SECRETS.split(",")[0].split(":", 1)[1].encode()
        body = orjson.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "payment.succeeded", "data": {"amount": 1}})
        signature = signature_header(webhook_secret, body)
        secrets |= {webhook_secret.decode(), signature.rsplit("v1=", 1)[1]}
        hooked = http.post("/api/webhooks/simpay", content=body,
                           headers={"content-type": "application/json", "vedina-signature": signature})
        assert hooked.status_code in (200, 202), hooked.text

        # A password change (old and new password in one body).
        changed = http.post("/api/auth/password", json={"current_password": password, "new_password": new_password},
                            headers=bearer)
        assert changed.status_code in (200, 204), changed.text
        http.close()
        time.sleep(1.3)
    finally:
        live.stop()  # the workers write their last lines at shutdown

    text = (Path(live.env["DATA_DIR"]) / f"granian-{live.port}.log").read_text()
    leaked = sorted(secret for secret in secrets if secret in text)
    assert not leaked, f"secrets in the server's output: {leaked}"
    lines = [orjson.loads(line) for line in text.splitlines() if '"vedina.access"' in line]
    by_id = {line["request_id"]: line for line in lines}
    for answer in answers:
        line = by_id.get(answer.headers["x-request-id"])
        assert line is not None, f"no access line for {answer.request.method} {answer.request.url.path}"
        assert line["status"] == answer.status_code and line["method"] == answer.request.method
        assert "?" not in line["route"] and line["duration_ms"] >= 0
    whoami = by_id[next(a for a in answers if a.request.url.path == "/api/auth/whoami").headers["x-request-id"]]
    assert whoami["api_key"] == key["access_key_id"] and "user_id" not in whoami
    me = [by_id[a.headers["x-request-id"]] for a in answers if a.request.url.path == "/api/users/me"]
    assert me and all(line["route"] == "/api/users/me" and line["user_id"] for line in me)
    media = next(by_id[a.headers["x-request-id"]] for a in answers if a.request.url.path.startswith("/api/media/"))
    assert media["route"] == "/api/media/:asset_id" and media["status"] == 206


def test_access_log_off_writes_no_line(live_data):
    live = start_server(live_data, "embedded", ACCESS_LOG="false")
    try:
        assert httpx.get(f"{live.base_url}/health", timeout=10).status_code == 200
        time.sleep(1.3)
    finally:
        live.stop()
    assert '"vedina.access"' not in (Path(live.env["DATA_DIR"]) / f"granian-{live.port}.log").read_text()


def test_lines_are_written_whole_in_chunks_of_at_most_pipe_buf(tmp_path):
    read, write = os.pipe()
    log = AccessLog(fd=write)
    for i in range(100):
        log.add(f"id-{i}", "GET", "/api/movies/:id", 200, 0.0012, None)
    log.flush()
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    lines = [orjson.loads(line) for line in data.splitlines()]
    assert [line["request_id"] for line in lines] == [f"id-{i}" for i in range(100)]
    assert lines[0]["duration_ms"] == 1.2 and lines[0]["ts"].endswith("Z") and "user_id" not in lines[0]


def test_a_full_buffer_drops_and_counts_lines_and_a_request_never_writes(tmp_path):
    read, write = os.pipe()
    os.set_blocking(read, False)
    log = AccessLog(fd=write, max_pending=10)
    for i in range(15):
        log.add(f"id-{i}", "GET", "/health", 200, 0.0001, None)
    with pytest.raises(BlockingIOError):  # nothing written on the request path
        os.read(read, 65536)
    assert log.dropped.pending == 5  # vedina_access_log_dropped_total at the next metrics flush
    log.flush()
    log.add("id-after", "GET", "/health", 200, 0.0001, None)
    log.flush()
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    ids = [orjson.loads(line)["request_id"] for line in data.splitlines()]
    assert ids == [f"id-{i}" for i in range(10)] + ["id-after"]


async def test_the_writer_task_writes_in_slices_and_lets_requests_run_between_them(tmp_path):
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    log = AccessLog(fd=fd)
    try:
        for i in range(5 * AccessLog.SLICE):
            log.add(f"id-{i}", "GET", "/api/movies/:id", 200, 0.0004, None)
        written_when_a_request_ran = []

        async def request():  # what a request would see while the writer works
            while not path.stat().st_size:
                await asyncio.sleep(0)
            written_when_a_request_ran.append(len(path.read_bytes().splitlines()))

        log.start()
        await asyncio.wait_for(request(), timeout=5)
        await asyncio.sleep(AccessLog.INTERVAL * 3)
        log.add("id-last", "GET", "/health", 200, 0.0001, None)
        await log.close()  # writes what is left
    finally:
        os.close(fd)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line)["request_id"] for line in lines] == [f"id-{i}" for i in range(5 * AccessLog.SLICE)] + [
        "id-last"]
    assert written_when_a_request_ran and written_when_a_request_ran[0] < 5 * AccessLog.SLICE
