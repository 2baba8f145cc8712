"""API keys: SigV4-signed requests (our signer and botocore's), tampering, replay, rotation,
revocation, encrypted storage, batched last-used times."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
import sqlalchemy as sa
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.identity.conftest import bearer
from vedina._native import sign_sigv4
from vedina.storage.schema import api_keys


@pytest.fixture
def admin(server):
    with server.client() as http:
        address = server.register(http)
        server.set_role(address, "admin")
        return bearer(server.token(http, address))


def _new_key(server, admin, scopes=("catalog:read",)) -> dict:
    with server.client() as http:
        response = http.post("/api/api-keys", json={"name": "encoder farm", "scopes": list(scopes)}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def _signed(server, key, *, method="GET", path="/api/auth/whoami", query="", body=b"", secret=None):
    host = server.base_url.removeprefix("http://")
    headers = [("Host", host)] + ([("Content-Type", "application/json")] if body else [])
    extra = sign_sigv4(method, path, query, headers, body, access_key_id=key["access_key_id"],
                       secret=secret or key["secret"], region=server.settings.sigv4_region)
    return dict(headers + extra)


def test_signed_request_is_accepted_with_the_key_as_principal(server, admin):
    key = _new_key(server, admin, scopes=["catalog:read", "media:ingest"])
    with server.client() as http:
        response = http.get("/api/auth/whoami", headers=_signed(server, key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "api_key" and body["sub"] == key["access_key_id"] and body["via"] == "sigv4"
    assert body["permissions"] == ["catalog:read", "media:ingest"]


def _botocore_get(server, key, url: str):
    request = AWSRequest(method="GET", url=url, headers={})
    SigV4Auth(Credentials(key["access_key_id"], key["secret"]), "vedina", server.settings.sigv4_region).add_auth(request)
    with server.client() as http:
        return http.get(url, headers=dict(request.headers.items()))


def test_botocore_signed_request_is_accepted(server, admin):
    key = _new_key(server, admin)
    response = _botocore_get(server, key, server.base_url + "/api/auth/whoami?b=2&a=1")
    assert response.status_code == 200, response.text
    assert response.json()["sub"] == key["access_key_id"]


def test_signed_post_with_body_and_query(server, admin):
    key = _new_key(server, admin)
    body = b'{"name": "x"}'
    headers = _signed(server, key, method="POST", path="/api/auth/whoami", query="x=1", body=body)
    with server.client() as http:
        # whoami is GET only; a correct signature on a POST gets past authentication to 405.
        response = http.post("/api/auth/whoami?x=1", content=body, headers=headers)
    assert response.status_code == 405, response.text


def test_tampered_requests_are_refused(server, admin):
    key = _new_key(server, admin)
    with server.client() as http:
        headers = _signed(server, key)
        assert http.get("/api/auth/whoami?extra=1", headers=headers).status_code == 401  # query changed
        headers = _signed(server, key, method="POST", path="/api/auth/whoami", body=b'{"a":1}')
        assert http.post("/api/auth/whoami", content=b'{"a":2}', headers=headers).status_code == 401  # body changed
        forged = _signed(server, key, secret="not-the-secret-" + "x" * 24)
        answer = http.get("/api/auth/whoami", headers=forged)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
        unknown = _signed(server, {**key, "access_key_id": "VDKAAAAAAAAAAAAAAAA"})
        assert http.get("/api/auth/whoami", headers=unknown).status_code == 401


def test_replayed_signature_of_an_unsafe_request_is_refused(server, admin):
    key = _new_key(server, admin)
    headers = _signed(server, key, method="POST", body=b'{"a":1}')
    with server.client() as http:
        first = http.post("/api/auth/whoami", content=b'{"a":1}', headers=headers)
    assert first.status_code == 405  # authenticated, then: no POST here
    with server.client() as http:  # another connection, maybe another worker: same answer
        replay = http.post("/api/auth/whoami", content=b'{"a":1}', headers=headers)
    assert replay.status_code == 401 and "Replayed" in replay.json()["error"]["message"]


def test_identical_signed_reads_within_a_second_are_all_answered(server, admin):
    """x-amz-date has one-second resolution: three equal GETs are legitimate (issue 8, item 4)."""
    key = _new_key(server, admin)
    headers = _signed(server, key)
    with server.client() as http:
        assert [http.get("/api/auth/whoami", headers=headers).status_code for _ in range(3)] == [200, 200, 200]


def test_a_signed_nonce_makes_reads_single_use(server, admin):
    key = _new_key(server, admin)
    host = server.base_url.removeprefix("http://")
    base = [("Host", host), ("X-Vedina-Nonce", uuid.uuid4().hex)]
    headers = dict(base + sign_sigv4("GET", "/api/auth/whoami", "", base, b"", access_key_id=key["access_key_id"],
                                     secret=key["secret"], region=server.settings.sigv4_region))
    with server.client() as http:
        assert http.get("/api/auth/whoami", headers=headers).status_code == 200
        replay = http.get("/api/auth/whoami", headers=headers)
    assert replay.status_code == 401 and "Replayed" in replay.json()["error"]["message"]


def test_secret_is_shown_once_and_stored_encrypted(server, admin):
    key = _new_key(server, admin)
    row = server.query(sa.select(api_keys).where(api_keys.c.access_key_id == key["access_key_id"]))[0]
    assert key["secret"].encode() not in row["secret_ciphertext"]
    assert len(row["secret_ciphertext"]) == 12 + len(key["secret"]) + 16  # nonce + ciphertext + tag
    with server.client() as http:
        listed = http.get("/api/api-keys", params={"limit": 100}, headers=admin).json()["items"]
        again = http.get(f"/api/api-keys/{key['id']}", headers=admin).json()
    assert "secret" not in again and all("secret" not in item for item in listed)


def test_rotation_replaces_the_secret_and_revocation_stops_the_key(server, admin):
    key = _new_key(server, admin)
    with server.client() as http:
        rotated = http.post(f"/api/api-keys/{key['id']}/rotate", headers=admin).json()
        assert rotated["access_key_id"] == key["access_key_id"] and rotated["secret"] != key["secret"]
        assert http.get("/api/auth/whoami", headers=_signed(server, key)).status_code == 401
        assert http.get("/api/auth/whoami", headers=_signed(server, rotated)).status_code == 200
        assert http.delete(f"/api/api-keys/{key['id']}", headers=admin).json()["revoked_at"] is not None
        assert http.get("/api/auth/whoami", headers=_signed(server, rotated)).status_code == 401
        assert http.post(f"/api/api-keys/{key['id']}/rotate", headers=admin).status_code == 404


def test_unknown_scope_is_refused(server, admin):
    with server.client() as http:
        response = http.post("/api/api-keys", json={"name": "x", "scopes": ["users:manage"]}, headers=admin)
    assert response.status_code == 422 and response.json()["error"]["details"]["field"] == "scopes"


def test_last_used_is_written_in_batches(server, admin):
    """The server flushes every 10 s: right after use nothing is written, later one write is."""
    key = _new_key(server, admin)
    with server.client() as http:
        for n in range(3):
            assert http.get(f"/api/auth/whoami?n={n}", headers=_signed(server, key, query=f"n={n}")).status_code == 200
    query = sa.select(api_keys.c.last_used_at).where(api_keys.c.id == key["id"])
    deadline = time.monotonic() + 30
    while server.query(query)[0]["last_used_at"] is None:
        assert time.monotonic() < deadline, "last_used_at never written"
        time.sleep(0.5)


async def test_usage_recorder_writes_one_batch(resources):
    from vedina.services.api_keys import UsageRecorder
    from vedina.storage.api_keys import ApiKeyRepository

    repository = ApiKeyRepository(resources.engine)
    key_id = await repository.insert(access_key_id="VDKTEST", name="t", secret_ciphertext=b"x", scopes=[], owner_id=None)
    writes = []
    original = repository.record_last_used

    async def counting(used):
        writes.append(dict(used))
        await original(used)

    repository.record_last_used = counting
    recorder = UsageRecorder(repository, interval=3600)
    for _ in range(100):
        recorder.record(key_id)
    assert (await repository.get(key_id))["last_used_at"] is None
    assert await recorder.flush() == 1
    assert len(writes) == 1 and list(writes[0]) == [key_id]
    assert (await repository.get(key_id))["last_used_at"] is not None


@pytest.mark.parametrize("query", ["q=a%20b", "q=a%2Bb", "q=%C3%A9t%C3%A9&z=1", "q=a%2Fb%3Dc"])
def test_signed_query_values_with_spaces_plus_and_unicode_verify(server, admin, query):
    key = _new_key(server, admin)
    with server.client() as http:
        response = http.get(f"/api/auth/whoami?{query}", headers=_signed(server, key, query=query))
    assert response.status_code == 200, response.text


def test_botocore_signed_query_with_a_space_verifies(server, admin):
    key = _new_key(server, admin)
    response = _botocore_get(server, key, server.base_url + "/api/auth/whoami?title=the%20color%20bars")
    assert response.status_code == 200, response.text


def test_botocore_signs_a_literal_plus_and_an_encoded_path_as_sent(server, admin):
    """Issue 8, item 5: botocore signs the query pairs as written and encodes the path twice."""
    key = _new_key(server, admin)
    plus = _botocore_get(server, key, server.base_url + "/api/auth/whoami?x=a+b&y=%2B1")
    assert plus.status_code == 200, plus.text
    spaced = _botocore_get(server, key, server.base_url + "/api/auth/who%20am%20i")
    assert spaced.status_code == 404, spaced.text  # authenticated (not 401), then: no such route


def test_curl_signs_a_literal_plus(server, admin):
    key = _new_key(server, admin)
    answer = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--aws-sigv4",
         f"aws:amz:{server.settings.sigv4_region}:vedina", "--user", f"{key['access_key_id']}:{key['secret']}",
         f"{server.base_url}/api/auth/whoami?x=a+b"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert answer.stdout == "200"
