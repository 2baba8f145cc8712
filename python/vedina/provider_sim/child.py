"""``vedina serve`` with PAYMENT_PROVIDER=sim: the simulator as a child process.

When STRIPE_API_BASE is empty the adapter talks to ``http://127.0.0.1:PROVIDER_SIM_PORT``.
If a simulator already answers there (another ``vedina serve``, a test fixture) it is
reused; otherwise one is started, told to deliver its events to this server's
``/api/webhooks/stripe`` signed with :func:`vedina.config.provider_webhook_secret`
(it derives the same secret from the same environment), and stopped when serve exits
(it also exits by itself if serve dies without stopping it).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vedina.config import Settings
from vedina.provider_sim.client import SimControl

log = logging.getLogger("vedina.provider_sim")
START_TIMEOUT_SECONDS = 15


def _webhook_url(settings: Settings) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/api/webhooks/stripe"


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def provider_sim_for(settings: Settings) -> Iterator[str | None]:
    """The simulator's base URL while the block runs (None: no simulator is needed)."""
    if settings.payment_provider != "sim" or settings.stripe_api_base:
        yield None
        return
    port = settings.provider_sim_port
    base_url = f"http://127.0.0.1:{port}"
    control = SimControl(base_url, timeout=2)
    if control.is_simulator():
        log.info("payment provider: reusing the simulator at %s", base_url)
        yield base_url
        return
    if _port_taken(port):
        raise RuntimeError(f"PROVIDER_SIM_PORT {port} is used by a program that is not vedina provider-sim")
    process = subprocess.Popen(
        [sys.executable, "-m", "vedina.cli", "provider-sim", "--port", str(port),
         "--webhook-url", _webhook_url(settings), "--exit-with-parent"],
        # The secret travels in the environment (not argv): the child derives the same one.
        env={**os.environ, "SESSION_SECRET": settings.session_secret}, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not control.is_simulator():
            if process.poll() is not None and not control.is_simulator():
                raise RuntimeError(f"vedina provider-sim exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vedina provider-sim did not answer on port {port}")
            time.sleep(0.1)
        log.info("payment provider: simulator started at %s (pid %d)", base_url, process.pid)
        yield base_url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
