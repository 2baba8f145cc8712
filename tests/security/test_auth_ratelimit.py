"""Refused credentials are still rate limited: guessing tokens or signatures is throttled."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import LiveServer, profile_env, run_cli


def test_forged_bearer_tokens_get_401_then_429(tmp_path):
    env = profile_env("embedded", tmp_path, database="", redis_db=0, amqp_prefix="")
    env.update(RATE_LIMIT_API="1/60s burst 3")
    run_cli(env, "migrate")
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        forged = {"authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"}
        answers = [httpx.get(f"{live.base_url}/api/movies", headers=forged) for _ in range(5)]
        assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
        assert answers[0].headers["www-authenticate"] == 'Bearer realm="vedina", error="invalid_token"'
        assert answers[0].json()["error"]["code"] == "unauthorized"
        assert answers[3].json()["error"]["code"] == "rate_limited"
        assert int(answers[3].headers["retry-after"]) >= 1
    finally:
        live.stop()


def test_serve_replaces_stale_tables_at_the_default_paths(tmp_path):
    from vedina._native import GenerationTable, HostRateLimiter
    from vedina.config import load_settings
    from vedina.http.serve import prepare_shared_tables
    from vedina.security.ratelimit.limiter import default_shm_path
    from vedina.storage.invalidation import default_table_path

    settings = load_settings({"DATA_DIR": str(tmp_path), "PORT": "18555"})
    paths = [default_shm_path(settings), default_table_path(settings)]
    for path in paths:
        path.write_bytes(b"VEDGCRA1" + bytes(100))  # an old or foreign table
        path.chmod(0o600)
    try:
        prepare_shared_tables(settings)
        assert HostRateLimiter(str(paths[0])).check("k", limit=1, period=1.0, burst=1).allowed
        table = GenerationTable(str(paths[1]))
        before = table.stamp("k")
        table.bump("k")
        assert table.stamp("k") != before
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def test_a_known_device_gets_in_while_the_account_is_flooded(live_data):
    """Issue 8, item 7: wrong passwords from anywhere spend the account's budget, but a
    device that logged in before (a signed device token) still gets in with the right one."""
    from tests.identity.conftest import PASSWORD

    env = {**live_data("embedded"), "RATE_LIMIT_LOGIN_ACCOUNT": "1/1h burst 3"}
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        with httpx.Client(base_url=live.base_url, timeout=15) as http:
            victim, other = f"victim-{uuid.uuid4().hex[:8]}@example.org", f"other-{uuid.uuid4().hex[:8]}@example.org"
            for address in (victim, other):
                assert http.post("/api/auth/register", json={"email": address, "password": PASSWORD,
                                                             "display_name": "V"}).status_code == 202
            first = http.post("/api/auth/login", json={"email": victim, "password": PASSWORD})
            assert first.status_code == 200
            device = first.json()["device_token"]
            assert "vedina_device" in first.headers["set-cookie"] and "HttpOnly" in first.headers["set-cookie"]
            other_device = http.post("/api/auth/login", json={"email": other, "password": PASSWORD}).json()["device_token"]
        # The attacker: no cookies, wrong passwords until the account's budget is spent.
        with httpx.Client(base_url=live.base_url, timeout=15) as attacker:
            answers = [attacker.post("/api/auth/login", json={"email": victim, "password": f"wrong guess {i}"}).status_code
                       for i in range(4)]
            assert answers[-1] == 429
            assert attacker.post("/api/auth/login", json={"email": victim, "password": PASSWORD}).status_code == 429
            for forged in (device[:-2] + "AA", other_device, "x" * 40):
                refused = attacker.post("/api/auth/login", json={"email": victim, "password": PASSWORD, "device_token": forged})
                assert refused.status_code == 429, forged
        # The owner's device: in, by its token in the body (apps) or its cookie (browsers).
        with httpx.Client(base_url=live.base_url, timeout=15) as owner:
            assert owner.post("/api/auth/login", json={"email": victim, "password": PASSWORD,
                                                       "device_token": device}).status_code == 200
            owner.cookies.set("vedina_device", device, path="/api/auth")
            assert owner.post("/api/auth/login", json={"email": victim, "password": PASSWORD}).status_code == 200
    finally:
        live.stop()
