"""``vedina worker``: relay the outbox and, with RabbitMQ, consume and run jobs."""

from __future__ import annotations

import asyncio
import logging
import signal

from vedina.config import Settings
from vedina.jobs.registry import job_handlers
from vedina.storage.broker import RabbitBroker
from vedina.storage.resources import open_resources

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    resources = await open_resources(settings)
    resources.start_relay()
    try:
        if isinstance(resources.broker, RabbitBroker):
            log.info("consuming jobs", extra={"queue": resources.broker.queue_name})
            await resources.broker.consume(job_handlers(resources), stop=stop)
        else:
            log.info("embedded profile: jobs run in-process as the outbox is relayed")
            await stop.wait()
    finally:
        await resources.close()
