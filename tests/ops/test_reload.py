"""SIGHUP on one host: every worker replaced, no request failed (vedina.http.rolling)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import LiveServer, signed_in, wait_for
from tests.ops.observability import sample_value, scrape
from tests.ops.zero_downtime import RequestLoop, worker_pids

pytestmark = pytest.mark.ops  # about 35 s per profile


def pool_max(base_url: str) -> float:
    """A livesum gauge every worker sets: the sum over the live workers only."""
    return sample_value(scrape(base_url), "vedina_db_pool_max_connections")


@pytest.mark.parametrize("profile", ["embedded", "real"], indirect=True)
def test_sighup_twice_replaces_every_worker_without_a_failed_request(profile, live_data):
    env = live_data(profile)
    live = LiveServer(server="granian", env=env, workers=2)
    try:
        main_pid = live.process.pid
        before = worker_pids(main_pid)
        assert len(before) == 2
        gauge_before = pool_max(live.base_url)
        assert gauge_before > 0
        user = signed_in(live.base_url, env)
        # Requests with a body too: during an old worker's grace they go through the
        # Connection: close wrapper, which must let the app read the body.
        requests = ["/health", ("PATCH", "/api/users/me", {"display_name": "Reloading"}), "/api/movies?limit=5"]
        started = time.monotonic()
        with RequestLoop(live.base_url, requests, keepalive=2, fresh=1,
                         headers={"authorization": user.headers["authorization"]}) as loop:
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
        user.close()
        after = worker_pids(main_pid)
        assert loop.failures == [], loop.failures[:10]
        assert loop.total >= 2000, f"only {loop.total} requests in {elapsed:.1f}s"
        assert len(seen) == 6 and not after & before  # two generations of new workers
        assert live.process.poll() is None
        # The old workers' gauges were dropped: two live workers, not six.
        assert pool_max(live.base_url) == gauge_before
    finally:
        live.stop()


@pytest.mark.parametrize("profile", ["embedded", "real"], indirect=True)
def test_a_worker_that_dies_during_a_reload_is_replaced_once_and_its_gauges_dropped(profile, live_data):
    live = LiveServer(server="granian", env=live_data(profile), workers=2)
    try:
        main_pid = live.process.pid
        before = worker_pids(main_pid)
        gauge_before = pool_max(live.base_url)
        seen = set(before)

        def workers() -> set[int]:
            pids = worker_pids(main_pid)
            seen.update(pids)
            return pids

        os.kill(main_pid, signal.SIGHUP)
        # The first replacement is starting: an old worker dies meanwhile.
        wait_for(lambda: len(workers()) == 3, timeout=30, what="a replacement starting")
        os.kill(next(iter(before)), signal.SIGKILL)
        wait_for(lambda: len(pids := workers()) == 2 and not pids & before, timeout=60, what="both workers replaced")
        deadline = time.monotonic() + 3  # Granian's crash report must not replace a healthy worker later
        while time.monotonic() < deadline:
            workers()
            time.sleep(0.05)
        assert len(seen - before) == 2, f"{len(seen - before)} workers started for 2"
        assert pool_max(live.base_url) == gauge_before
        # A crash outside a reload: respawned, and the dead worker's gauges dropped.
        victim = next(iter(workers()))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(pids := workers()) == 2 and victim not in pids, timeout=60, what="the worker respawned")
        wait_for(lambda: pool_max(live.base_url) == gauge_before, timeout=30, what="the gauges of two workers")
        assert live.process.poll() is None
    finally:
        live.stop()
