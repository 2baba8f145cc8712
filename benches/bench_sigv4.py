"""SigV4 verification: Rust (vedina._native.verify_sigv4) vs pure Python.

Run: python -m pytest benches/bench_sigv4.py -p no:cacheprovider --benchmark-columns=mean,ops

The Python baseline does the same work as the Rust verifier (parse the
Authorization header, canonical request with RFC 3986 re-encoding of the
query, body hash, string to sign, cached signing key, constant-time compare),
using hashlib/hmac, which are themselves C.
"""

import functools
import hashlib
import hmac
import time
from urllib.parse import quote, unquote_to_bytes, urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from vedina._native import verify_sigv4

SECRET = "s3cr3t/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def request_parts():
    body = b'{"title": "Vertigo", "year": 1958, "tags": ["thriller", "classic"]}' * 4
    req = AWSRequest(method="POST", url="https://api.vedina.test/api/v1/movies/42/ratings?lang=en&page=2",
                     data=body, headers={"Content-Type": "application/json", "User-Agent": "partner/1.0"})
    SigV4Auth(Credentials("AKBENCH", SECRET), "vedina", REGION).add_auth(req)
    parts = urlsplit(req.url)
    headers = [("Host", parts.netloc)] + list(req.headers.items())
    return "POST", parts.path, parts.query, headers, body


@functools.lru_cache(maxsize=1024)
def _signing_key(secret, date, region, service):
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _remove_dot_segments(path):
    out = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    result = ("/" if path.startswith("/") else "") + "/".join(out)
    return result + "/" if path.endswith("/") and out else result


def python_verify(method, path, query, headers, body, secret, *, region, service="vedina", now, max_skew=300):
    values = {}
    for name, value in headers:
        values.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    joined = {k: ",".join(v) for k, v in values.items()}
    algorithm, _, rest = joined["authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    fields = dict(item.strip().split("=", 1) for item in rest.split(","))
    akid, date, cred_region, cred_service, term = fields["Credential"].split("/")
    signed = fields["SignedHeaders"].split(";")
    amz_date = joined["x-amz-date"]
    ts = time.mktime(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")) - time.timezone
    if abs(now - ts) > max_skew or date != amz_date[:8] or (cred_region, cred_service) != (region, service):
        raise ValueError("refused")
    body_hash = hashlib.sha256(body).hexdigest()
    pairs = []
    if query:
        for pair in query.split("&"):
            k, _, v = pair.partition("=")
            pairs.append((quote(unquote_to_bytes(k), safe="-_.~"), quote(unquote_to_bytes(v), safe="-_.~")))
    pairs.sort()
    creq = "\n".join([
        method.upper(),
        quote(_remove_dot_segments(path) or "/", safe="/~"),
        "&".join(f"{k}={v}" for k, v in pairs),
        "".join(f"{h}:{joined[h]}\n" for h in signed),
        ";".join(signed),
        body_hash,
    ])
    scope = f"{date}/{cred_region}/{cred_service}/aws4_request"
    sts = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    expected = hmac.new(_signing_key(secret, date, cred_region, cred_service), sts.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise ValueError("mismatch")


def test_python_baseline_agrees(request_parts):
    now = int(time.time())
    python_verify(*request_parts, SECRET, region=REGION, now=now)
    verify_sigv4(*request_parts, SECRET, region=REGION, now=now)


def test_verify_rust(benchmark, request_parts):
    now = int(time.time())
    benchmark(verify_sigv4, *request_parts, SECRET, region=REGION, now=now)


def test_verify_python(benchmark, request_parts):
    now = int(time.time())
    benchmark(python_verify, *request_parts, SECRET, region=REGION, now=now)
