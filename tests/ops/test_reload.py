"""SIGHUP on one host: every worker replaced, no request failed (vedina.http.rolling)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import LiveServer, wait_for
from tests.ops.zero_downtime import RequestLoop, worker_pids

pytestmark = pytest.mark.ops  # about 25 s per profile


@pytest.mark.parametrize("profile", ["embedded", "real"], indirect=True)
def test_sighup_twice_replaces_every_worker_without_a_failed_request(profile, live_data):
    live = LiveServer(server="granian", env=live_data(profile), workers=2)
    try:
        main_pid = live.process.pid
        before = worker_pids(main_pid)
        assert len(before) == 2
        started = time.monotonic()
        with RequestLoop(live.base_url, ["/health", "/api/movies?limit=5"], keepalive=2, fresh=1) as loop:
            wait_for(lambda: loop.total >= 300, timeout=30, what="traffic before the reload")
            seen = set(before)
            for _ in range(2):
                current = worker_pids(main_pid)
                os.kill(main_pid, signal.SIGHUP)
                # Done when both workers are new ones and the old ones are gone.
                wait_for(lambda current=current: len(pids := worker_pids(main_pid)) == 2 and not pids & current,
                         timeout=60, what="both workers replaced")
                seen |= worker_pids(main_pid)
            total_at_reload_end = loop.total
            wait_for(lambda: loop.total >= total_at_reload_end + 300, timeout=30, what="traffic after the reload")
        elapsed = time.monotonic() - started
        after = worker_pids(main_pid)
        assert loop.failures == [], loop.failures[:10]
        assert loop.total >= 2000, f"only {loop.total} requests in {elapsed:.1f}s"
        assert len(seen) == 6 and not after & before  # two generations of new workers
        assert live.process.poll() is None
    finally:
        live.stop()
