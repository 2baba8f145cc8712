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
