"""Signing requests to the Vedina API with an API key, for Python clients and tests.

External services sign each request with AWS Signature Version 4 (service
``vedina``), so any SigV4 tool works (``curl --aws-sigv4 "aws:amz:REGION:vedina"``,
botocore); this module is the small Python way, on the Rust signer.

>>> import httpx                                            # doctest: +SKIP
>>> auth = SigV4Auth("AKEXAMPLE", "secret", region="us-east-1")
>>> httpx.get("http://127.0.0.1:8000/api/movies", auth=auth)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Generator
from urllib.parse import urlsplit

from vedina import _native

SERVICE = "vedina"

# Headers a proxy may rewrite on the way; signing them would break verification.
_UNSIGNED = {"connection", "user-agent", "accept-encoding", "content-length", "transfer-encoding", "expect"}


def sign_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    access_key_id: str,
    secret: str,
    region: str,
    now: int | None = None,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus Host, x-amz-date, x-amz-content-sha256, Authorization."""
    parts = urlsplit(url)
    signed = {"host": parts.netloc, **{k.lower(): v for k, v in (headers or {}).items() if k.lower() not in _UNSIGNED}}
    extra = _native.sign_sigv4(
        method.upper(), parts.path or "/", parts.query, list(signed.items()), body,
        access_key_id=access_key_id, secret=secret, region=region, service=SERVICE, now=now,
    )
    return {**(headers or {}), "host": parts.netloc, **dict(extra)}


try:
    import httpx
except ImportError:  # httpx is optional: sign_request works without it
    httpx = None

if httpx is not None:

    class SigV4Auth(httpx.Auth):
        """httpx authentication that signs every request with an API key."""

        requires_request_body = True

        def __init__(self, access_key_id: str, secret: str, *, region: str) -> None:
            self._access_key_id = access_key_id
            self._secret = secret
            self._region = region

        def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
            extra = {k: v for k, v in request.headers.items() if k.lower() not in _UNSIGNED and k.lower() != "host"}
            signed = sign_request(
                request.method, str(request.url), headers=extra, body=request.content,
                access_key_id=self._access_key_id, secret=self._secret, region=self._region,
            )
            for name, value in signed.items():
                request.headers[name] = value
            yield request
