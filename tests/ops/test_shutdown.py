"""Draining (`vedina drain`: /ready 503, /health 200) and SIGTERM (an in-flight upload finishes,
new connections are refused, exit 0), on a live `vedina serve` with two workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, run_cli, signed_in, wait_for
from tests.ops.zero_downtime import worker_pids
from tests.uploads.conftest import metadata_header


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("profile", ["embedded", "real"], indirect=True)
def test_drain_makes_ready_503_in_every_worker_and_health_stays_200(profile, live_data):
    env = live_data(profile)
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        assert httpx.get(f"{live.base_url}/ready").status_code == 200
        run_cli(env, "drain", "--port", str(live.port))
        for _ in range(8):  # new connections: both workers answer
            ready = httpx.get(f"{live.base_url}/ready", headers={"connection": "close"})
            assert ready.status_code == 503
            error = ready.json()["error"]
            assert error["code"] == "service_unavailable" and "Draining" in error["message"]
            assert error["details"] == {"draining": True}  # no file path on a public endpoint
            assert httpx.get(f"{live.base_url}/health", headers={"connection": "close"}).status_code == 200
        os.kill(live.process.pid, signal.SIGHUP)  # a reload keeps the drain: new workers see it too
        time.sleep(1)
        assert httpx.get(f"{live.base_url}/ready").status_code == 503
        run_cli(env, "drain", "--port", str(live.port), "--off")
        assert httpx.get(f"{live.base_url}/ready").json()["status"] == "ready"
    finally:
        live.stop()


@pytest.mark.parametrize("profile", ["embedded", "real"], indirect=True)
def test_sigterm_finishes_the_in_flight_upload_refuses_new_connections_and_exits_0(profile, live_data):
    env = live_data(profile)
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        data = os.urandom(256 * 1024)
        editor = signed_in(live.base_url, env, role="editor")
        # A movie of its own: the finished upload becomes its video (the demo movies stay as they are).
        movie = editor.post("/api/movies", json={"title": f"Shutdown {os.urandom(4).hex()}"})
        assert movie.status_code == 201, movie.text
        created = editor.post("/api/uploads", headers={
            "tus-resumable": "1.0.0", "upload-length": str(len(data)),
            "upload-metadata": metadata_header(movie_id=str(movie.json()["id"]), filename="a.mp4")})
        assert created.status_code == 201, created.text
        path = created.headers["location"]
        # A tus PATCH whose body arrives slowly: the request is in flight when SIGTERM comes.
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall((f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                      f"Authorization: {editor.headers['authorization']}\r\n"
                      "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                      f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode())
        editor.close()
        pieces = [data[i:i + 8192] for i in range(0, len(data), 8192)]
        sock.sendall(pieces[0])
        time.sleep(0.3)
        sent_at = time.monotonic()
        os.kill(live.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not refused(live.port):  # the listener closes at once...
            assert time.monotonic() < deadline, "still accepting connections 10 s after SIGTERM"
            time.sleep(0.05)
        refused_after = time.monotonic() - sent_at
        # Both workers let go of the listening socket at once, the busy one included.
        assert refused_after < 2, f"refused only {refused_after:.2f}s after SIGTERM"
        for piece in pieces[1:]:  # ...while the upload goes on, for about 3 s
            assert live.process.poll() is None
            sock.sendall(piece)
            time.sleep(0.1)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        head = answer.partition(b"\r\n\r\n")[0].decode().lower()
        assert head.startswith("http/1.1 204"), head
        assert f"upload-offset: {len(data)}" in head
        assert live.process.wait(timeout=30) == 0
        stopped_after = time.monotonic() - sent_at
        stored = Path(env["DATA_DIR"], "media")
        assert any(f.stat().st_size == len(data) and f.read_bytes() == data
                   for f in stored.rglob("*") if f.is_file() and f.stat().st_size == len(data))
        print(f"refused {refused_after:.2f}s after SIGTERM, exit 0 {stopped_after:.2f}s after")
    except subprocess.TimeoutExpired:
        pytest.fail("the server did not exit within 30 s of SIGTERM")
    finally:
        live.stop()


@pytest.mark.parametrize("profile", ["embedded", "real"], indirect=True)
def test_sigterm_during_a_reload_kills_the_replacement_still_starting_and_exits_0(profile, live_data):
    live = LiveServer(server="granian", env=live_data(profile), workers=2)
    try:
        main_pid = live.process.pid
        before = worker_pids(main_pid)
        seen = set(before)

        def workers() -> set[int]:
            try:
                pids = worker_pids(main_pid)
            except OSError:  # the main process has exited
                return set()
            seen.update(pids)
            return pids

        os.kill(main_pid, signal.SIGHUP)
        wait_for(lambda: len(workers()) == 3, timeout=30, what="a replacement starting")
        os.kill(main_pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while live.process.poll() is None:
            assert time.monotonic() < deadline, "the server did not exit within 30 s of SIGTERM"
            workers()
            time.sleep(0.05)
        assert live.process.returncode == 0
        assert len(seen - before) == 1, "the reload went on after SIGTERM"
    finally:
        live.stop()
