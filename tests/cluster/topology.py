"""The lab issue 13 asks for: nginx in front of two app hosts, a MariaDB primary and replica, Redis
with a replica and three Sentinels, and a RabbitMQ cluster of three nodes
(``CLUSTER_RABBITMQ_NODES=1``: one node, for a quicker run without drill 6).

Two private networks (bridges), so one host can be cut off from Redis alone:

    front 10.213.0.0/24   client .2, nginx .10, app1 .11, app2 .12, db1 .21, db2 .22, mq1..3 .41-.43
    cache 10.213.1.0/24   app1 .11, app2 .12, redis1 .31 (master), redis2 .32 (replica), redis3 .33

Sentinels run on redis1..3. The test process itself stays in the root namespace, which has no
address on either network: it reaches the lab through commands run in the ``client`` host.

>>> cluster = Cluster.build(tmp_path)            # about a minute
>>> status, body = cluster.http("GET", "/api/movies/1")
>>> cluster.destroy()
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path

from tests.cluster.apps import AppHost
from tests.cluster.balancer import Balancer
from tests.cluster.mariadb import MariaDB
from tests.cluster.netns import Host, Lab, Network
from tests.cluster.rabbitmq import RabbitNodes
from tests.cluster.redis_group import RedisGroup
from tests.conftest import TEST_PASSWORD, WEBHOOK_SECRETS

REPO = Path(__file__).resolve().parents[2]
DATABASE = "vedina"
DB_USER = "vedina"


def rabbit_node_count() -> int:
    return int(os.environ.get("CLUSTER_RABBITMQ_NODES", "3"))


@dataclass
class Cluster:
    root: Path
    lab: Lab
    front: Network
    cache: Network
    client: Host
    primary: MariaDB
    replica: MariaDB
    redis: RedisGroup
    rabbit: RabbitNodes
    apps: list[AppHost] = field(default_factory=list)
    balancer: Balancer | None = None
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------

    @classmethod
    def build(cls, root: Path, *, tag: str = "vdcl") -> Cluster:
        started = time.monotonic()
        lab = Lab(tag)
        try:
            return cls._build(root, lab, started)
        except BaseException:
            lab.destroy()
            raise

    @classmethod
    def _build(cls, root: Path, lab: Lab, started: float) -> Cluster:
        front = lab.network("front", "10.213.0")
        cache = lab.network("cache", "10.213.1")
        client = lab.host("client", {front: 2})
        lb = lab.host("lb", {front: 10})
        app_hosts = [lab.host(f"app{n}", {front: 10 + n, cache: 10 + n}) for n in (1, 2)]
        db1, db2 = (lab.host(f"db{n}", {front: 20 + n}) for n in (1, 2))
        redis_hosts = [lab.host(f"redis{n}", {cache: 30 + n}) for n in (1, 2, 3)]
        mq_hosts = [lab.host(f"mq{n}", {front: 40 + n}) for n in range(1, rabbit_node_count() + 1)]
        cluster = cls(root=root, lab=lab, front=front, cache=cache, client=client,
                      primary=MariaDB(db1, root / "db1", server_id=1),
                      replica=MariaDB(db2, root / "db2", server_id=2),
                      redis=RedisGroup(redis_hosts[0], redis_hosts[1], redis_hosts, root / "redis"),
                      rabbit=RabbitNodes(mq_hosts, root / "rabbitmq"))
        cluster.timings["hosts"] = time.monotonic() - started

        db_password = secrets.token_hex(16)

        def databases() -> None:
            cluster.primary.start()
            cluster.replica.start()
            cluster.primary.create_app_database(DATABASE, DB_USER, db_password)
            cluster.replica.follow(cluster.primary)

        with ThreadPoolExecutor(3) as pool:  # the engines boot side by side
            for future in [pool.submit(databases), pool.submit(cluster.redis.start), pool.submit(cluster.rabbit.start)]:
                future.result()
        cluster.timings["services"] = time.monotonic() - started

        media_root = root / "media"  # one directory every app host serves: the shared filesystem
        media_root.mkdir(parents=True)
        cluster.env = cluster.app_env(db_password, media_root)
        cluster.apps = [AppHost(host, root / host.name, cluster.env) for host in app_hosts]
        cluster.apps[0].cli("migrate")
        cluster.apps[0].cli("demo-data")
        for app in cluster.apps:
            app.start()
        for app in cluster.apps:
            app.wait_ready()
        cluster.balancer = Balancer(lb, root / "nginx", upstreams=[f"{app.host.ip}:8000" for app in cluster.apps],
                                    media_root=media_root)
        cluster.balancer.start()
        cluster.timings["ready"] = time.monotonic() - started
        return cluster

    def app_env(self, db_password: str, media_root: Path) -> dict[str, str]:
        sentinels = ",".join(f"{host}:{port}" for host, port in self.redis.sentinels())
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
            "VEDINA_ENV": "test", "LOG_LEVEL": "warning", "ACCESS_LOG": "false",
            "DB_HOST": self.primary.host.ip, "DB_NAME": DATABASE, "DB_USER": DB_USER, "DB_PASSWORD": db_password,
            "DB_REPLICA_HOSTS": self.replica.host.ip, "DB_REPLICA_MAX_LAG_S": "5",
            "REDIS_SENTINELS": sentinels, "REDIS_SENTINEL_SERVICE": self.redis.service,
            "AMQP_URLS": ",".join(self.rabbit.urls()), "AMQP_QUEUE_TYPE": "quorum",
            "MEDIA_ROOT": str(media_root), "MEDIA_ACCEL_REDIRECT": "/_protected_media/",
            "SESSION_SECRET": secrets.token_urlsafe(32),
            "API_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "JWT_SIGNING_KEYS": "lab:" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "WEBHOOK_SECRETS": WEBHOOK_SECRETS, "REQUIRE_VERIFIED_EMAIL": "false",
            "RATE_LIMIT_API": "100000/1s burst 100000", "RATE_LIMIT_STREAM": "100000/1s burst 100000",
            "RATE_LIMIT_AUTH": "100000/1s burst 100000", "RATE_LIMIT_LOGIN_ACCOUNT": "100000/1s burst 100000",
            "PLAYBACK_DEFAULT_PLAN": "premium", "PAYMENT_PROVIDER": "sim", "STRIPE_API_BASE": "http://127.0.0.1:9",
            "TRUSTED_PROXIES": f"{self.front.address(10)}/32", "METRICS_ALLOWED_IPS": "10.213.0.0/16",
            "TRANSCODE_ON_INGEST": "false",
        }

    def destroy(self) -> None:
        self.lab.destroy()

    # -- talking to it from the client host ------------------------------------------

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def http(self, method: str, path: str, *, base: str | None = None, token: str | None = None,
             body: dict | None = None, timeout: float = 15) -> tuple[int, object]:
        """One request from the client host (through nginx unless ``base`` names an app host)."""
        argv = ["curl", "-s", "-m", str(timeout), "-X", method, "-w", "\n%{http_code}"]
        if token:
            argv += ["-H", f"authorization: Bearer {token}"]
        if body is not None:
            argv += ["-H", "content-type: application/json", "--data-binary", json.dumps(body)]
        done = self.client.run([*argv, (base or self.url) + path], check=False, timeout=timeout + 10)
        text, _, status = done.stdout.rpartition("\n")
        try:
            answer: object = json.loads(text) if text else None
        except ValueError:
            answer = text
        return int(status or 0), answer

    def account(self, role: str | None = None) -> dict:
        """A new account (given ``role`` with the CLI on an app host), logged in: its tokens."""
        email = f"{role or 'viewer'}-{secrets.token_hex(6)}@example.org"
        status, answer = self.http("POST", "/api/auth/register",
                                   body={"email": email, "password": TEST_PASSWORD, "display_name": "Lab"})
        assert status == 202, answer
        if role is not None:
            self.apps[0].cli("set-role", email, role)
        status, answer = self.http("POST", "/api/auth/login", body={"email": email, "password": TEST_PASSWORD})
        assert status == 200, answer
        return answer  # type: ignore[return-value]

    def traffic(self, *, tag: str, seconds: float, editor_token: str, viewer_token: str | None = None,
                threads: int = 4, register: bool = False) -> Traffic:
        out = self.root / f"traffic-{tag}.json"
        argv = [sys.executable, "-m", "tests.cluster.traffic", "--base", self.url, "--seconds", str(seconds),
                "--tag", tag, "--editor-token", editor_token, "--threads", str(threads), "--out", str(out)]
        if viewer_token:
            argv += ["--viewer-token", viewer_token]
        if register:
            argv.append("--register")
        proc = self.client.popen(argv, log=self.root / f"traffic-{tag}.log",
                                 env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
        return Traffic(proc, out, self.root / f"traffic-{tag}.log")

    def mails_to(self, prefix: str) -> Counter[str]:
        """Emails sent so far to addresses starting with ``prefix``, by recipient, on every app host
        (each host's ``vedina worker`` writes the mail it sends under its own ``DATA_DIR/mail``)."""
        sent: Counter[str] = Counter()
        for app in self.apps:
            for path in (app.data_dir / "mail").glob("*.eml"):
                recipient = BytesParser(policy=policy.default).parsebytes(path.read_bytes(), headersonly=True)["To"]
                if recipient and str(recipient).startswith(prefix):
                    sent[str(recipient)] += 1
        return sent

    def stored_movie_ids(self, tag: str, *, server: MariaDB | None = None) -> set[int]:
        """Ids of the drill's movies as the primary (or ``server``) holds them."""
        out = (server or self.primary).sql(f"SELECT id FROM {DATABASE}.movies WHERE slug LIKE '{tag}-%'")
        return {int(line) for line in out.split()}


@dataclass
class Traffic:
    proc: subprocess.Popen
    out: Path
    log: Path

    def result(self, timeout: float = 120) -> dict:
        self.proc.wait(timeout=timeout)
        if not self.out.exists():
            raise RuntimeError(f"the traffic loop wrote no result: {self.log.read_text()[-3000:]}")
        return json.loads(self.out.read_text())
