"""Redis behind Sentinel (issue 13): REDIS_SENTINELS instead of REDIS_URL, and a failover drill.

A private Redis master (6390), two replicas (6391, 6392) and three sentinels (26390-26392, quorum 2,
down after 1 s) run on loopback for the session. A live server finds the master through the
sentinels; the master is then killed: Sentinel promotes the replica and the server follows
without a restart, a logout done just before the kill is still enforced on every worker, and
the invalidation subscription works again on the new master.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import LiveServer, require_profile, wait_for
from tests.identity.conftest import PASSWORD, bearer
from vedina.config import ConfigError, load_settings
from vedina.storage.invalidation import CHANNEL, PROPAGATION_BOUND
from vedina.storage.keyvalue import RedisStore
from vedina.storage.redis_clients import redis_client, replicas_to_wait

pytestmark = pytest.mark.slow

SERVICE = "vedina"
MASTER, REPLICA, SECOND_REPLICA = 6390, 6391, 6392
SENTINELS = (26390, 26391, 26392)
SENTINELS_ENV = ",".join(f"127.0.0.1:{port}" for port in SENTINELS)
# From the kill to requests that need Redis succeeding again: down-after 1 s, the vote,
# the promotion, then the app's next connection (the subscriber backs off up to 2 s).
FAILOVER_BOUND = 12.0


def node(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


def master_port() -> int | None:
    """The master's port as the first sentinel that answers names it."""
    for port in SENTINELS:
        try:
            answer = node(port).execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        except redis.RedisError:
            continue
        return int(answer[1])
    return None


