"""SigV4 request verification and webhook signatures (vedina._native)."""

import hashlib
import hmac
import http.server
import shutil
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from vedina._native import (
    MalformedSignature,
    SignatureError,
    SignatureExpired,
    SignatureMismatch,
    parse_sigv4_authorization,
    sign_sigv4,
    sign_webhook,
    verify_sigv4,
    verify_webhook,
)

AKID = "AKVEDINATEST"
SECRET = "s3cr3t/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"


def botocore_signed(method="POST", url="http://api.vedina.test/api/v1/movies/a%20b/%C3%A9t%C3%A9?b=2&a=x%2Fy&a=1",
                    body=b'{"title": "Vertigo"}', headers=None):
    """A request signed by botocore, as the server receives it."""
    request = AWSRequest(method=method, url=url, data=body,
                         headers=headers or {"Content-Type": "application/json"})
    SigV4Auth(Credentials(AKID, SECRET), "vedina", REGION).add_auth(request)
    parts = urlsplit(request.url)
    received = [("Host", parts.netloc)] + list(request.headers.items())
    return dict(method=method, path=parts.path, query=parts.query, headers=received, body=body)


def verify(req, secret=SECRET, **kwargs):
    kwargs.setdefault("region", REGION)
    kwargs.setdefault("now", int(time.time()))
    return verify_sigv4(req["method"], req["path"], req["query"], req["headers"], req["body"], secret, **kwargs)


def replace_header(headers, name, value):
    return [(n, value if n.lower() == name else v) for n, v in headers]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_botocore_signed_requests_verify(method):
    req = botocore_signed(method=method, body=b"" if method == "GET" else b"payload")
    assert verify(req) is None


def test_botocore_without_query_and_root_path():
    assert verify(botocore_signed(url="http://api.vedina.test/", body=b"")) is None


def test_authorization_is_parsed_for_key_lookup_and_replay_cache():
    req = botocore_signed()
    header = dict(req["headers"])["Authorization"]
    auth = parse_sigv4_authorization(header)
    assert auth.access_key_id == AKID
    assert (auth.region, auth.service) == (REGION, "vedina")
    assert len(auth.date) == 8 and auth.date.isdigit()
    assert "host" in auth.signed_headers and "x-amz-date" in auth.signed_headers
    assert len(auth.signature) == 64 and auth.signature in header


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: {**r, "method": "PUT"},
        lambda r: {**r, "path": r["path"] + "x"},
        lambda r: {**r, "path": "/api/v1/movies/a b/été"},  # decoded path is a different path
        lambda r: {**r, "query": "b=2&a=x%2Fy&a=2"},
        lambda r: {**r, "query": ""},
        lambda r: {**r, "body": b'{"title": "Psycho"}'},
        lambda r: {**r, "headers": replace_header(r["headers"], "content-type", "text/plain")},
        lambda r: {**r, "headers": replace_header(r["headers"], "host", "evil.test")},
    ],
)
def test_tampered_requests_are_refused(tamper):
    with pytest.raises(SignatureMismatch):
        verify(tamper(botocore_signed()))


def test_query_order_does_not_matter():
    req = botocore_signed()
    assert verify({**req, "query": "a=1&b=2&a=x%2Fy"}) is None


def test_wrong_secret_region_or_service_mismatch():
    req = botocore_signed()
    with pytest.raises(SignatureMismatch):
        verify(req, secret="nope")
    with pytest.raises(SignatureMismatch):
        verify(req, region="us-east-1")
    with pytest.raises(SignatureMismatch):
        verify(req, service="s3")


def test_stale_and_future_dates_expire():
    req = botocore_signed()
    now = int(time.time())
    with pytest.raises(SignatureExpired):
        verify(req, now=now + 400)
    with pytest.raises(SignatureExpired):
        verify(req, now=now - 400)
    assert verify(req, now=now + 400, max_skew=600) is None


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=AK/2024/eu-west-1/vedina/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/vedina/aws4_request, SignedHeaders=host;x-amz-date",
        "AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/vedina/aws4_request, SignedHeaders=host;x-amz-date, Signature=xyz",
    ],
)
def test_malformed_authorization(authorization):
    req = botocore_signed()
    with pytest.raises(MalformedSignature):
        verify({**req, "headers": replace_header(req["headers"], "authorization", authorization)})
    with pytest.raises(MalformedSignature):
        parse_sigv4_authorization(authorization)


def test_missing_authorization_or_date_is_malformed():
    req = botocore_signed()
    with pytest.raises(MalformedSignature):
        verify({**req, "headers": [(n, v) for n, v in req["headers"] if n.lower() != "authorization"]})
    with pytest.raises(MalformedSignature):
        verify({**req, "headers": [(n, v) for n, v in req["headers"] if n.lower() != "x-amz-date"]})


