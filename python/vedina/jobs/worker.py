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
from vedina.error_tracking import init_error_tracking
from vedina.metrics import RequestRecorder, add_flush_hook, remove_flush_hook, resource_sampler, serve_worker_metrics
from vedina.storage.broker import SHUTDOWN_GRACE, RabbitBroker

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None, grace: float = SHUTDOWN_GRACE) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    init_error_tracking(settings)
    if settings.worker_metrics_port:
        serve_worker_metrics(settings.worker_metrics_port)
    services = await open_services(settings)
    services.start(scheduler=True)
    broker = services.resources.broker
    # Buffered counters (near caches) and the pool/JWT-cache gauges, flushed each second as in a server.
    flusher, sampler = RequestRecorder(), resource_sampler(services.resources.engine, services.token_keys.verifier)
    add_flush_hook(sampler)
    flusher.start()
    try:
        if isinstance(broker, RabbitBroker):
            log.info("consuming jobs", extra={"queue": broker.queue_name})
            await broker.consume(stop=stop, grace=grace)
        else:
            log.info("embedded profile: jobs run in-process as the outbox is relayed")
            await stop.wait()
        log.info("worker stopping")
    finally:
        await flusher.close()
        remove_flush_hook(sampler)
        await services.close()
