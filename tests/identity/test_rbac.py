"""RBAC matrix: for every guarded endpoint, no token 401, each role without the permission 403,
each role with it 2xx; and every guarded endpoint states its permission in the OpenAPI document."""

from __future__ import annotations

import uuid

import pytest

from tests.identity.conftest import PASSWORD, bearer
from vedina.security.rbac import ROLE_PERMISSIONS, Role

ROLES = [r.value for r in Role]

# (method, path with {self}/{target}/{session}/{key} placeholders, body, permission, status when allowed)
MATRIX = [
    ("GET", "/api/auth/whoami", None, None, 200),
    ("POST", "/api/auth/logout", None, "account:self", 204),
    ("POST", "/api/auth/logout-all", None, "account:self", 200),
    ("POST", "/api/auth/password", "password", "account:self", 204),
    ("POST", "/api/auth/verify-email/resend", None, "account:self", 202),
    ("GET", "/api/users/me", None, "account:self", 200),
    ("PATCH", "/api/users/me", {"display_name": "Matrix"}, "account:self", 200),
    ("DELETE", "/api/users/me", None, "account:self", 204),
    ("GET", "/api/users/me/sessions", None, "account:self", 200),
    ("DELETE", "/api/users/me/sessions/{session}", None, "account:self", 204),
    ("GET", "/api/users", None, "users:read", 200),
    ("GET", "/api/users/{target}", None, "users:read", 200),
    ("PUT", "/api/users/{target}/role", {"role": "editor"}, "users:manage", 200),
    ("POST", "/api/users/{target}/suspend", None, "users:manage", 200),
    ("POST", "/api/users/{target}/unsuspend", None, "users:manage", 200),
    ("POST", "/api/api-keys", {"name": "matrix", "scopes": ["catalog:read"]}, "api_keys:manage", 201),
    ("GET", "/api/api-keys", None, "api_keys:manage", 200),
    ("GET", "/api/api-keys/{key}", None, "api_keys:manage", 200),
    ("POST", "/api/api-keys/{key}/rotate", None, "api_keys:manage", 200),
    ("DELETE", "/api/api-keys/{key}", None, "api_keys:manage", 200),
    ("GET", "/api/profiles", None, "account:self", 200),
    ("GET", "/api/users/me/continue-watching", None, "account:self", 200),
    ("GET", "/api/users/me/watchlist", None, "account:self", 200),
    ("GET", "/api/playback/sessions", None, "catalog:read", 200),
    ("GET", "/api/subscriptions", None, "account:self", 200),
    ("GET", "/api/payments", None, "account:self", 200),
    ("POST", "/api/blog/posts", {"title": "Matrix"}, "blog:write", 201),  # a taken slug made from a title gets -2
    ("GET", "/api/blog/editor/posts", None, "blog:write", 200),
    ("GET", "/api/comments/reported", None, "comments:moderate", 200),
    ("GET", "/api/comments/moderation-log", None, "moderation:read", 200),
]

