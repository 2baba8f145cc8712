"""End to end on a live 2-worker Granian server, both storage profiles: accounts, sessions, cookies."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import sqlalchemy as sa

from tests.identity.conftest import PASSWORD, bearer
from vedina.storage.schema import sessions, users


def test_signup_login_refresh_reuse_logout_and_refused_afterwards(server):
    with server.client() as http:
        address = server.register(http)
        first = server.login(http, address).json()
        assert http.get("/api/users/me", headers=bearer(first["access_token"])).json()["email"] == address

        second = http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        second = second.json()
        assert second["session_id"] == first["session_id"]
        assert second["refresh_token"] != first["refresh_token"]

        # The first refresh token is used up: presenting it again revokes the family.
        reuse = http.post("/api/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert reuse.status_code == 401
        assert http.post("/api/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
        assert http.get("/api/users/me", headers=bearer(second["access_token"])).status_code == 401

        # A new login works; logging out refuses its access token and its refresh token.
        third = server.login(http, address).json()
        assert http.post("/api/auth/logout", headers=bearer(third["access_token"])).status_code == 204
        assert http.get("/api/users/me", headers=bearer(third["access_token"])).status_code == 401
        assert http.post("/api/auth/refresh", json={"refresh_token": third["refresh_token"]}).status_code == 401


def test_failed_login_does_not_reveal_whether_the_email_exists(server):
    with server.client() as http:
        address = server.register(http)
        wrong_password = server.login(http, address, password="not the password at all")
        unknown_email = server.login(http, "nobody-" + address)
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()


def test_refresh_token_is_stored_hashed(server):
    with server.client() as http:
        pair = server.login(http, server.register(http)).json()
    rows = server.query(sa.select(sessions.c.refresh_token_hash).where(sessions.c.family_id == pair["session_id"]))
    assert rows and all(row["refresh_token_hash"] != pair["refresh_token"] for row in rows)
    assert all(len(row["refresh_token_hash"]) == 64 for row in rows)


def test_password_is_stored_as_argon2id(server):
    with server.client() as http:
        address = server.register(http)
    row = server.query(sa.select(users.c.password_hash).where(users.c.email == address))[0]
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]


def test_token_from_old_workers_is_accepted_by_new_ones(server):
    """Kill both workers that existed at login: their replacements never saw the token."""
    with server.client() as http:
        pair = server.login(http, server.register(http)).json()
    parent = server.live.process.pid
    before = _children(parent)
    assert len(before) == 2
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = _children(parent)
        if len(now) == 2 and not now & before:
            try:
                if httpx.get(server.base_url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    assert not _children(parent) & before
    answers = []
    for _ in range(10):  # fresh connections, spread over both new workers
        with server.client() as http:
            answers.append(http.get("/api/auth/whoami", headers=bearer(pair["access_token"])).status_code)
    assert answers == [200] * 10
    with server.client() as http:
        assert http.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 200


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _cookies(response: httpx.Response) -> dict[str, str]:
    """name -> full Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in response.headers.get_list("set-cookie")}


def _cookie_header(response: httpx.Response, *names: str) -> str:
    lines = _cookies(response)
    return "; ".join(lines[name].split(";", 1)[0] for name in names)


