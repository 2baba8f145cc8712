"""Redis master + replica and three Sentinels on test hosts (network namespaces).

``redis-server`` listens on its host's address, port 6379 (the master, and a replica with
``replicaof``); a sentinel (``redis-server sentinel.conf --sentinel``) on port 26379 of each
sentinel host monitors ``service`` with quorum 2, calls a master down after 1 s without an answer,
and announces its host's address. No persistence: a restarted node comes back empty and takes a
full copy from the master. Each node and sentinel has its own config file, which Sentinel rewrites
(``CONFIG REWRITE``) when it reconfigures a node, so a restart keeps the role Sentinel gave it.

Everything is asked with ``redis-cli`` run inside the namespaces (the root namespace has no address
on the lab's networks).

>>> group = RedisGroup(redis1, redis2, [redis1, redis2, redis3], root / "redis")
>>> group.start()                          # the sentinels agree on redis1 and know redis2 and each other
>>> group.sentinels()                      # [("10.213.1.31", 26379), ...] for REDIS_SENTINELS
>>> old = group.kill_master()              # SIGKILL; Sentinel promotes redis2 within seconds
>>> group.wait_failover(old.ip)            # the new master's address
>>> group.restart(old)                     # back, and reconfigured by Sentinel as redis2's replica
>>> group.destroy()
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.cluster.netns import Host

PORT = 6379
SENTINEL_PORT = 26379
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 2000


def _pairs(lines: list[str], first_key: str) -> list[dict[str, str]]:
    """redis-cli prints a reply of key/value arrays one element a line: back to dicts, a new one
    starting at each ``first_key``."""
    found: list[dict[str, str]] = []
    for key, value in zip(lines[::2], lines[1::2]):
        if key == first_key or not found:
            found.append({})
        found[-1][key] = value
    return found


class RedisGroup:
    def __init__(self, master: Host, replica: Host, sentinel_hosts: list[Host], root: Path, *,
                 service: str = "vedina") -> None:
        if len(sentinel_hosts) < QUORUM:
            raise ValueError(f"a quorum of {QUORUM} needs at least {QUORUM} sentinels")
        self.master = master
        self.replica = replica
        self.nodes = [master, replica]
        self.sentinel_hosts = sentinel_hosts
        self.root = root
        self.service = service
        self._servers: dict[str, subprocess.Popen] = {}  # host name -> its redis-server
        self._sentinels: dict[str, subprocess.Popen] = {}  # host name -> its sentinel

    # -- asking ----------------------------------------------------------------------------------

    def cli(self, host: Host, port: int, *args: str, input: str | None = None, timeout: float = 10) -> list[str]:
        """``redis-cli`` to ``host``'s address and ``port``, run in ``host``'s namespace: the reply's lines."""
        done = host.run(["redis-cli", "-h", host.ip, "-p", str(port), *args], input=input, timeout=timeout)
        lines = done.stdout.splitlines()
        if lines and lines[0].startswith(("ERR", "(error)", "Could not connect")):
            raise RuntimeError(f"[{host.name}] redis-cli {' '.join(args)}: {done.stdout.strip()}")
        return lines

    def info(self, host: Host, section: str = "replication") -> dict[str, str]:
        """``INFO section`` of the node on ``host``; empty when it does not answer."""
        try:
            lines = self.cli(host, PORT, "INFO", section, timeout=5)
        except (RuntimeError, subprocess.TimeoutExpired):
            return {}
        return dict(line.strip().split(":", 1) for line in lines if ":" in line and not line.startswith("#"))

    def sentinels(self) -> list[tuple[str, int]]:
        """Where the sentinels listen (``REDIS_SENTINELS``)."""
        return [(host.ip, SENTINEL_PORT) for host in self.sentinel_hosts]

    def master_address(self) -> tuple[str, int]:
        """The master as the first sentinel that answers names it."""
        for host in self.sentinel_hosts:
            if not self._alive(self._sentinels.get(host.name)):
                continue
            try:
                lines = self.cli(host, SENTINEL_PORT, "SENTINEL", "get-master-addr-by-name", self.service, timeout=5)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            if len(lines) == 2:
                return lines[0], int(lines[1])
        raise RuntimeError(f"no sentinel names a master for {self.service}")

    def sentinel_views(self) -> list[dict[str, str]]:
        """``SENTINEL MASTER service`` from every sentinel (an empty dict for one that does not answer)."""
        views = []
        for host in self.sentinel_hosts:
            try:
                lines = self.cli(host, SENTINEL_PORT, "SENTINEL", "MASTER", self.service, timeout=5)
                views.append(_pairs(lines, "name")[0] if lines else {})
            except (RuntimeError, subprocess.TimeoutExpired):
                views.append({})
        return views

    def replicas_seen(self, host: Host) -> list[dict[str, str]]:
        """``SENTINEL REPLICAS service`` as the sentinel on ``host`` sees them."""
        return _pairs(self.cli(host, SENTINEL_PORT, "SENTINEL", "REPLICAS", self.service, timeout=5), "name")

    def node(self, address: str) -> Host:
        return next(host for host in self.nodes if host.ip == address)

    # -- processes ---------------------------------------------------------------------------------

    @staticmethod
    def _alive(process: subprocess.Popen | None) -> bool:
        return process is not None and process.poll() is None

    def _node_conf(self, host: Host, replica_of: Host | None) -> Path:
        directory = self.root / host.name / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "redis.conf"
        lines = [f"bind {host.ip}", f"port {PORT}", "protected-mode no", f"dir {directory}", 'save ""',
                 "appendonly no", f"replica-announce-ip {host.ip}",
                 # The full copy to a (re)joining replica starts at once, not after the default 5 s.
                 "repl-diskless-sync yes", "repl-diskless-sync-delay 0"]
        if replica_of is not None:
            lines.append(f"replicaof {replica_of.ip} {PORT}")
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _sentinel_conf(self, host: Host) -> Path:
        directory = self.root / host.name / "sentinel"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"  # Sentinel rewrites its file: one each, writable
        conf.write_text(
            f"port {SENTINEL_PORT}\nbind {host.ip}\nprotected-mode no\ndir {directory}\n"
            f"sentinel announce-ip {host.ip}\nsentinel announce-port {SENTINEL_PORT}\n"
            f"sentinel monitor {self.service} {self.master.ip} {PORT} {QUORUM}\n"
            f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.service} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        return conf

    def _start_server(self, host: Host) -> None:
        conf = self.root / host.name / "redis" / "redis.conf"
        self._servers[host.name] = host.popen(["redis-server", str(conf)], log=conf.with_name("redis.log"))

    def _start_sentinel(self, host: Host) -> None:
        conf = self.root / host.name / "sentinel" / "sentinel.conf"
        self._sentinels[host.name] = host.popen(["redis-server", str(conf), "--sentinel"],
                                                log=conf.with_name("sentinel.log"))

    def start(self, timeout: float = 30) -> None:
        """Master, replica (linked), then the sentinels; returns once every sentinel names the master
        and knows the replica and the other sentinels."""
        self._node_conf(self.master, None)
        self._node_conf(self.replica, self.master)
        for host in self.nodes:
            self._start_server(host)
        self._wait(lambda: self._replicating(self.replica, self.master.ip), timeout, "the replica's link to the master")
        for host in self.sentinel_hosts:
            self._sentinel_conf(host)
            self._start_sentinel(host)
        others = str(len(self.sentinel_hosts) - 1)

        def agreed() -> bool:
            views = self.sentinel_views()
            return all(view.get("ip") == self.master.ip and view.get("flags") == "master"
                       and view.get("num-slaves") == "1" and view.get("num-other-sentinels") == others
                       for view in views)

        self._wait(agreed, timeout, "sentinels that agree on the master and know the replica and each other")

    def kill(self, host: Host) -> None:
        """SIGKILL the redis-server on ``host`` (``ip netns exec`` execs: the pid is redis-server's)."""
        process = self._servers[host.name]
        if self._alive(process):
            process.kill()
            process.wait(timeout=10)

    def kill_master(self) -> Host:
        """SIGKILL the current master's redis-server; returns its host (for :meth:`restart`)."""
        host = self.node(self.master_address()[0])
        self.kill(host)
        return host

    def wait_failover(self, old_master: str, timeout: float = 15) -> str:
        """Until the sentinels name a master other than ``old_master`` and it says it is one."""
        def promoted() -> str | None:
            try:
                address, _ = self.master_address()
            except RuntimeError:
                return None
            if address != old_master and self.info(self.node(address)).get("role") == "master":
                return address
            return None

        return self._wait(promoted, timeout, f"a master other than {old_master}")

    def restart(self, host: Host, timeout: float = 30) -> None:
        """Start the killed redis-server (and sentinel) on ``host`` again with its own config, which
        names no master if it was one: Sentinel sees a former master and turns it into a replica
        of the current one (about 10 s: Sentinel waits 8 s for newer configs, then its next INFO).
        Returns once it replicates and every sentinel sees it as a healthy replica."""
        if host.name in self._sentinels and not self._alive(self._sentinels[host.name]):
            self._start_sentinel(host)
        if host not in self.nodes:
            return
        if not self._alive(self._servers.get(host.name)):
            self._start_server(host)

        def rejoined() -> bool:
            master, _ = self.master_address()
            if master == host.ip or not self._replicating(host, master):
                return False
            for sentinel in self.sentinel_hosts:
                seen = [r for r in self.replicas_seen(sentinel) if r.get("ip") == host.ip]
                # Healthy (not s_down, connected); its link status there follows at the next INFO
                # (every 10 s, every 1 s once the master is down: in time for a failover).
                if not seen or seen[0].get("flags") != "slave":
                    return False
            return True

        self._wait(rejoined, timeout, f"{host.name} back as a replica of the master")

    def _replicating(self, host: Host, master: str) -> bool:
        info = self.info(host)
        return (info.get("role") == "slave" and info.get("master_host") == master
                and info.get("master_link_status") == "up")

    @staticmethod
    def _wait(condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = condition()
            except (RuntimeError, subprocess.TimeoutExpired):
                result = None
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout} s")
            time.sleep(0.2)

    def destroy(self) -> None:
        """Kill every process this group started (the lab's destroy kills them anyway)."""
        for process in [*self._servers.values(), *self._sentinels.values()]:
            if self._alive(process):
                process.kill()
                process.wait(timeout=10)