# Guarded endpoints whose calls need a resource of their own (a movie, an upload, a profile, a
# playback session): their refusals are tested with it, in their suites (tests/catalog/
# test_editing.py::test_viewers_cannot_write, tests/uploads/test_protocol.py, tests/viewers/,
# tests/playback/); here, that each documents its permission.
GUARDED_ELSEWHERE = [
    *[(method, path, "catalog:write") for method, path in [
        ("POST", "/api/movies"), ("PATCH", "/api/movies/:id"), ("DELETE", "/api/movies/:id"),
        ("POST", "/api/movies/:id/publish"), ("POST", "/api/movies/:id/unpublish"),
        ("DELETE", "/api/movies/:id/media/:asset_id"), ("POST", "/api/genres"), ("PATCH", "/api/genres/:slug"),
        ("DELETE", "/api/genres/:slug"), ("POST", "/api/people"), ("PATCH", "/api/people/:id"),
        ("DELETE", "/api/people/:id")]],
    *[(method, path, "catalog:write or media:ingest") for method, path in [
        ("POST", "/api/uploads"), ("HEAD", "/api/uploads/:id"), ("PATCH", "/api/uploads/:id"),
        ("DELETE", "/api/uploads/:id")]],
    *[(method, path, "account:self") for method, path in [
        ("POST", "/api/profiles"), ("GET", "/api/profiles/:id"), ("PATCH", "/api/profiles/:id"),
        ("DELETE", "/api/profiles/:id"), ("GET", "/api/movies/:id/progress"), ("PUT", "/api/movies/:id/progress"),
        ("POST", "/api/movies/:id/watched"), ("DELETE", "/api/movies/:id/watched"),
        ("PUT", "/api/movies/:id/watchlist"), ("DELETE", "/api/movies/:id/watchlist"),
        ("GET", "/api/movies/:id/rating"), ("PUT", "/api/movies/:id/rating"), ("DELETE", "/api/movies/:id/rating")]],
    *[(method, path, "catalog:read") for method, path in [
        ("GET", "/api/movies/:id/playback"), ("POST", "/api/playback/sessions/:sid/heartbeat"),
        ("DELETE", "/api/playback/sessions/:sid")]],
    # tests/billing/test_api.py (a plan, a subscription, a payment of their own)
    *[(method, path, "account:self") for method, path in [
        ("POST", "/api/subscriptions"), ("GET", "/api/subscriptions/current"),
        ("POST", "/api/subscriptions/current/cancel"), ("POST", "/api/subscriptions/current/resume"),
        ("POST", "/api/subscriptions/current/change"), ("GET", "/api/subscriptions/:id"),
        ("GET", "/api/subscriptions/:id/history"), ("GET", "/api/payments/:id")]],
    *[(method, path, "billing:manage") for method, path in [
        ("POST", "/api/plans"), ("PATCH", "/api/plans/:id"), ("POST", "/api/payments/:id/refunds")]],
    # tests/blog/test_posts.py::test_viewers_and_moderators_cannot_write_and_anonymous_callers_must_sign_in
    *[(method, path, "blog:write") for method, path in [
        ("PATCH", "/api/blog/posts/:id"), ("POST", "/api/blog/posts/:id/publish"),
        ("POST", "/api/blog/posts/:id/schedule"), ("POST", "/api/blog/posts/:id/archive"),
        ("GET", "/api/blog/editor/posts/:id"), ("GET", "/api/blog/editor/posts/:id/revisions")]],
    # tests/comments/test_api.py (a movie and a comment of their own; authors only, moderators only)
    *[(method, path, "account:self") for method, path in [
        ("POST", "/api/movies/:id/comments"), ("PATCH", "/api/comments/:id"), ("DELETE", "/api/comments/:id"),
        ("POST", "/api/comments/:id/reports")]],
    *[(method, path, "comments:moderate") for method, path in [
        ("POST", "/api/comments/:id/hide"), ("POST", "/api/comments/:id/restore"),
        ("POST", "/api/comments/:id/dismiss"), ("POST", "/api/comments/bans"),
        ("DELETE", "/api/comments/bans/:user_id")]],
]


_accounts: dict[str, dict[str, str]] = {}


@pytest.fixture
def actors(server):
    """Per profile, one account per role plus a target user: an admin bootstrapped by CLI
    grants the other roles by API. Returns role -> email, and "target" -> user id."""
    profile = server.settings.storage_profile
    if profile not in _accounts:
        with server.client() as http:
            accounts = {"admin": server.register(http)}
            server.set_role(accounts["admin"], "admin")
            admin = bearer(server.token(http, accounts["admin"]))
            for role in ("viewer", "editor", "moderator"):
                accounts[role] = server.register(http)
                user_id = server.login(http, accounts[role]).json()["user_id"]
                if role != "viewer":
                    assert http.put(f"/api/users/{user_id}/role", json={"role": role}, headers=admin).status_code == 200
            accounts["target"] = str(server.login(http, server.register(http)).json()["user_id"])
        _accounts[profile] = accounts
    return _accounts[profile]


