"""deploy/rolling-restart: two instances behind the real nginx (nginx/vedina.conf with
nginx/upstream-instances.conf), restarted one at a time under a request loop: no request fails.

The real profile only: instances of one deployment share MariaDB and Redis (a token
signed by one verifies on the other, writers' invalidations reach both), which is what
several instances means in production; the embedded profile is one host, one instance.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from string import Template

import httpx
import pytest

from tests.conftest import VEDINA, free_port, wait_for
from tests.http.nginx_helper import TEMPLATE, Nginx, nginx_binary
from tests.ops.zero_downtime import RequestLoop, start_instance, stop_instance

pytestmark = [pytest.mark.ops, pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "rolling-restart"
UPSTREAM = REPO / "nginx" / "upstream-instances.conf"


def nginx_servers(prefix: Path, servers_file: Path) -> str:
    """The shipped server block, its upstream replaced by the several-instances one, plus an
    access log naming the upstream of each request (to see which instance answered)."""
    site = Template(TEMPLATE.read_text()).safe_substitute(
        VEDINA_LISTEN="127.0.0.1:@PORT@", VEDINA_SERVER_NAME="localhost", VEDINA_UPSTREAM="unused:1",
        VEDINA_MEDIA_ROOT=str(prefix / "media"))
    site, removed = re.subn(r"(?ms)^upstream vedina_app \{.*?^\}\n", "", site)
    assert removed == 1
    upstream = Template(UPSTREAM.read_text()).safe_substitute(VEDINA_UPSTREAM_SERVERS=str(servers_file))
    site = site.replace("server_tokens off;", f"server_tokens off;\n    access_log {prefix}/upstreams.log upstreams;", 1)
    return "log_format upstreams '$msec $upstream_addr $status';\n" + upstream + site


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def answered_by(log: Path, *, since: float = 0, until: float = float("inf")) -> set[str]:
    addresses = set()
    for line in log.read_text().splitlines():
        stamp, upstream, _status = line.split(" ", 2)
        if since <= float(stamp) <= until:
            addresses.update(a.strip() for a in upstream.split(","))
    return addresses


@pytest.mark.parametrize("profile", ["real"], indirect=True)
def test_rolling_restart_through_nginx_fails_no_request_and_both_instances_serve_before_and_after(
        profile, live_data, tmp_path):
    env = live_data(profile)
    states = {}
    for name in ("a", "b"):
        port = free_port()
        state = tmp_path / f"instance-{name}.json"
        state.write_text(json.dumps({
            "argv": [VEDINA, "serve", "--server", "granian", "--workers", "2", "--port", str(port)],
            "env": env, "log": str(tmp_path / f"instance-{name}.log"), "port": port,
        }))
        start_instance(state)
        states[name] = state
    nginx = None
    try:
        for state in states.values():
            port = json.loads(state.read_text())["port"]
            wait_for(lambda port=port: ready(port), timeout=60, what=f"instance on {port} ready")
        pids_before = {name: json.loads(state.read_text())["pid"] for name, state in states.items()}
        servers_file = tmp_path / "nginx" / "vedina-servers.conf"
        servers_file.parent.mkdir()
        instances = []
        for name, state in states.items():
            port = json.loads(state.read_text())["port"]
            restart = f"{shlex.quote(sys.executable)} -m tests.ops.zero_downtime restart {shlex.quote(str(state))}"
            instances += ["--instance", name, f"127.0.0.1:{port}", restart]
        subprocess.run([sys.executable, str(SCRIPT), "--write-only", "--servers-file", str(servers_file), *instances],
                       check=True, timeout=30)
        nginx = Nginx(tmp_path / "nginx", nginx_servers(tmp_path / "nginx", servers_file), workers=1)
        reload = " ".join(shlex.quote(part) for part in [nginx.binary, *nginx._flags, "-s", "reload"])
        log = tmp_path / "nginx" / "upstreams.log"

        # nginx's reload closes the idle keep-alive connections of its old workers: a client
        # sending on one at that instant retries (retry_stale), as browsers do; nothing else may fail.
        with RequestLoop(nginx.base_url, ["/health", "/api/movies?limit=5"], keepalive=2, fresh=1,
                         retry_stale=True) as loop:
            wait_for(lambda: loop.total >= 300, timeout=30, what="traffic before the restart")
            started = time.time()
            script = subprocess.run(
                [sys.executable, str(SCRIPT), "--servers-file", str(servers_file), "--nginx-reload", reload,
                 "--drain-seconds", "2", "--settle-seconds", "1", "--ready-timeout", "60", *instances],
                cwd=REPO, capture_output=True, text=True, timeout=300)
            finished = time.time()
            count_at_end = loop.total
            wait_for(lambda: loop.total >= count_at_end + 300, timeout=30, what="traffic after the restart")

        print(f"rolling restart {finished - started:.1f}s, {loop.total} requests: {dict(loop.statuses)}, "
              f"{loop.retried} retried on a closed keep-alive connection")
        assert script.returncode == 0, script.stderr
        assert loop.failures == [], loop.failures[:10]
        assert loop.retried <= 8  # at most one per keep-alive client and nginx reload (4)
        addresses = {f"127.0.0.1:{json.loads(s.read_text())['port']}" for s in states.values()}
        time.sleep(1.5)  # nginx writes the log line after the answer
        assert answered_by(log, until=started) == addresses
        assert answered_by(log, since=finished) == addresses
        pids_after = {name: json.loads(state.read_text())["pid"] for name, state in states.items()}
        assert all(pids_after[name] != pids_before[name] for name in states)
        assert "down" not in servers_file.read_text()
    finally:
        if nginx is not None:
            nginx.stop()
        for state in states.values():
            try:
                stop_instance(state)
            except (ProcessLookupError, TimeoutError):
                pass
