"""The Python request signer produces signatures the Rust verifier accepts."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from vedina import _native
from vedina.client import SigV4Auth, sign_request


def verify(method: str, url: str, headers: dict[str, str], body: bytes, secret: str) -> None:
    parts = urlsplit(url)
    _native.verify_sigv4(method, parts.path, parts.query, list(headers.items()), body, secret, region="eu-west-1")


def test_signed_request_verifies_and_tampering_does_not():
    url = "http://api.vedina.test/api/movies?limit=5&offset=10"
    headers = sign_request("POST", url, headers={"content-type": "application/json"}, body=b'{"a":1}',
                           access_key_id="AKTEST", secret="s3cret-key", region="eu-west-1")
    verify("POST", url, headers, b'{"a":1}', "s3cret-key")
    with pytest.raises(_native.SignatureError):
        verify("POST", url, headers, b'{"a":2}', "s3cret-key")
    with pytest.raises(_native.SignatureError):
        verify("POST", url.replace("limit=5", "limit=6"), headers, b'{"a":1}', "s3cret-key")


def test_httpx_auth_signs_what_is_sent():
    captured = {}

    def handler(request: httpx.Request) -> httpx.Response:
        captured["request"] = request
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(handler), auth=SigV4Auth("AKTEST", "k3y", region="eu-west-1"))
    client.put("http://api.vedina.test/api/users/me", json={"display_name": "Ann"})
    request = captured["request"]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in {"content-length", "accept-encoding", "connection", "user-agent"}}
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKTEST/")
    verify("PUT", str(request.url), headers, request.content, "k3y")
