"""``vedina worker``: relay the outbox, run the periodic tasks and, with RabbitMQ, consume and run jobs.

SIGTERM or SIGINT stops it gracefully: the consumer is cancelled (no new
message is taken), the jobs in hand get ``grace`` seconds to finish and be
acknowledged (any still running then goes back to the queue unacknowledged),
a running periodic task likewise, and the scheduler lease is given up so
another worker leads at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from vedina.composition import open_services
from vedina.config import Settings
from vedina.metrics import serve_worker_metrics
from vedina.storage.broker import SHUTDOWN_GRACE, RabbitBroker

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None, grace: float = SHUTDOWN_GRACE) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settings.worker_metrics_port:
        serve_worker_metrics(settings.worker_metrics_port)
    services = await open_services(settings)
    services.start(scheduler=True)
    broker = services.resources.broker
    try:
        if isinstance(broker, RabbitBroker):
            log.info("consuming jobs", extra={"queue": broker.queue_name})
            await broker.consume(stop=stop, grace=grace)
        else:
            log.info("embedded profile: jobs run in-process as the outbox is relayed")
            await stop.wait()
        log.info("worker stopping")
    finally:
        await services.close()
