"""``vedina worker``: relay the outbox and, with RabbitMQ, consume and run jobs."""

from __future__ import annotations

import asyncio
import logging
import signal

from vedina.composition import open_services
from vedina.config import Settings
from vedina.storage.broker import RabbitBroker

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    services = await open_services(settings)
    services.start()
    broker = services.resources.broker
    try:
        if isinstance(broker, RabbitBroker):
            log.info("consuming jobs", extra={"queue": broker.queue_name})
            await broker.consume(stop=stop)
        else:
            log.info("embedded profile: jobs run in-process as the outbox is relayed")
            await stop.wait()
    finally:
        await services.close()