def test_cookie_session_needs_csrf_on_unsafe_methods(server):
    with server.client() as http:
        address = server.register(http)
        login = server.login(http, address, session="cookie")
        assert login.status_code == 200
        body = login.json()
        assert "access_token" not in body and "refresh_token" not in body
        lines = _cookies(login)
        for name in ("vedina_access", "vedina_refresh"):
            assert {"HttpOnly", "Secure", "SameSite=Lax"} <= {part.strip() for part in lines[name].split(";")}
        assert "HttpOnly" not in lines["vedina_csrf"] and "Secure" in lines["vedina_csrf"]
        assert "Path=/api/auth" in lines["vedina_refresh"]

        # Secure cookies are not sent over plain http by httpx's jar: send them as a browser would.
        session = {"cookie": _cookie_header(login, "vedina_access", "vedina_csrf")}
        csrf = body["csrf_token"]
        assert http.get("/api/users/me", headers=session).status_code == 200  # safe method: no token needed
        patch = {"display_name": "Cookie Monster"}
        assert http.patch("/api/users/me", json=patch, headers=session).status_code == 403
        wrong = http.patch("/api/users/me", json=patch, headers={**session, "x-csrf-token": csrf[:-2] + "xx"})
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
        ok = http.patch("/api/users/me", json=patch, headers={**session, "x-csrf-token": csrf})
        assert ok.status_code == 200 and ok.json()["display_name"] == "Cookie Monster"

        # Another session's CSRF token does not fit this one.
        other = server.login(http, address, session="cookie").json()["csrf_token"]
        assert http.patch("/api/users/me", json=patch, headers={**session, "x-csrf-token": other}).status_code == 403

        # Refresh by cookie: CSRF required too, new cookies come back.
        refresh_cookie = {"cookie": _cookie_header(login, "vedina_refresh")}
        assert http.post("/api/auth/refresh", headers=refresh_cookie).status_code == 403
        refreshed = http.post("/api/auth/refresh", headers={**refresh_cookie, "x-csrf-token": csrf})
        assert refreshed.status_code == 200, refreshed.text
        assert "vedina_access" in _cookies(refreshed)

        # Logout by cookie needs the token and clears the cookies.
        new_session = {"cookie": _cookie_header(refreshed, "vedina_access", "vedina_csrf")}
        assert http.post("/api/auth/logout", headers=new_session).status_code == 403
        out = http.post("/api/auth/logout", headers={**new_session, "x-csrf-token": refreshed.json()["csrf_token"]})
        assert out.status_code == 204
        assert "Max-Age=0" in _cookies(out)["vedina_access"]
        assert http.get("/api/users/me", headers=new_session).status_code == 401


def test_bearer_requests_need_no_csrf_token(server):
    with server.client() as http:
        token = server.token(http, server.register(http))
        assert http.patch("/api/users/me", json={"display_name": "App"}, headers=bearer(token)).status_code == 200


def test_suspended_user_is_refused_at_once_and_can_come_back(server):
    with server.client() as http:
        admin_address = server.register(http)
        server.set_role(admin_address, "admin")
        admin = bearer(server.token(http, admin_address))
        victim_address = server.register(http)
        victim = server.login(http, victim_address).json()
        user_id = victim["user_id"]
        assert http.get("/api/users/me", headers=bearer(victim["access_token"])).status_code == 200

        assert http.post(f"/api/users/{user_id}/suspend", headers=admin).json()["status"] == "suspended"
        assert http.get("/api/users/me", headers=bearer(victim["access_token"])).status_code == 403
        assert http.post("/api/auth/refresh", json={"refresh_token": victim["refresh_token"]}).status_code == 401
        assert server.login(http, victim_address).status_code == 403

        assert http.post(f"/api/users/{user_id}/unsuspend", headers=admin).json()["status"] == "active"
        assert http.get("/api/users/me", headers=bearer(victim["access_token"])).status_code == 200


def test_role_change_applies_to_existing_tokens(server):
    with server.client() as http:
        admin_address = server.register(http)
        server.set_role(admin_address, "admin")
        admin = bearer(server.token(http, admin_address))
        user = server.login(http, server.register(http)).json()
        assert http.get("/api/users", headers=bearer(user["access_token"])).status_code == 403
        assert http.put(f"/api/users/{user['user_id']}/role", json={"role": "moderator"}, headers=admin).status_code == 200
        assert http.get("/api/users", headers=bearer(user["access_token"])).status_code == 200


