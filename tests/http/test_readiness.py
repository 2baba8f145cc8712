"""/ready names the backing service that is down; /health stays up (it does no I/O)."""

from __future__ import annotations

import httpx

from tests.conftest import LiveServer, run_cli


def test_ready_is_503_naming_an_unreachable_redis(tmp_path):
    env = {"DATA_DIR": str(tmp_path), "LOG_LEVEL": "warning", "REDIS_URL": "redis://127.0.0.1:1/0"}
    run_cli(env, "migrate")
    live = LiveServer(server="granian", env=env, workers=1)
    try:
        assert httpx.get(f"{live.base_url}/health").status_code == 200
        response = httpx.get(f"{live.base_url}/ready", timeout=10)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "service_unavailable" and error["status"] == "error"
        assert "redis" in error["message"]
        assert error["details"]["database"] == "ok"
        assert error["details"]["redis"] != "ok"
    finally:
        live.stop()
