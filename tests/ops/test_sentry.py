"""Error tracking: with SENTRY_DSN set, an unhandled error in a handler reaches Sentry (here: a loopback
server receiving envelopes) tagged with the request id, and no secret of the request goes with it.

No product route raises on purpose (backend outages become 503s, not crashes), so the test serves the
real app under Granian with one extra route of its own that fails like a storage bug would."""

from __future__ import annotations

import gzip
import http.server
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import zlib

import httpx
import pytest

from tests.conftest import free_port, wait_until_healthy
from vedina.error_tracking import _before_breadcrumb, scrub

pytest.importorskip("sentry_sdk")

APP = textwrap.dedent('''
    import logging

    from vedina.app import create_app
    from vedina.config import load_settings
    from vedina.error_tracking import init_error_tracking
    from vedina.http.bridge import RSGIBridge
    from vedina.http.responses import json_response
    from vedina.http.routes import RouteTable
    from vedina.logs import configure_logging


    def build():
        settings = load_settings()
        configure_logging(settings.log_level)
        init_error_tracking(settings)
        app = create_app(settings)

        def broken(request):
            secret_body = request.body  # a local holding the secrets: never sent
            raise OSError("media volume went away while writing a chunk")

        def logged(request):
            log = logging.getLogger("vedina.test_only")
            secret = request.headers.get("x-api-secret")
            log.warning("signing the upload of %s", secret)  # an earlier record: a breadcrumb
            try:
                raise ValueError("upload signature rejected")
            except ValueError:
                log.error("upload of %s failed", secret, exc_info=True)  # the event, its argument a secret
            return json_response({"logged": True})

        app.add_route("POST", "/test-only/broken", broken, include_in_schema=False)
        app.add_route("POST", "/test-only/logged", logged, include_in_schema=False)
        app.state.routes = RouteTable.of(app)
        return RSGIBridge(app, routes=app.state.routes, max_body_bytes=settings.max_body_bytes)
''')


class Envelopes(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        encoding = self.headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        Envelopes.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_endpoint():
    Envelopes.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Envelopes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42"
    server.shutdown()


def test_an_unhandled_error_is_reported_with_its_request_id_and_no_secret(live_data, sentry_endpoint, tmp_path):
    (tmp_path / "sentry_app.py").write_text(APP)
    port = free_port()
    env = {**os.environ, **live_data("embedded"), "SENTRY_DSN": sentry_endpoint, "SENTRY_ENVIRONMENT": "ops-test",
           "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "granian", "--interface", "rsgi", "--factory", "--workers", "1", "--port", str(port),
         "sentry_app:build"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "wb"))
    secrets = {f"query-{uuid.uuid4().hex}", f"header-{uuid.uuid4().hex}", f"cookie-{uuid.uuid4().hex}",
               f"body-{uuid.uuid4().hex}"}
    query, header, cookie, body = sorted(secrets, key=lambda s: ["query", "header", "cookie", "body"].index(s[:-33]))
    log_argument = f"logarg-{uuid.uuid4().hex}"  # logged as an argument, in a breadcrumb and in the event
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        answer = httpx.post(f"http://127.0.0.1:{port}/test-only/broken", params={"token": query},
                            headers={"x-api-secret": header, "cookie": f"theme={cookie}"},
                            json={"password": body}, timeout=10)
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "internal_error"
        assert "media volume" not in answer.text  # the client never sees the error itself
        logged = httpx.post(f"http://127.0.0.1:{port}/test-only/logged", headers={"x-api-secret": log_argument},
                            timeout=10)
        assert logged.status_code == 200, logged.text
        deadline = time.monotonic() + 15
        while not all(any(b'"event_id"' in e and kind in e for e in Envelopes.received)
                      for kind in (b"OSError", b"ValueError")):
            assert time.monotonic() < deadline, f"no error event reached the DSN: {Envelopes.received[:2]}"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    event = next(e for e in Envelopes.received if b"OSError" in e)
    assert b"media volume went away" in event
    assert f'"request_id":"{answer.headers["x-request-id"]}"'.encode() in event.replace(b": ", b":")
    assert b'"environment":"ops-test"' in event.replace(b": ", b":")
    logged_event = next(e for e in Envelopes.received if b"ValueError" in e)
    # The log record's template, not its formatted message; the earlier record as a template breadcrumb.
    assert b'"formatted":"upload of %s failed"' in logged_event.replace(b": ", b":")
    assert b'"message":"signing the upload of %s"' in logged_event.replace(b": ", b":")
    everything = b"".join(Envelopes.received)
    assert not [s for s in [*secrets, log_argument] if s.encode() in everything]


def test_scrub_sends_log_records_as_their_templates_without_arguments():
    event = scrub({"logentry": {"message": "login failed for %s", "formatted": "login failed for a@b.c",
                                "params": ["a@b.c"]}})
    assert event["logentry"] == {"message": "login failed for %s", "formatted": "login failed for %s"}
    record = logging.LogRecord("vedina.x", logging.INFO, __file__, 1, "token %s issued", ("tok-123",), None)
    crumb = {"type": "log", "category": "vedina.x", "message": record.getMessage(), "data": {"api_key": "k"}}
    assert _before_breadcrumb(dict(crumb), {"log_record": record}) == \
        {"type": "log", "category": "vedina.x", "message": "token %s issued", "data": {}}
    assert "message" not in _before_breadcrumb(dict(crumb), {})  # not a log record: no template to keep
    assert _before_breadcrumb({"category": "vedina.access", "message": "GET /"}, {"log_record": record}) is None


def test_scrub_drops_cookies_bodies_query_strings_and_secret_headers():
    event = scrub({
        "request": {"url": "https://x/api?token=abc", "query_string": "token=abc", "cookies": {"a": "b"},
                    "data": {"password": "p"}, "headers": {"Authorization": "Bearer t", "User-Agent": "ua"}},
        "extra": {"api_key": "k", "nested": {"csrf_token": "c", "ok": 1}, "count": 2},
        "breadcrumbs": {"values": [{"data": {"signature": "s", "status": 200}}]},
        "exception": {"values": [{"value": "(x) [SQL: INSERT] [parameters: ('a@b.c', 'hash')] (Background: y)"}]},
    })
    assert event["request"] == {"url": "https://x/api", "headers": {"User-Agent": "ua"}}
    assert event["extra"] == {"nested": {"ok": 1}, "count": 2}
    assert event["breadcrumbs"]["values"][0]["data"] == {"status": 200}
    assert "a@b.c" not in event["exception"]["values"][0]["value"]
