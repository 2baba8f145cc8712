"""Test hosts as Linux network namespaces on private bridges (``ip netns``, iproute2).

A :class:`Lab` owns everything it makes: bridges in the root namespace (with no address there),
one namespace per host, a veth pair per (host, network) with the host's address inside the
namespace, and every process started in a host. :meth:`Lab.destroy` kills those processes and
deletes the namespaces and bridges, whatever state a test left them in.

>>> lab = Lab("t1")                               # names carry "t1" so two labs never collide
>>> front = lab.network("front", "10.213.0")     # 10.213.0.0/24 on its own bridge
>>> app = lab.host("app1", {front: 11})           # 10.213.0.11 inside namespace t1-app1
>>> proc = app.popen(["python", "-m", "http.server"], log=path)
>>> app.run(["curl", "-s", "http://10.213.0.11:8000/"])
>>> app.link(front, up=False)                     # cut it off that network; up=True puts it back
>>> lab.destroy()

Every command runs as root (``ip netns exec``); addresses exist only inside the lab's namespaces.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"vdprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Network:
    """A bridge with a /24: hosts get ``<prefix>.<n>``."""

    def __init__(self, lab: Lab, name: str, prefix: str) -> None:
        self.name = name
        self.prefix = prefix
        self.bridge = f"{lab.tag}b{len(lab.networks)}"  # interface names stay under 16 bytes
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "addrgenmode", "none")  # not even an IPv6 link-local address here
        _ip("link", "set", self.bridge, "up")

    def address(self, n: int) -> str:
        return f"{self.prefix}.{n}"


class Host:
    """One namespace: its addresses, its links and the processes started in it."""

    def __init__(self, lab: Lab, name: str, index: int) -> None:
        self.lab = lab
        self.name = name
        self.namespace = f"{lab.tag}-{name}"
        self.index = index
        self.addresses: dict[str, str] = {}
        self._peers: dict[str, str] = {}  # network name -> the veth end on the bridge
        self.processes: list[subprocess.Popen] = []
        _ip("netns", "add", self.namespace)
        _ip("-n", self.namespace, "link", "set", "lo", "up")

    @property
    def ip(self) -> str:
        """The host's first address."""
        return next(iter(self.addresses.values()))

    def attach(self, network: Network, n: int) -> str:
        peer = f"{self.lab.tag}h{self.index}n{len(self._peers)}"
        inside = f"eth{len(self._peers)}"
        address = network.address(n)
        _ip("link", "add", peer, "type", "veth", "peer", "name", inside, "netns", self.namespace)
        _ip("link", "set", peer, "addrgenmode", "none")
        _ip("link", "set", peer, "master", network.bridge, "up")
        _ip("-n", self.namespace, "addr", "add", f"{address}/24", "dev", inside)
        _ip("-n", self.namespace, "link", "set", inside, "up")
        self.addresses[network.name] = address
        self._peers[network.name] = peer
        return address

    def link(self, network: Network, *, up: bool) -> None:
        """Put the host's cable to ``network`` down (cut off, packets dropped) or up again."""
        _ip("link", "set", self._peers[network.name], "up" if up else "down")

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: list[str], *, timeout: float = 60, check: bool = True,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout, env=env,
                              input=input)
        if check and done.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(argv)} exited {done.returncode}: "
                               f"{done.stderr.strip()[-2000:]}")
        return done

    def popen(self, argv: list[str], *, log: Path, env: dict[str, str] | None = None,
              cwd: Path | str | None = None) -> subprocess.Popen:
        """A long-running process in its own process group, output to ``log``; killed by destroy()."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.command(argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    start_new_session=True)
        self.processes.append(proc)
        return proc

    def http_status(self, url: str, *, timeout: float = 2) -> int:
        """The status of ``GET url`` from this host (0: no answer)."""
        done = self.run(["curl", "-s", "-o", "/dev/null", "-m", str(timeout), "-w", "%{http_code}", url], check=False)
        return int(done.stdout or 0)

    def wait_http(self, url: str, *, timeout: float, status: int = 200) -> bool:
        """Whether ``GET url`` from this host answered ``status`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http_status(url) == status:
                return True
            time.sleep(0.2)
        return False

    def pids(self) -> list[int]:
        """Every process living in the namespace (whoever started it)."""
        done = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True)
        return [int(pid) for pid in done.stdout.split()]

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Every process in the namespace gets ``sig``: the host "loses power" (SIGKILL) or shuts down."""
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def destroy(self) -> None:
        for _ in range(50):
            self.kill_all()
            if not self.pids():
                break
            time.sleep(0.1)
        for proc in self.processes:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass  # unkillable (D state): the namespace goes anyway
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)


class Lab:
    """Networks and hosts made by one test run; ``destroy`` removes all of them."""

    def __init__(self, tag: str) -> None:
        if len(tag) > 6:
            raise ValueError("the tag names interfaces: six characters at most")
        self.tag = tag
        self.networks: list[Network] = []
        self.hosts: dict[str, Host] = {}

    def network(self, name: str, prefix: str) -> Network:
        network = Network(self, name, prefix)
        self.networks.append(network)
        return network

    def host(self, name: str, addresses: dict[Network, int]) -> Host:
        host = Host(self, name, len(self.hosts))
        self.hosts[name] = host
        for network, n in addresses.items():
            host.attach(network, n)
        return host

    def destroy(self) -> None:
        for host in self.hosts.values():
            try:
                host.destroy()
            except Exception:  # the other hosts and the bridges go all the same
                pass
        for network in self.networks:
            subprocess.run(["ip", "link", "del", network.bridge], capture_output=True)
        self.hosts.clear()
        self.networks.clear()


def leftovers(prefix: str = "vdc") -> None:
    """Remove namespaces and bridges an earlier, killed run left behind (names starting with ``prefix``)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(prefix):
            for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    for line in links.stdout.splitlines():  # bridges, and veth ends whose namespace outlived its name
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(prefix):
            subprocess.run(["ip", "link", "del", name], capture_output=True)