def test_logout_all_ends_every_session(server):
    with server.client() as http:
        address = server.register(http)
        a, b = server.login(http, address).json(), server.login(http, address).json()
        listed = http.get("/api/users/me/sessions", headers=bearer(a["access_token"])).json()["items"]
        assert {s["id"] for s in listed} == {a["session_id"], b["session_id"]}
        assert [s["current"] for s in listed if s["id"] == a["session_id"]] == [True]
        response = http.post("/api/auth/logout-all", headers=bearer(a["access_token"]))
        assert response.status_code == 200 and response.json()["revoked_sessions"] == 2
        for pair in (a, b):
            assert http.get("/api/users/me", headers=bearer(pair["access_token"])).status_code == 401
            assert http.post("/api/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401


def test_revoking_one_session_leaves_the_other(server):
    with server.client() as http:
        address = server.register(http)
        a, b = server.login(http, address).json(), server.login(http, address).json()
        assert http.delete(f"/api/users/me/sessions/{b['session_id']}", headers=bearer(a["access_token"])).status_code == 204
        assert http.get("/api/users/me", headers=bearer(b["access_token"])).status_code == 401
        assert http.get("/api/users/me", headers=bearer(a["access_token"])).status_code == 200
        assert http.delete(f"/api/users/me/sessions/{b['session_id']}", headers=bearer(a["access_token"])).status_code == 404


def test_password_change_keeps_this_session_and_ends_the_others(server):
    with server.client() as http:
        address = server.register(http)
        a, b = server.login(http, address).json(), server.login(http, address).json()
        wrong = {"current_password": "not the password at all", "new_password": "another fine passphrase"}
        assert http.post("/api/auth/password", json=wrong, headers=bearer(a["access_token"])).status_code == 401
        change = {"current_password": PASSWORD, "new_password": "another fine passphrase"}
        assert http.post("/api/auth/password", json=change, headers=bearer(a["access_token"])).status_code == 204
        assert http.get("/api/users/me", headers=bearer(a["access_token"])).status_code == 200
        assert http.get("/api/users/me", headers=bearer(b["access_token"])).status_code == 401
        assert server.login(http, address).status_code == 401
        assert server.login(http, address, password="another fine passphrase").status_code == 200


def test_password_reset_by_email_token_works_once(server):
    with server.client() as http:
        address = server.register(http)
        old = server.login(http, address).json()
        assert http.post("/api/auth/password-reset", json={"email": address}).status_code == 202
        assert http.post("/api/auth/password-reset", json={"email": "nobody-" + address}).status_code == 202
        token = server.mail_token(address, "Reset your password")
        confirm = {"token": token, "new_password": "a brand new passphrase"}
        assert http.post("/api/auth/password-reset/confirm", json=confirm).status_code == 204
        assert http.post("/api/auth/password-reset/confirm", json=confirm).status_code == 422
        assert http.get("/api/users/me", headers=bearer(old["access_token"])).status_code == 401
        assert server.login(http, address, password="a brand new passphrase").status_code == 200
    stored = server.query(sa.text("SELECT token_hash FROM one_time_tokens"))
    assert all(row["token_hash"] != token for row in stored)


def test_email_verification_token_from_the_mail(server):
    with server.client() as http:
        address = server.register(http)
        token = server.mail_token(address, "Confirm your email address")
        verified = http.post("/api/auth/verify-email", json={"token": token})
        assert verified.status_code == 200 and verified.json()["email_verified"] is True
        assert http.post("/api/auth/verify-email", json={"token": token}).status_code == 422


def test_delete_me_with_erase_removes_personal_data_and_sessions(server):
    with server.client() as http:
        address = server.register(http, name="Erase Me")
        pair = server.login(http, address).json()
        assert http.delete("/api/users/me?erase=true", headers=bearer(pair["access_token"])).status_code == 204
        assert http.get("/api/users/me", headers=bearer(pair["access_token"])).status_code == 401
        assert server.login(http, address).status_code == 401
    row = server.query(sa.select(users).where(users.c.id == pair["user_id"]))[0]
    assert row["status"] == "deleted" and row["password_hash"] is None
    assert row["email"] != address and row["display_name"] == ""
