"""Bad input: each class gets a 4xx in the common error shape naming the field, and nothing is written."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.identity.conftest import PASSWORD, bearer
from vedina.storage.schema import users


def _address() -> str:
    return f"bad-{uuid.uuid4().hex[:10]}@example.org"


def _valid() -> dict:
    return {"email": _address(), "password": PASSWORD, "display_name": "Valid"}


CASES = [
    ("malformed json", b'{"email": "a@example.org", "password": ', 400, "body"),
    ("not an object", b'["a@example.org"]', 422, "body"),
    ("unknown field", {**_valid(), "role": "admin"}, 422, "role"),
    ("wrong type", {**_valid(), "display_name": 42}, 422, "display_name"),
    ("missing field", {"email": _address(), "password": PASSWORD}, 422, "display_name"),
    ("overlong name", {**_valid(), "display_name": "x" * 101}, 422, "display_name"),
    ("overlong password", {**_valid(), "password": "p" * 257}, 422, "password"),
    ("overlong email", {**_valid(), "email": "a" * 250 + "@example.org"}, 422, "email"),
    ("invalid email", {**_valid(), "email": "not-an-email"}, 422, "email"),
    ("email with spaces", {**_valid(), "email": "a b@example.org"}, 422, "email"),
    ("sql in email", {**_valid(), "email": "x'@example.org; DROP TABLE users;--"}, 422, "email"),
    ("control characters", {**_valid(), "display_name": "a\u0000b"}, 422, "display_name"),
    ("short password", {**_valid(), "password": "short"}, 422, "password"),
    ("common password", {**_valid(), "password": "password1234"}, 422, "password"),
    ("null", {**_valid(), "email": None}, 422, "email"),
    ("not utf-8", b'{"email": "\xff@example.org", "password": "x", "display_name": "y"}', 400, "body"),
    # Full-width comma and at sign: NFKC would make this two recipients.
    ("two addresses in one", {**_valid(), "email": "ceo@victim.example\uff0cattacker\uff20evil.example"}, 422, "email"),
    ("accented local part", {**_valid(), "email": "\u00e1dmin@example.org"}, 422, "email"),
]


@pytest.mark.parametrize("name,payload,status,field", CASES, ids=[c[0] for c in CASES])
def test_bad_registration_is_refused_and_nothing_is_written(server, name, payload, status, field):
    before = server.count(users)
    with server.client() as http:
        if isinstance(payload, bytes):
            response = http.post("/api/auth/register", content=payload, headers={"content-type": "application/json"})
        else:
            response = http.post("/api/auth/register", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == "fail" and error["details"]["field"] == field
    assert server.count(users) == before


def test_wrong_content_type_is_415(server):
    with server.client() as http:
        response = http.post("/api/auth/register", content=b"email=a@example.org", headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


def test_oversized_body_is_413_and_nothing_is_written(server):
    before = server.count(users)
    payload = b'{"email": "big@example.org", "password": "' + b"p" * 1_100_000 + b'", "display_name": "x"}'
    with server.client() as http:
        response = http.post("/api/auth/register", content=payload, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert server.count(users) == before


@pytest.mark.parametrize("text", [
    "Robert'); DROP TABLE users;--",
    "<script>alert(1)</script>",
    "\" OR 1=1 --",
    "<img src=x onerror=alert(document.cookie)>",
])
def test_sql_and_html_are_stored_verbatim_and_served_as_json(server, text):
    with server.client() as http:
        address = _address()
        created = http.post("/api/auth/register", json={"email": address, "password": PASSWORD, "display_name": text})
        assert created.status_code == 202
        me = http.get("/api/users/me", headers=bearer(server.token(http, address)))
    assert me.json()["display_name"] == text
    assert me.headers["content-type"] == "application/json" and me.headers["x-content-type-options"] == "nosniff"
    assert server.query(sa.select(users.c.display_name).where(users.c.email == address))[0]["display_name"] == text
    assert server.count(users) > 0  # the table is still there


def test_bad_profile_update_changes_nothing(server):
    with server.client() as http:
        address = server.register(http, name="Before")
        token = bearer(server.token(http, address))
        for body in ({"display_name": "y" * 101}, {"nickname": "x"}, {"display_name": 1}):
            response = http.patch("/api/users/me", json=body, headers=token)
            assert response.status_code == 422
        assert http.get("/api/users/me", headers=token).json()["display_name"] == "Before"


def test_registering_a_taken_address_looks_like_a_new_one_and_tells_the_owner(server):
    """No account enumeration (issue 8, item 7): same status and body; the owner gets an email."""
    with server.client() as http:
        address = server.register(http)
        again = http.post("/api/auth/register", json={"email": "  " + address.upper(), "password": PASSWORD, "display_name": "Dup"})
        # Surrounding spaces fail the pattern (422); the same address in capitals is the same account.
        assert again.status_code == 422
        taken = http.post("/api/auth/register", json={"email": address.upper(), "password": PASSWORD, "display_name": "Dup"})
        fresh_address = _address()
        fresh = http.post("/api/auth/register", json={"email": fresh_address, "password": PASSWORD, "display_name": "New"})
    assert taken.status_code == fresh.status_code == 202
    assert set(taken.json()) == set(fresh.json()) and taken.json()["email"] == address
    assert {k: v for k, v in taken.json().items() if k != "email"} == {k: v for k, v in fresh.json().items() if k != "email"}
    assert server.count_where(users, users.c.email == address) == 1
    assert "already has" in server.mail_body(address, "Someone tried to create an account with your address")


def test_bad_admin_query_parameters_are_422(server):
    with server.client() as http:
        address = server.register(http)
        server.set_role(address, "admin")
        admin = bearer(server.token(http, address))
        for params, field in (({"limit": "0"}, "limit"), ({"role": "root"}, "role"), ({"q": "x" * 101}, "q")):
            response = http.get("/api/users", params=params, headers=admin)
            assert response.status_code == 422 and response.json()["error"]["details"]["field"] == field
        search = http.get("/api/users", params={"q": "%_' OR 1=1"}, headers=admin)
        assert search.status_code == 200 and search.json()["total"] == 0