def test_host_and_date_must_be_signed():
    now = int(time.time())
    headers = [("Host", "api.vedina.test")]
    added = dict(sign_sigv4("GET", "/", "", headers, b"", access_key_id=AKID, secret=SECRET, region=REGION, now=now))
    auth = added["Authorization"].replace("SignedHeaders=host;x-amz-content-sha256;x-amz-date",
                                          "SignedHeaders=x-amz-content-sha256;x-amz-date")
    all_headers = headers + [(n, v) for n, v in added.items() if n != "Authorization"] + [("Authorization", auth)]
    with pytest.raises(MalformedSignature, match="host"):
        verify_sigv4("GET", "/", "", all_headers, b"", SECRET, region=REGION, now=now)


def test_own_signer_round_trip_and_unsigned_payload_refused():
    now = 1_700_000_000
    headers = [("Host", "api.vedina.test"), ("Content-Type", "application/json")]
    added = sign_sigv4("PATCH", "/api/v1/movies/7", "x=1", headers, b"{}", access_key_id=AKID, secret=SECRET,
                       region=REGION, now=now)
    names = [n for n, _ in added]
    assert names == ["x-amz-date", "x-amz-content-sha256", "Authorization"]
    all_headers = headers + added
    assert verify_sigv4("PATCH", "/api/v1/movies/7", "x=1", all_headers, b"{}", SECRET, region=REGION, now=now) is None
    with pytest.raises(SignatureMismatch):
        verify_sigv4("PATCH", "/api/v1/movies/7", "x=1", all_headers, b"[]", SECRET, region=REGION, now=now)
    unsigned = replace_header(all_headers, "x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    with pytest.raises(MalformedSignature, match="unsigned"):
        verify_sigv4("PATCH", "/api/v1/movies/7", "x=1", unsigned, b"{}", SECRET, region=REGION, now=now)


def test_exception_hierarchy():
    for exc in (SignatureMismatch, SignatureExpired, MalformedSignature):
        assert issubclass(exc, SignatureError)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_aws_sigv4_verifies():
    """`curl --aws-sigv4 "aws:amz:REGION:vedina"` signs requests we accept."""
    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            path, _, query = self.path.partition("?")
            seen.update(method=self.command, path=path, query=query,
                        headers=list(self.headers.items()), body=self.rfile.read(length))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/v1/movies?a=1&b=two"
        subprocess.run(["curl", "-sS", "--max-time", "10", "--aws-sigv4", f"aws:amz:{REGION}:vedina",
                        "--user", f"{AKID}:{SECRET}", "-H", "Content-Type: application/json",
                        "--data-binary", '{"x": 1}', url], check=True, capture_output=True)
        thread.join(10)
    finally:
        server.server_close()
    assert verify(seen) is None
    with pytest.raises(SignatureMismatch):
        verify({**seen, "body": b'{"x": 2}'})


# -- webhooks -----------------------------------------------------------------

def test_webhook_matches_python_hmac():
    header = sign_webhook(b"whsec", 1_700_000_000, b'{"id": 1}')
    expected = hmac.new(b"whsec", b'1700000000.{"id": 1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_webhook_round_trip_rotation_and_tolerance():
    body = b'{"event": "movie.published"}'
    old = sign_webhook(b"old", 1000, body)
    new = sign_webhook(b"new", 1000, body)
    both = old + "," + new.split(",", 1)[1]
    assert verify_webhook(old, [b"new", b"old"], body, now=1000) is None
    assert verify_webhook(both, [b"new"], body, now=1300) is None
    assert verify_webhook(both, [b"old"], body, now=700) is None
    with pytest.raises(SignatureMismatch):
        verify_webhook(both, [b"other"], body, now=1000)
    with pytest.raises(SignatureMismatch):
        verify_webhook(old, [b"old"], body + b" ", now=1000)
    with pytest.raises(SignatureExpired):
        verify_webhook(old, [b"old"], body, now=1301)
    assert verify_webhook(old, [b"old"], body, now=1301, tolerance=301) is None


@pytest.mark.parametrize("header", ["", "v1=" + "0" * 64, "t=1000", "t=x,v1=" + "0" * 64, "t=1000,v1=zz"])
def test_webhook_malformed(header):
    with pytest.raises(MalformedSignature):
        verify_webhook(header, [b"k"], b"", now=1000)


def test_webhook_needs_a_secret():
    with pytest.raises(ValueError):
        verify_webhook(sign_webhook(b"k", 1, b""), [], b"", now=1)


def test_non_ascii_amz_date_is_a_signature_error_not_a_panic():
    from vedina._native import SignatureError, verify_sigv4

    auth = ("AWS4-HMAC-SHA256 Credential=AK/20240101/eu-west-1/vedina/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    headers = [("host", "api.test"), ("x-amz-date", "20150\u00e90T123600Z"), ("authorization", auth)]
    with pytest.raises(SignatureError):
        verify_sigv4("GET", "/", "", headers, b"", "secret", region="eu-west-1")
