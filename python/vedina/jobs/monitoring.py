"""The job gauges: queue depths and the outbox backlog, refreshed in the background.

Every process that runs :meth:`vedina.composition.Services.start` (each
serving worker, ``vedina worker``) refreshes them every ``interval`` seconds,
so the serving process's ``/metrics`` shows them on both profiles (the
gauges keep the most recent value of a live process):

- ``vedina_outbox_backlog``: outbox rows not yet published (dead rows included);
- ``vedina_job_queue_depth{queue=jobs|retry|dead}``: real profile — the
  messages in ``<prefix>.jobs``, in all ``<prefix>.jobs.retry.<ms>`` queues,
  and in ``<prefix>.jobs.dead`` plus dead outbox rows; embedded profile —
  outbox rows ready to run, rows waiting for their back-off, and dead rows.

>>> gauges = JobGauges(resources.relay, resources.broker)
>>> await gauges.refresh()      # or gauges.start() / await gauges.close()
"""

from __future__ import annotations

import asyncio
import logging

from vedina.background import Background
from vedina.storage.broker import Broker, RabbitBroker
from vedina.storage.outbox import OutboxRelay

log = logging.getLogger(__name__)


def _metrics():
    """vedina.metrics, imported on first use: prometheus_client picks its (multiprocess) mode when
    imported, and `vedina serve` may import this module before it sets PROMETHEUS_MULTIPROC_DIR."""
    from vedina import metrics

    return metrics


class JobGauges:
    def __init__(self, relay: OutboxRelay, broker: Broker, *, interval: float = 15.0) -> None:
        self._relay = relay
        self._broker = broker
        self.interval = interval
        self._task = Background("job gauges")

    async def refresh(self) -> dict[str, int]:
        backlog = await self._relay.backlog()
        _metrics().OUTBOX_BACKLOG.set(sum(backlog.values()))
        if isinstance(self._broker, RabbitBroker):
            depths = await self._broker.queue_depths()
            depths["dead"] += backlog["dead"]
        else:
            depths = {"jobs": backlog["ready"], "retry": backlog["waiting"], "dead": backlog["dead"]}
        for queue, depth in depths.items():
            _metrics().JOB_QUEUE_DEPTH.labels(queue).set(depth)
        return depths

    def start(self) -> None:
        self._task.start(self._loop)

    async def close(self) -> None:
        await self._task.stop()

    async def _loop(self) -> None:
        while True:
            delay = self.interval
            try:
                await self.refresh()
            except Exception as exc:  # an outage: the gauges keep their last values; try again soon
                log.warning("job gauges not refreshed", extra={"error": f"{type(exc).__name__}: {exc}"[:200]})
                delay = min(self.interval, 2.0)
            await asyncio.sleep(delay)


def playback_sessions_task(count_live_sessions, *, interval: float = 30.0):
    """A periodic task (run by the scheduler's leader only: counting scans the store) that sets
    ``vedina_playback_sessions_active``."""
    from vedina.jobs.scheduler import PeriodicTask

    # Exposed (0) by every process that may lead, so the series exists before the first count;
    # the leader's count, newer, wins within one interval (use max() across instances).
    _metrics().PLAYBACK_SESSIONS.set(0)

    async def run(now) -> None:
        _metrics().PLAYBACK_SESSIONS.set(await count_live_sessions())

    return PeriodicTask("playback.sessions_gauge", interval, run)


def declare_job_series(topics) -> None:
    """Zero-valued job series for every topic this process handles, so they exist before their first
    event: ``increase()`` (dashboards, the dead-letter alert) cannot see a first increment otherwise."""
    metrics = _metrics()
    for topic in topics:
        metrics.JOB_RETRIES.labels(topic)
        metrics.JOB_DEAD_LETTERS.labels(topic)
        for outcome in ("ok", "failed"):
            metrics.JOB_DURATION.labels(topic, outcome)
