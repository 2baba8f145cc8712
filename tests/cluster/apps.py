"""A Vedina app host in the lab: ``vedina serve`` (Granian, 2 workers) and ``vedina worker``.

Both processes run inside the host's namespace with the cluster's environment (one primary, the
replica in ``DB_REPLICA_HOSTS``, the Sentinels in ``REDIS_SENTINELS``, the RabbitMQ nodes in
``AMQP_URLS``, one ``MEDIA_ROOT`` shared by every host) and the host's own ``DATA_DIR``.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.cluster.netns import Host
from tests.conftest import VEDINA

PORT = 8000


class AppHost:
    def __init__(self, host: Host, root: Path, env: dict[str, str], *, workers: int = 2) -> None:
        self.host = host
        self.root = root
        self.workers = workers
        self.data_dir = root / "data"
        self.env = {**env, "DATA_DIR": str(self.data_dir), "HOST": host.ip, "PORT": str(PORT),
                    "RATE_LIMIT_SHM_PATH": str(self.data_dir / "ratelimit.shm"),
                    "INVALIDATION_SHM_PATH": str(self.data_dir / "generations.shm")}
        self.url = f"http://{host.ip}:{PORT}"

    def cli(self, *args: str, timeout: float = 120) -> str:
        """A ``vedina`` command run on this host (as an operator would, e.g. ``migrate``)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.host.run([VEDINA, *args], env=self.env, timeout=timeout).stdout

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.host.popen([VEDINA, "serve", "--server", "granian", "--workers", str(self.workers),
                         "--host", self.host.ip, "--port", str(PORT)], log=self.root / "serve.log", env=self.env)
        self.host.popen([VEDINA, "worker"], log=self.root / "worker.log", env=self.env)

    def wait_ready(self, timeout: float = 60) -> None:
        if self.host.wait_http(f"{self.url}/ready", timeout=timeout):
            return
        log = (self.root / "serve.log").read_text()[-3000:] if (self.root / "serve.log").exists() else ""
        raise TimeoutError(f"{self.host.name} not ready after {timeout}s:\n{log}")

    def kill(self) -> None:
        """The host dies: every process on it gets SIGKILL (no drain, no goodbye)."""
        deadline = time.monotonic() + 10
        while self.host.pids() and time.monotonic() < deadline:
            self.host.kill_all()  # again: a worker respawned meanwhile dies too
            time.sleep(0.05)
