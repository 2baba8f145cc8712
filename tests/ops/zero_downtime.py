"""Helpers of the zero-downtime tests: worker pids, a request loop, restartable instances.

``python -m tests.ops.zero_downtime restart STATE_FILE`` is the per-instance restart
command the rolling-restart test hands to deploy/rolling-restart (production passes
``systemctl restart vedina-api@a``): SIGTERM, wait for exit 0, start again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

VEDINA = str(Path(sys.executable).with_name("vedina"))


def worker_pids(main_pid: int) -> set[int]:
    """The Granian worker processes of a `vedina serve` main process."""
    pids = set()
    for task in Path(f"/proc/{main_pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # a thread that ended since the listing
            continue
        for child in children:
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:  # reaped since the listing
                continue
            if b"provider-sim" not in cmdline:
                pids.add(int(child))
    return pids


# A request of the loop: a path to GET, or (method, path, JSON body).
Request = str | tuple[str, str, object]


class RequestLoop:
    """Threads sending requests until stopped: ``keepalive`` clients reusing connections and
    ``fresh`` ones opening a connection per request; every failure is kept."""

    def __init__(self, base_url: str, paths: list[Request], *, keepalive: int = 2, fresh: int = 1,
                 headers: dict[str, str] | None = None, retry_stale: bool = False) -> None:
        self.base_url = base_url
        # RFC 9112 §9.3.1: a client may retry an idempotent request once when a reused
        # connection closes before any answer byte (browsers do). Counted in ``retried``.
        self.retry_stale = retry_stale
        self.retried = 0
        self.paths = paths
        self.headers = headers or {}
        self.statuses: Counter[int] = Counter()
        self.failures: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(True,)) for _ in range(keepalive)]
        self._threads += [threading.Thread(target=self._run, args=(False,)) for _ in range(fresh)]

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.failures)

    def _record(self, path: Request, response: httpx.Response | None, error: Exception | None) -> None:
        with self._lock:
            if error is not None:
                self.failures.append((str(path), repr(error)))
            else:
                self.statuses[response.status_code] += 1
                if response.status_code != 200:
                    self.failures.append((str(path), f"{response.status_code} {response.text[:200]}"))

    def _run(self, keepalive: bool) -> None:
        client = httpx.Client(base_url=self.base_url, timeout=15, headers=self.headers)
        i = 0
        try:
            while not self._stop.is_set():
                path = self.paths[i % len(self.paths)]
                i += 1
                method, url, body = ("GET", path, None) if isinstance(path, str) else path
                try:
                    if keepalive:
                        try:
                            response = client.request(method, url, json=body)
                        except httpx.RemoteProtocolError as stale:
                            if not (self.retry_stale and "without sending a response" in str(stale)):
                                raise
                            with self._lock:
                                self.retried += 1
                            response = client.request(method, url, json=body)
                    else:
                        response = httpx.request(method, self.base_url + url, json=body, timeout=15,
                                                 headers={**self.headers, "connection": "close"})
                    self._record(path, response, None)
                except httpx.HTTPError as error:
                    self._record(path, None, error)
        finally:
            client.close()

    def __enter__(self) -> RequestLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


# -- instances that a command can restart ------------------------------------------------


def start_instance(state_file: Path) -> int:
    """Start `vedina serve` as the state file describes (argv, env, log); record its pid."""
    state = json.loads(state_file.read_text())
    process = subprocess.Popen(
        state["argv"], env={**os.environ, **state["env"]}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=open(state["log"], "ab"),
    )
    state["pid"] = process.pid
    state_file.write_text(json.dumps(state))
    return process.pid


def stop_instance(state_file: Path, *, timeout: float = 60) -> None:
    """SIGTERM the instance and wait until it is gone (it may not be our child: poll /proc)."""
    state = json.loads(state_file.read_text())
    pid = state["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            raise TimeoutError(f"instance {pid} did not stop within {timeout}s")
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def main(argv: list[str]) -> int:
    command, state_file = argv[0], Path(argv[1])
    if command == "restart":
        stop_instance(state_file)
        start_instance(state_file)
        return 0
    print(f"unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
