"""RabbitMQ nodes on test hosts (network namespaces), clustered when there are several.

Each node runs in its own host's namespace, so it has its own epmd (4369) and the standard ports
(AMQP 5672, distribution 25672) on that host's address. Everything of node ``i`` lives under
``root/<host.name>/``: ``rabbitmq.conf``, an empty plugin list (no management plugin), the mnesia
and quorum-queue data, the logs (``log/rabbit@<ip>.log``: read it when a start or a join fails),
the server's output (``server.out``) and ``.erlang.cookie``.

Naming and cookie, the two things Erlang clustering needs:

- long node names on the host's address, ``rabbit@<ip>`` with ``RABBITMQ_USE_LONGNAME=true`` (and
  ``--longnames`` for the CLI). The namespaces share the machine's hostname, so short names
  (``rabbit@<hostname>``) would be the same name on every host and resolve to an address outside
  the lab; an IP needs no resolver at all, from any namespace on the network.
- one random cookie for the whole cluster, in ``.erlang.cookie`` (mode 0400) of each node's own
  ``HOME`` (``root/<host.name>``), for the server and for every ``rabbitmqctl`` run against it.

The scripts of /usr/lib/rabbitmq/bin are run directly, as root (the /usr/sbin wrappers switch to the
``rabbitmq`` user and /var/lib/rabbitmq, the machine's own broker's place). Every ``rabbitmqctl``
names its node (``-n rabbit@<ip>``) and runs inside that node's namespace: the machine's RabbitMQ is
never reached.

Small and quick on 2 shared cores: one scheduler (``+S 1:1``, no busy-waiting), 4 async threads,
the distribution port pinned to 25672, ``net_ticktime`` 10 s (a peer cut off is noticed within
~10 s rather than ~60 s), a 512 MB memory watermark and a 50 MB disk limit; ~150 MB RSS per node.
Measured here: one node starts in 5-6 s, three start and cluster in 16-25 s (two shared cores).

>>> nodes = RabbitNodes([mq1, mq2, mq3], tmp_path / "rabbitmq")
>>> nodes.start()                      # three nodes, 2 and 3 joined to 1, the user made
>>> nodes.urls()                       # ['amqp://vedina:<pw>@10.213.0.41:5672/', ...]
>>> nodes.stop_node(0); nodes.start_node(0)   # down cleanly and back, rejoined
>>> nodes.kill_node(1); nodes.start_node(1)   # crashed (SIGKILL) and back
>>> nodes.destroy()
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

from tests.cluster.netns import Host

BIN = Path("/usr/lib/rabbitmq/bin")
AMQP_PORT = 5672
DIST_PORT = 25672
ERL_ARGS = (f"+S 1:1 +A 4 +sbwt none +sbwtdcpu none +sbwtdio none -kernel net_ticktime 10 "
            f"-kernel inet_dist_listen_min {DIST_PORT} -kernel inet_dist_listen_max {DIST_PORT}")
CONFIG = f"""\
listeners.tcp.default = {AMQP_PORT}
loopback_users = none
vm_memory_high_watermark.absolute = 512MB
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
"""
BOOT_TIMEOUT = 90.0  # seconds for a node to start (three at once on two cores take ~10 s)


def available() -> str | None:
    """Why RabbitMQ nodes cannot be started here, or None when they can."""
    missing = [script for script in ("rabbitmq-server", "rabbitmqctl") if not (BIN / script).exists()]
    return f"RabbitMQ is not installed ({', '.join(missing)} missing in {BIN})" if missing else None


class RabbitNodes:
    """One RabbitMQ node per host; node 0 is the one the others join."""

    def __init__(self, hosts: list[Host], root: Path, user: str = "vedina", password: str | None = None) -> None:
        if not hosts:
            raise ValueError("at least one host")
        self.hosts = list(hosts)
        self.root = Path(root)
        self.user = user
        self.password = password or secrets.token_hex(12)
        self._cookie = secrets.token_hex(20).upper()
        self._servers: dict[int, subprocess.Popen] = {}
        self._down: set[int] = set()  # nodes stopped or killed on purpose

    # -- naming ---------------------------------------------------------------------------

    def node(self, i: int) -> str:
        return f"rabbit@{self.hosts[i].ip}"

    @property
    def stopped(self) -> set[int]:
        """The nodes stopped or killed (and not started again)."""
        return set(self._down)

    def urls(self) -> list[str]:
        return [f"amqp://{self.user}:{self.password}@{host.ip}:{AMQP_PORT}/" for host in self.hosts]

    def index_of(self, address: str) -> int:
        """The node whose host has ``address`` (an IP, or a URL holding it)."""
        for i, host in enumerate(self.hosts):
            if f"@{host.ip}:" in address or address == host.ip:
                return i
        raise LookupError(f"no node at {address!r}")

    def directory(self, i: int) -> Path:
        return self.root / self.hosts[i].name

    def log(self, i: int) -> Path:
        return self.directory(i) / "log" / f"{self.node(i)}.log"

    # -- the cluster ----------------------------------------------------------------------

    def start(self) -> None:
        """Start every node (at once), join nodes 1.. to node 0, make the user; return when
        ``cluster_status`` lists every node running."""
        for i in range(len(self.hosts)):
            self._prepare(i)
            self._spawn(i)
        for i in range(len(self.hosts)):
            self._await_boot(i)
        for i in range(1, len(self.hosts)):
            self.ctl(i, "stop_app")
            self.ctl(i, "join_cluster", self.node(0), timeout=120)
            self.ctl(i, "start_app", timeout=120)
        self.ctl(0, "add_user", self.user, self.password)
        self.ctl(0, "set_permissions", "-p", "/", self.user, ".*", ".*", ".*")
        self.wait_running()

    def stop_node(self, i: int) -> None:
        """Node ``i`` goes down cleanly, as ``systemctl stop rabbitmq-server`` would take it down:
        ``rabbitmqctl stop`` shuts the node down and its Erlang VM exits. Its clients' connections
        are closed (CONNECTION_FORCED), its quorum-queue leaders hand over, the other nodes see it
        leave; it stays a member of the cluster and keeps its data (``start_node`` brings it back).
        (``stop_app`` would leave the VM up and connected to its peers: a node half-down.)
        For a crash, see ``kill_node``."""
        self.ctl(i, "stop", timeout=120)
        self._down.add(i)
        self._reap(i, timeout=60)

    def kill_node(self, i: int) -> None:
        """Node ``i``'s host loses power: SIGKILL to every process of its namespace (the node,
        its epmd, any CLI run there). Its data stays; ``start_node`` brings it back."""
        self._down.add(i)
        self._kill(i)

    def start_node(self, i: int) -> None:
        """Start node ``i`` again from its data: it rejoins the cluster by itself. Returns when
        ``cluster_status`` lists it running with every node not stopped on purpose."""
        if i in self._servers and self._servers[i].poll() is None:
            raise RuntimeError(f"{self.node(i)} is running")
        self._spawn(i)
        self._await_boot(i)
        self._down.discard(i)
        self.wait_running()

    def destroy(self) -> None:
        """Kill every node's processes (whatever state they are in); the files stay for reading."""
        for i in range(len(self.hosts)):
            with contextlib.suppress(Exception):
                self._kill(i)

    # -- asking the nodes -----------------------------------------------------------------

    def ctl(self, i: int, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """``rabbitmqctl -n rabbit@<ip> --longnames <args>`` inside node ``i``'s namespace."""
        return self.hosts[i].run([str(BIN / "rabbitmqctl"), "-n", self.node(i), "--longnames", *args],
                                 env=self._env(i), timeout=timeout, check=check)

    def cluster_status(self, i: int | None = None) -> dict:
        """``cluster_status`` as JSON, asked of node ``i`` (default: the first node not down)."""
        asked = self._some_up() if i is None else i
        return json.loads(self.ctl(asked, "cluster_status", "--formatter", "json").stdout)

    def running(self, i: int | None = None) -> set[str]:
        return set(self.cluster_status(i)["running_nodes"])

    def wait_running(self, timeout: float = 60) -> None:
        """Until every node not stopped on purpose is listed running (asked of one of them)."""
        wanted = {self.node(i) for i in range(len(self.hosts)) if i not in self._down}
        deadline = time.monotonic() + timeout
        while True:
            try:
                running = self.running()
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                running, error = set(), exc
            else:
                error = None
            if wanted <= running:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"running nodes {sorted(running)}, expected {sorted(wanted)}"
                                   + (f" ({error})" if error else "") + self._log_tails())
            time.sleep(0.5)

    def queues(self, i: int | None = None) -> list[dict]:
        """Every queue of vhost ``/``: name, type, leader, members and online members (quorum
        queues), messages."""
        asked = self._some_up() if i is None else i
        done = self.ctl(asked, "list_queues", "name", "type", "leader", "members", "online", "messages",
                        "--formatter", "json")
        return json.loads(done.stdout)

    # -- processes ------------------------------------------------------------------------

    def _prepare(self, i: int) -> None:
        directory = self.directory(i)
        directory.mkdir(parents=True, exist_ok=True)
        cookie = directory / ".erlang.cookie"
        if cookie.exists():
            cookie.chmod(0o600)
        cookie.write_text(self._cookie)
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        (directory / "rabbitmq.conf").write_text(CONFIG)
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's

    def _env(self, i: int) -> dict[str, str]:
        directory = self.directory(i)
        inherited = {key: value for key, value in os.environ.items()
                     if not key.startswith(("RABBITMQ_", "ERL_")) and key != "HOME"}
        return {
            **inherited, "HOME": str(directory), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node(i), "RABBITMQ_USE_LONGNAME": "true",
            "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "rabbit.pid"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(directory / "plugins-expand"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
        }

    def _spawn(self, i: int) -> None:
        self._servers[i] = self.hosts[i].popen([str(BIN / "rabbitmq-server")], log=self.directory(i) / "server.out",
                                               env=self._env(i))

    def _await_boot(self, i: int) -> None:
        """Until node ``i`` has booted: first registered in its epmd (cheap to poll), then
        ``await_startup`` (which fails at once for a node not registered yet)."""
        host, server = self.hosts[i], self._servers[i]
        deadline = time.monotonic() + BOOT_TIMEOUT
        while "name rabbit " not in host.run(["epmd", "-names"], check=False).stdout:
            if server.poll() is not None:
                raise RuntimeError(f"{self.node(i)} exited {server.returncode} while starting" + self._log_tails(i))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.node(i)} not registered in epmd after {BOOT_TIMEOUT:.0f} s"
                                   + self._log_tails(i))
            time.sleep(0.2)
        try:
            self.ctl(i, "await_startup", "--timeout", str(int(BOOT_TIMEOUT)), timeout=BOOT_TIMEOUT + 30)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}{self._log_tails(i)}") from None

    def _kill(self, i: int) -> None:
        host = self.hosts[i]
        deadline = time.monotonic() + 10
        while host.pids() and time.monotonic() < deadline:
            host.kill_all(signal.SIGKILL)
            time.sleep(0.05)
        self._reap(i, timeout=10)

    def _reap(self, i: int, *, timeout: float) -> None:
        server = self._servers.get(i)
        if server is None:
            return
        try:
            server.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)

    def _some_up(self) -> int:
        return next(i for i in range(len(self.hosts)) if i not in self._down)

    def _log_tails(self, *indexes: int, lines: int = 15) -> str:
        parts = []
        for i in indexes or range(len(self.hosts)):
            for path in (self.directory(i) / "server.out", self.log(i)):
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    parts.append(f"\n--- {path} ---\n" + "\n".join(tail))
        return "".join(parts)
