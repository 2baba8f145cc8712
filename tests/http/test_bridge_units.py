"""Small pieces of the RSGI bridge that the live-server suites reach only indirectly."""

from __future__ import annotations

import pytest
from robyn import Headers, Response

from vedina._native import Router
from vedina.http import sendfile
from vedina.http.bridge import _as_response, _cookie_header


def test_sendfile_header_round_trips_paths_with_separators():
    value = sendfile.FileRange(path="/media/a;b-c.mp4", start=10, end=20).header_value()
    headers = [("content-type", "video/mp4"), (sendfile.HEADER, value)]
    taken = sendfile.take(headers)
    assert taken == sendfile.FileRange(path="/media/a;b-c.mp4", start=10, end=20)
    assert headers == [("content-type", "video/mp4")]  # never reaches the client
    assert sendfile.take(headers) is None


def test_cookie_header_renders_every_attribute():
    response = Response(200, Headers({}), b"")
    response.set_cookie("sid", "abc", path="/", max_age=60, secure=True, http_only=True, same_site="Lax")
    rendered = _cookie_header("sid", response.cookies.get("sid"))
    assert rendered == "sid=abc; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"


@pytest.mark.parametrize(
    ("value", "content_type", "body"),
    [({"a": 1}, "application/json", b'{"a":1}'), ("hi", "text/plain", b"hi"), (b"\x00", "application/octet-stream", b"\x00")],
)
def test_bare_returns_become_responses(value, content_type, body):
    response = _as_response(value)
    assert response.headers.get("content-type") == content_type
    assert response.description == body


def test_router_rejects_conflicting_routes_with_value_error():
    router = Router()
    router.insert("GET", "/a/:id", 0)
    with pytest.raises(ValueError):
        router.insert("GET", "/a/:other", 1)
    assert router.lookup("GET", "/a/7") == (0, {"id": "7"})
    assert router.lookup("GET", "/b") is None


def test_request_ids_are_unique_and_differ_after_fork():
    import os

    from vedina.http.middleware import new_request_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report one id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    assert child_id[:16] != new_request_id()[:16]


def test_a_plus_in_the_query_is_a_plus_as_signatures_read_it():
    """RFC 3986 (and SigV4): "a+b" and "a%2Bb" are the same value, so swapping one for the
    other in a signed request changes nothing a handler reads."""
    from types import SimpleNamespace

    from robyn import Robyn

    from vedina.http.bridge import RSGIBridge
    from vedina.http.context import context_of

    bridge = RSGIBridge(Robyn(__file__))
    for raw in ("x=a+b&y=%20c", "x=a%2Bb&y=%20c"):
        scope = SimpleNamespace(query_string=raw, headers={"host": "t"}, authority="t", client="127.0.0.1:1",
                                method="GET", scheme="http", path="/")
        request = bridge._build_request(scope, b"")
        assert request.query_params.get("x", None) == "a+b" and request.query_params.get("y", None) == " c"
        assert context_of(request).raw_query == raw
