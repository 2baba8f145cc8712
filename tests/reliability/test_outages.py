"""Fault drills on the real services (issue 8): a backing service stops for a few
seconds while the server keeps answering.

- Redis (a private instance, so stopping it disturbs no other test): bearer
  requests whose state is not cached get 503 with every standard header, never
  a bare 500; /ready names Redis; anonymous catalog reads go on from the
  database; when Redis is back, everything works without a restart.
- RabbitMQ (``rabbitmqctl stop_app``): registrations go on (201), /ready says
  the broker is down, and every verification email is sent once it is back:
  the outbox counts no attempt against a broker outage.
- The database (cut off by a TCP proxy in between): 503 with Retry-After for
  what needs it, cached reads go on, and it recovers when the network does.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, free_port, require_profile, wait_for
from tests.identity.conftest import PASSWORD, bearer

pytestmark = pytest.mark.slow

STANDARD = ("x-request-id", "x-content-type-options", "content-security-policy", "cache-control")


def assert_outage(response: httpx.Response, service: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "service_unavailable" and error["details"]["service"] == service
    assert response.headers["retry-after"].isdigit()
    for header in STANDARD:
        assert response.headers.get(header), header


class PrivateRedis:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir

    def start(self) -> None:
        subprocess.run(["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly",
                        "no", "--daemonize", "yes", "--dir", str(self.data_dir),
                        "--logfile", str(self.data_dir / "redis.log")], check=True, timeout=10)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode == 0,
                 10, "redis")

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=10)


@pytest.fixture
def redis_server(tmp_path):
    require_profile("real")
    redis = PrivateRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


def test_a_redis_outage_is_503_with_standard_headers_and_recovers_by_itself(live_data, redis_server, tmp_path):
    env = {**live_data("real"), "DATA_DIR": str(tmp_path / "host"), "MEDIA_ROOT": str(Path(live_data("real")["DATA_DIR"], "media")),
           "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0", "RATE_LIMIT_ENABLED": "false",
           "RATE_LIMIT_SHM_PATH": str(tmp_path / "rl.shm"), "INVALIDATION_SHM_PATH": str(tmp_path / "gen.shm")}
    (tmp_path / "host").mkdir()
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        with httpx.Client(base_url=live.base_url, timeout=15) as http:
            email = f"drill-{uuid.uuid4().hex[:10]}@example.org"
            assert http.post("/api/auth/register", json={"email": email, "password": PASSWORD,
                                                         "display_name": "Drill"}).status_code == 202
            token = http.post("/api/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            assert http.get("/api/users/me", headers=bearer(token)).status_code == 200

            redis_server.stop()
            # Within the lease the caches stop being trusted; then the token's state must be read from Redis.
            assert_outage(wait_for(lambda: (r := http.get("/api/users/me", headers=bearer(token))).status_code == 503
                                   and r, 10, "503 for a bearer request"), "cache")
            for _ in range(5):
                answer = http.get("/api/users/me", headers=bearer(token))
                assert answer.status_code == 503 and answer.headers.get("x-request-id")
            ready = http.get("/ready")
            assert ready.status_code == 503 and ready.json()["error"]["details"]["redis"] == "failed"
            assert http.get("/api/movies/1").status_code == 200  # the catalog goes on from the database
            assert http.get("/health").status_code == 200

            redis_server.start()  # empty: the state is read again from the database
            wait_for(lambda: http.get("/api/users/me", headers=bearer(token)).status_code == 200, 15, "recovery")
            assert http.get("/ready").status_code == 200
            assert [http.get("/api/users/me", headers=bearer(token)).status_code for _ in range(10)] == [200] * 10
    finally:
        live.stop()


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def test_a_broker_outage_loses_no_email(live_data, tmp_path):
    require_profile("real")
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed (scripts/services.sh installs RabbitMQ)")
    env = {**live_data("real"), "RATE_LIMIT_ENABLED": "false"}
    live = LiveServer(server="granian", env=env, workers=2)
    mail = Path(env["DATA_DIR"], "mail")
    addresses = [f"outage-{uuid.uuid4().hex[:10]}@example.org" for _ in range(6)]
    try:
        with httpx.Client(base_url=live.base_url, timeout=30) as http:
            rabbitmqctl("stop_app")
            try:
                for address in addresses:
                    answer = http.post("/api/auth/register",
                                       json={"email": address, "password": PASSWORD, "display_name": "Outage"})
                    assert answer.status_code == 202, answer.text
                wait_for(lambda: http.get("/ready").status_code == 503, 15, "/ready reporting the broker")
                assert http.get("/ready").json()["error"]["details"]["broker"] == "failed"
                time.sleep(6)  # longer than five relay passes: the old relay gave rows up after five
            finally:
                rabbitmqctl("start_app")
                rabbitmqctl("await_startup")
            wait_for(lambda: http.get("/ready").status_code == 200, 60, "/ready after the broker came back")

        def delivered() -> bool:
            sent = " ".join(p.read_text(errors="replace") for p in mail.glob("*.eml")) if mail.exists() else ""
            return all(address in sent for address in addresses)

        wait_for(delivered, 60, "every verification email")
        copies = [sum(address in p.read_text(errors="replace") for p in mail.glob("*.eml")) for address in addresses]
        assert copies == [1] * len(addresses)
    finally:
        live.stop()


def test_a_database_outage_is_503_and_recovers_by_itself(live_data, tmp_path):
    """The database is cut off (a proxy in between closes every connection and stops listening):
    what needs it is 503 with Retry-After, what is cached goes on, and it all recovers."""
    require_profile("real")
    from tests.reliability.tcp_proxy import TcpProxy

    with TcpProxy(target_port=int(live_data("real").get("DB_PORT", "3306"))) as proxy:
        env = {**live_data("real"), "DATA_DIR": str(tmp_path), "DB_PORT": str(proxy.port), "RATE_LIMIT_ENABLED": "false",
               "MEDIA_ROOT": str(Path(live_data("real")["DATA_DIR"], "media")),
               "RATE_LIMIT_SHM_PATH": str(tmp_path / "rl.shm"), "INVALIDATION_SHM_PATH": str(tmp_path / "gen.shm")}
        live = LiveServer(server="granian", env=env, workers=2)
        try:
            with httpx.Client(base_url=live.base_url, timeout=30) as http:
                assert http.get("/api/movies/1").status_code == 200  # cached from now on
                proxy.cut()
                unknown = f"/api/movies/{900_000 + uuid.uuid4().int % 100_000}"
                assert_outage(http.get(unknown), "database")
                assert_outage(http.post("/api/auth/login", json={"email": "x@example.org", "password": "y" * 12}),
                              "database")
                ready = http.get("/ready")
                assert ready.status_code == 503 and ready.json()["error"]["details"]["database"] == "failed"
                assert [http.get("/api/movies/1").status_code for _ in range(5)] == [200] * 5  # from memory
                proxy.restore()
                wait_for(lambda: http.get(unknown).status_code == 404, 20, "the database again")
                assert http.get("/ready").status_code == 200
        finally:
            live.stop()
