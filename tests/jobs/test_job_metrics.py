"""The job metrics on a serving process's /metrics: queue depths and the outbox backlog (both profiles),
and, where jobs run in-process, the job counters and durations."""

from __future__ import annotations

import re
import time

import httpx
import pytest


@pytest.mark.parametrize("profile", ["embedded", "real"])
def test_metrics_show_queue_depths_and_the_outbox_backlog(live_servers, profile):
    live = live_servers("granian", profile)
    with httpx.Client(base_url=live.base_url, timeout=10) as http:
        deadline = time.monotonic() + 20
        while 'vedina_job_queue_depth{queue="dead"}' not in (text := http.get("/metrics").text):
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.3)
    for queue in ("jobs", "retry", "dead"):
        assert re.search(rf'^vedina_job_queue_depth\{{queue="{queue}"\}} \d+\.0$', text, re.M), queue
    assert re.search(r"^vedina_outbox_backlog \d+\.0$", text, re.M)
    if profile == "embedded":  # the demo's probe jobs ran in the server's workers
        assert 'vedina_job_duration_seconds_count{outcome="ok",topic="media.probe"}' in text
