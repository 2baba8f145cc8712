"""Building Robyn responses: JSON bodies, the common error shape, standard headers.

Every response gets a fresh ``Headers`` object: Robyn's module-level default
header objects are shared, so appending to one would leak headers into other
requests.
"""

from __future__ import annotations

from typing import Any

import msgspec
from robyn import Headers, Response

from vedina.errors import error_body
from vedina.http.ranges import etag_matches
from vedina.metrics import count_error

JSON = "application/json"
_encoder = msgspec.json.Encoder()

# Headers on every answer. The API serves JSON only, so the content security
# policy forbids everything; /docs loosens it (see SECURITY_HEADERS_DOCS).
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
SECURITY_HEADERS_DOCS = {
    **SECURITY_HEADERS,
    # Scripts from this origin only (no inline script, no CDN); Swagger UI sets style attributes.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
}


# What a JSON answer starts with (one native call; apply_standard_headers then finds them set).
_JSON_HEADERS = {**SECURITY_HEADERS, "cache-control": "no-store", "content-type": JSON}


def encode_json(body: Any) -> bytes:
    return _encoder.encode(body)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response_headers = Headers({**_JSON_HEADERS, **headers} if headers else _JSON_HEADERS)
    return Response(status_code=status, headers=response_headers, description=encode_json(body))


def encoded_json_response(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer whose body is encoded already (e.g. a stored one, replayed)."""
    return Response(status_code=status, headers=Headers({**_JSON_HEADERS, **(headers or {})}), description=body)


def document_response(request, document, *, cache_control: str = "no-cache", content_type: str = JSON) -> Response:
    """An encoded answer (``body`` bytes and a ``tag``) with its ETag; ``304`` when
    the client's ``If-None-Match`` already names it (RFC 9110 §13.1.2)."""
    etag = f'"{document.tag}"'
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None and etag_matches(if_none_match, etag):
        return Response(304, Headers({**SECURITY_HEADERS, "etag": etag, "cache-control": cache_control}), b"")
    headers = Headers({**_JSON_HEADERS, "etag": etag, "cache-control": cache_control, "content-type": content_type})
    return Response(200, headers, document.body)


def error_response(exc: BaseException) -> Response:
    """The common error shape for any exception (no stack trace, ever)."""
    status, body, headers = error_body(exc)
    count_error(body["error"]["code"])
    return json_response(body, status=status, headers=headers)


def apply_standard_headers(response: Response, *, request_id: str, path: str) -> Response:
    headers = response.headers
    policy = SECURITY_HEADERS_DOCS if path == "/docs" else SECURITY_HEADERS
    for name, value in policy.items():
        if not headers.contains(name):
            headers.set(name, value)
    if not headers.contains("cache-control"):
        headers.set("cache-control", "no-store")
    headers.set("x-request-id", request_id)
    return response