class SentinelCluster:
    """redis-server processes under ``base``; every one is killed by ``stop`` (its own pids only)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.processes: dict[int, subprocess.Popen] = {}

    def _start(self, port: int, *args: str) -> None:
        directory = self.base / str(port)
        directory.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            ["redis-server", *args], cwd=directory, start_new_session=True,
            stdout=open(directory / "stdout.log", "wb"), stderr=subprocess.STDOUT,
        )

    def start(self) -> None:
        for port in (MASTER, REPLICA, SECOND_REPLICA, *SENTINELS):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
                raise RuntimeError(f"port {port} is taken: a Redis from an earlier run? (stop it first)")
        common = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
        self._start(MASTER, "--port", str(MASTER), *common, "--dir", str(self.base / str(MASTER)))
        for replica, priority in ((REPLICA, 100), (SECOND_REPLICA, 200)):  # the lower is promoted first
            self._start(replica, "--port", str(replica), *common, "--dir", str(self.base / str(replica)),
                        "--replicaof", "127.0.0.1", str(MASTER), "--replica-priority", str(priority))
        wait_for(lambda: role_of(REPLICA) == role_of(SECOND_REPLICA) == ("slave", "up"), 15,
                 "the replicas' links to the master")
        for port in SENTINELS:
            directory = self.base / str(port)
            directory.mkdir(exist_ok=True)
            conf = directory / "sentinel.conf"  # Sentinel rewrites its file: one each, writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {MASTER} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 2000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self._start(port, str(conf), "--sentinel")

        def sentinels_ready() -> bool:
            try:
                states = [node(port).sentinel_master(SERVICE) for port in SENTINELS]
            except redis.RedisError:
                return False
            return all(s["num-other-sentinels"] == 2 and s["num-slaves"] == 2 for s in states)

        wait_for(sentinels_ready, 20, "three sentinels that know each other and the replica")

    def kill(self, port: int) -> None:
        process = self.processes[port]
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    require_profile("real")
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinel"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def server(cluster, live_data, tmp_path_factory):
    base = live_data("real")
    host = tmp_path_factory.mktemp("sentinel-host")
    env = {**base, "DATA_DIR": str(host), "MEDIA_ROOT": str(Path(base["DATA_DIR"], "media")),
           "REDIS_URL": "", "REDIS_SENTINELS": SENTINELS_ENV, "REDIS_SENTINEL_SERVICE": SERVICE,
           "RATE_LIMIT_SHM_PATH": str(host / "rl.shm"), "INVALIDATION_SHM_PATH": str(host / "gen.shm")}
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        yield live
    finally:
        live.stop()


def log_in(http: httpx.Client) -> dict:
    email = f"sentinel-{uuid.uuid4().hex[:10]}@example.org"
    registered = http.post("/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": "S"})
    assert registered.status_code == 202, registered.text
    login = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return login.json()


def claims(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def statuses(http: httpx.Client, token: str, n: int = 20) -> list[int]:
    return [http.get("/api/users/me", headers=bearer(token)).status_code for _ in range(n)]


# -- settings ---------------------------------------------------------------------


@pytest.mark.parametrize(("env", "named"), [
    ({"REDIS_SENTINELS": "localhost"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "localhost:0"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "localhost:99999"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": " , "}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "h:26379", "REDIS_SENTINEL_SERVICE": "my master"}, "REDIS_SENTINEL_SERVICE"),
    ({"REDIS_SENTINELS": "h:26379", "REDIS_URL": "rediss://:pw@h/0"}, "REDIS_URL"),
    ({"REDIS_SENTINELS": "h:26379", "REDIS_URL": "redis://:pw@h/zero"}, "REDIS_URL"),
])
def test_malformed_sentinel_settings_stop_the_start_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_sentinels_alone_select_redis_and_the_url_gives_only_password_and_db():
    assert not load_settings({}).redis_enabled
    settings = load_settings({"REDIS_SENTINELS": "[::1]:26379, 10.0.0.5:26380", "REDIS_URL": "redis://:s%40cret@ignored:1/5"})
    assert settings.redis_enabled and replicas_to_wait(settings) == 1
    client = redis_client(settings, socket_timeout=1)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["password"], kwargs["db"], client.connection_pool.service_name) == ("s@cret", 5, "vedina")
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in client.sentinel.sentinels] == [("::1", 26379), ("10.0.0.5", 26380)]
    assert replicas_to_wait(load_settings({"REDIS_URL": "redis://h/0"})) == 0


# -- against the cluster (the failover comes last: the module's tests run in order) --------------


async def test_a_durable_write_returns_once_the_replica_holds_it(cluster):
    settings = load_settings({"REDIS_SENTINELS": SENTINELS_ENV})
    client = redis_client(settings, socket_timeout=2)
    try:
        store = RedisStore(client, prefix="test:", replicas=replicas_to_wait(settings))
        waits = int(node(MASTER).info("commandstats").get("cmdstat_wait", {}).get("calls", 0))
        await store.set("revoked", b"1", ttl=60, durable=True)
        assert node(REPLICA).get("test:revoked") == b"1"  # read at once, no polling
        assert int(node(MASTER).info("commandstats")["cmdstat_wait"]["calls"]) == waits + 1
        await store.set("progress", b"2", ttl=60)  # not durable: no WAIT
        assert int(node(MASTER).info("commandstats")["cmdstat_wait"]["calls"]) == waits + 1
    finally:
        await client.aclose()


def test_a_server_finds_the_master_through_the_sentinels(server):
    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        pair = log_in(http)
        assert statuses(http, pair["access_token"], 10) == [200] * 10
        assert http.get("/api/movies").status_code == 200
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok"
    # The session state lives in the master the sentinels named.
    assert node(MASTER).exists(f"vedina:auth:session:{claims(pair['access_token'])['sid']}")


def test_killing_the_master_fails_over_and_the_server_follows_keeping_logouts(server, cluster):
    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        leaving, staying = log_in(http), log_in(http)
        for pair in (leaving, staying):  # both workers cache both principals
            assert statuses(http, pair["access_token"]) == [200] * 20
        lease_lost_before = lease_lost(http)

        # Requests that need Redis (a bearer token whose state must be read, sooner or later) all along.
        seen: list[tuple[float, int]] = []
        stop = threading.Event()

        def probe() -> None:
            with httpx.Client(base_url=server.base_url, timeout=15) as prober:
                while not stop.is_set():
                    seen.append((time.monotonic(), prober.get("/api/users/me",
                                                              headers=bearer(staying["access_token"])).status_code))
                    time.sleep(0.05)

        thread = threading.Thread(target=probe)
        thread.start()
        try:
            assert http.post("/api/auth/logout", headers=bearer(leaving["access_token"])).status_code == 204
            killed_at = time.monotonic()
            cluster.kill(MASTER)
            wait_for(lambda: master_port() == REPLICA, FAILOVER_BOUND, "Sentinel promoting the replica")
            promoted_after = time.monotonic() - killed_at
            wait_for(lambda: any(t > killed_at and s == 200 for t, s in seen[-3:]) and seen[-1][1] == 200,
                     FAILOVER_BOUND, "the server answering from the new master")
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(timeout=30)

    after = [(t - killed_at, s) for t, s in seen if t > killed_at]
    failed = [(t, s) for t, s in after if s != 200]
    last_failure = max((t for t, _ in failed), default=0.0)
    print(f"\nsentinel failover: promoted after {promoted_after:.1f}s, {len(after)} requests, "
          f"{len(failed)} failed, last failure at {last_failure:.1f}s")
    assert {s for _, s in failed} <= {503}, failed  # an outage answer while it lasts, never a 500 or a 401
    assert last_failure < FAILOVER_BOUND
    recovered = [s for t, s in after if t > last_failure]
    assert len(recovered) >= 10 and set(recovered) == {200}

    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        # The logout done just before the kill holds on every worker: the access token and the refresh token.
        assert statuses(http, leaving["access_token"]) == [401] * 20
        assert http.post("/api/auth/refresh", json={"refresh_token": leaving["refresh_token"]}).status_code == 401
        assert statuses(http, staying["access_token"]) == [200] * 20
        assert lease_lost(http) > lease_lost_before  # the subscription moved (and everything was invalidated)

        # The subscription now listens on the new master: a deny entry written there without a publish
        # is not seen by the near caches; its publish reaches every worker within the bound.
        new_master = node(REPLICA)
        deny = f"auth:deny:{claims(staying['access_token'])['jti']}"
        new_master.set(f"vedina:{deny}", b"1", ex=120)
        assert statuses(http, staying["access_token"], 10) == [200] * 10
        new_master.publish(CHANNEL, deny.encode())
        time.sleep(PROPAGATION_BOUND + 0.2)
        assert statuses(http, staying["access_token"]) == [401] * 20
        assert http.get("/ready").status_code == 200


def lease_lost(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("vedina_invalidation_lease_lost_total"):
            return float(line.split()[-1])
    return 0.0



def test_a_master_demoted_while_connected_sends_writes_to_the_new_one(server, cluster):
    """A planned failover (SENTINEL FAILOVER) demotes a live master: the app's open connections
    to it answer READONLY, which sends them to the new master, so a logout still holds."""
    wait_for(lambda: role_of(SECOND_REPLICA) == ("slave", "up") and node(SECOND_REPLICA).info("replication")[
        "master_port"] == REPLICA, 20, "the second replica following the new master")
    with httpx.Client(base_url=server.base_url, timeout=15) as http:
        pair = log_in(http)
        assert statuses(http, pair["access_token"]) == [200] * 20  # every worker holds a connection to 6391
        node(SENTINELS[0]).execute_command("SENTINEL", "FAILOVER", SERVICE)
        t0 = time.monotonic()
        wait_for(lambda: master_port() == SECOND_REPLICA and role_of(REPLICA) == ("slave", "up"), 20,
                 "the planned failover")
        print(f"planned failover after {time.monotonic() - t0:.1f}s")
        logout = http.post("/api/auth/logout", headers=bearer(pair["access_token"]))
        assert logout.status_code == 204, logout.text
        assert node(SECOND_REPLICA).get(f"vedina:auth:deny:{claims(pair['access_token'])['jti']}") == b"1"
        assert statuses(http, pair["access_token"]) == [401] * 20
        assert statuses(http, log_in(http)["access_token"]) == [200] * 20


def role_of(port: int) -> tuple[str, str] | None:
    try:
        info = node(port).info("replication")
    except redis.ConnectionError:
        return None
    return info["role"], info.get("master_link_status", "")
