"""The job metrics on a serving process's /metrics: queue depths and the outbox backlog (both profiles),
and, where the periodic tasks run in the serving process (embedded), their runs."""

from __future__ import annotations

import re
import time

import httpx
import pytest


@pytest.mark.parametrize("profile", ["embedded", "real"])
def test_metrics_show_queue_depths_and_the_outbox_backlog(live_servers, profile):
    live = live_servers("granian", profile)
    # Scheduled-task runs show on the /metrics of whichever process leads; the session's servers
    # share one database, so that may be another server (tests/jobs/test_scheduler.py covers them).
    wanted = ['vedina_job_queue_depth{queue="dead"}']
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        deadline = time.monotonic() + 40
        while not all(name in (text := http.get("/metrics").text) for name in wanted):
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.3)
    for queue in ("jobs", "retry", "dead"):
        assert re.search(rf'^vedina_job_queue_depth\{{queue="{queue}"\}} \d+\.0$', text, re.M), queue
    assert re.search(r"^vedina_outbox_backlog \d+\.0$", text, re.M)
