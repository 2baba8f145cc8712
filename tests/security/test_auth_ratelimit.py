"""Refused credentials are still rate limited: guessing tokens or signatures is throttled."""

from __future__ import annotations

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