def _caller(server, http, actors, role: str, *, fresh: bool, second_session: bool) -> str:
    """A new session of ``role`` (destructive calls end sessions); ``fresh``: a new account of that role."""
    address = actors[role]
    if fresh:
        address = server.register(http)
        if role != "viewer":
            user_id = server.login(http, address).json()["user_id"]
            admin = bearer(server.token(http, actors["admin"]))
            assert http.put(f"/api/users/{user_id}/role", json={"role": role}, headers=admin).status_code == 200
    token = server.token(http, address)
    if second_session:
        server.login(http, address)
    return token


def _request(server, http, actors, method, template, body, token):
    admin = bearer(server.token(http, actors["admin"])) if "{key}" in template else None
    key = http.post("/api/api-keys", json={"name": "t", "scopes": ["catalog:read"]}, headers=admin).json() if admin else {}
    session = "0" * 32
    if token and "{session}" in template:
        listed = http.get("/api/users/me/sessions", headers=bearer(token)).json().get("items", [])
        session = next((s["id"] for s in listed if not s["current"]), session)
    path = template.format(target=actors["target"], key=key.get("id"), session=session)
    if body == "password":  # same password again: succeeds without locking later cases out
        body = {"current_password": PASSWORD, "new_password": PASSWORD}
    return http.request(method, path, json=body, headers=bearer(token) if token else {})


@pytest.mark.parametrize("method,template,body,permission,ok_status", MATRIX, ids=[f"{m} {p}" for m, p, *_ in MATRIX])
def test_rbac_matrix(server, actors, method, template, body, permission, ok_status):
    with server.client() as http:
        assert _request(server, http, actors, method, template, body, None).status_code == 401
        for role in ROLES:
            fresh = (method, template) == ("DELETE", "/api/users/me")  # the allowed call deletes the caller
            token = _caller(server, http, actors, role, fresh=fresh, second_session="{session}" in template)
            status = _request(server, http, actors, method, template, body, token).status_code
            if permission is None or permission in ROLE_PERMISSIONS[Role(role)]:
                assert status == ok_status, (role, status)
            else:
                assert status == 403, (role, status)


def test_every_guarded_endpoint_is_in_the_matrix_and_documents_its_permission(server):
    with server.client() as http:
        spec = http.get("/openapi.json").json()
    documented = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            description = operation.get("description", "")
            if description.startswith("Requires "):
                robyn_path = path.replace("{", ":").replace("}", "").rstrip("/") or "/"
                documented[(method.upper(), robyn_path)] = description.split("\n", 1)[0]
    expected = {}
    for method, template, _, permission, _ in MATRIX:
        path = template.replace("{target}", ":id").replace("{key}", ":id").replace("{session}", ":session_id")
        expected[(method, path)] = f"Requires permission `{permission}`." if permission else "Requires authentication."
    for method, path, permission in GUARDED_ELSEWHERE:
        expected[(method, path)] = f"Requires permission `{permission}`."
    assert documented == expected


def test_api_key_principal_has_no_account_rights(server, actors):
    from vedina._native import sign_sigv4

    with server.client() as http:
        admin = bearer(server.token(http, actors["admin"]))
        key = http.post("/api/api-keys", json={"name": "svc", "scopes": ["catalog:read"]}, headers=admin).json()
        host = server.base_url.removeprefix("http://")
        signed = sign_sigv4("GET", "/api/users/me", "", [("Host", host)], b"", access_key_id=key["access_key_id"],
                            secret=key["secret"], region=server.settings.sigv4_region)
        response = http.get("/api/users/me", headers=dict(signed))
    assert response.status_code == 403, response.text


def test_head_does_not_bypass_the_guard(server):
    with server.client() as http:
        assert http.head("/api/users/me").status_code == 401
        assert http.head(f"/api/users/{uuid.uuid4().int % 1000 + 1}").status_code == 401
