"""Job brokers: RabbitMQ for the real profile, in-process dispatch for the embedded one.

A message is ``{"topic": ..., "payload": {...}}`` with a message id that
consumers use to ignore duplicates (the outbox delivers at least once).

RabbitMQ layout (declared idempotently by both publisher and consumer):

- queue ``<prefix>.jobs``, durable, dead-lettering to ``<prefix>.jobs.dead``;
- queue ``<prefix>.jobs.dead``, durable: messages whose handler failed.

Publishing uses publisher confirms and persistent messages, so a publish that
returned is on the broker's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from vedina.storage.message_ledger import Busy, MessageLedger

log = logging.getLogger(__name__)

OUTAGE_REQUEUE_DELAY = 1.0  # seconds before a job that met an outage goes back to the queue
PUBLISH_TIMEOUT = 5.0  # seconds for a confirmed publish (or a ping) before the broker counts as down

JobHandler = Callable[[dict[str, Any]], Awaitable[None]]


class BrokerUnavailable(Exception):
    """The broker cannot take messages now (down, unreachable, reconnecting).

    Not the message's fault: the outbox keeps it without counting an attempt.
    """


class Broker(Protocol):
    async def publish(self, topic: str, payload: dict[str, Any], *, message_id: str) -> None: ...

    def attach_handlers(self, handlers: dict[str, JobHandler], *, ledger: MessageLedger | None = None) -> None:
        """The job handlers this process runs (the composition root builds them), and the
        ledger of handled message ids that makes a repeated delivery a no-op."""
        ...


async def handle_once(ledger: MessageLedger | None, handler: JobHandler, topic: str, payload: dict, message_id: str) -> bool:
    """Run ``handler`` unless ``message_id`` was handled before; True when it ran.
    Raises :class:`~vedina.storage.message_ledger.Busy` while another consumer runs it."""
    if ledger is None or not message_id:
        await handler(payload)
        return True
    if not await ledger.claim(message_id, topic):
        log.info("duplicate job message skipped", extra={"message_id": message_id, "topic": topic})
        return False
    try:
        await handler(payload)
    except BaseException:
        await ledger.release(message_id)
        raise
    await ledger.done(message_id)
    return True

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class InProcessBroker:
    """Runs the handler for each message at once, in this process.

    A failing handler makes ``publish`` raise, so the outbox keeps the row and
    retries it later, up to its attempt limit.
    """

    def __init__(self, handlers: dict[str, JobHandler] | None = None, *, ledger: MessageLedger | None = None) -> None:
        self._handlers = handlers or {}
        self._ledger = ledger

    def attach_handlers(self, handlers: dict[str, JobHandler], *, ledger: MessageLedger | None = None) -> None:
        self._handlers = handlers
        self._ledger = ledger

    async def publish(self, topic: str, payload: dict[str, Any], *, message_id: str) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            raise LookupError(f"no handler for job topic {topic!r}")
        await handle_once(self._ledger, handler, topic, payload, message_id)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RabbitBroker:
    def __init__(self, url: str, *, prefix: str) -> None:
        self._url = url
        self.queue_name = f"{prefix}.jobs"
        self.dead_queue_name = f"{prefix}.jobs.dead"
        self._connection = None
        self._channel = None
        self._handlers: dict[str, JobHandler] = {}
        self._ledger: MessageLedger | None = None
        self._connecting = asyncio.Lock()

    def attach_handlers(self, handlers: dict[str, JobHandler], *, ledger: MessageLedger | None = None) -> None:
        self._handlers = handlers
        self._ledger = ledger

    async def connect(self) -> None:
        import aio_pika

        # The relay and the consumer of `vedina worker` both connect on first use: one
        # connection, and the channel published only once the queues exist (a message
        # published to a queue not declared yet is dropped by the default exchange).
        async with self._connecting:
            if self._channel is not None:
                return
            connection = await aio_pika.connect_robust(self._url, timeout=10)
            channel = await connection.channel(publisher_confirms=True)
            await self.declare(channel)
            self._connection, self._channel = connection, channel

    async def declare(self, channel) -> Any:
        await channel.declare_queue(self.dead_queue_name, durable=True)
        return await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dead_queue_name},
        )

    async def publish(self, topic: str, payload: dict[str, Any], *, message_id: str) -> None:
        import aio_pika

        message = aio_pika.Message(
            body=orjson.dumps({"topic": topic, "payload": payload}),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=topic,
        )
        async with self._unavailable_as_error():
            if self._channel is None:
                await self.connect()
            await asyncio.wait_for(
                self._channel.default_exchange.publish(message, routing_key=self.queue_name), PUBLISH_TIMEOUT
            )

    async def ping(self) -> None:
        """A real round trip: a passive declare of the jobs queue (a reconnecting
        connection is not "closed", but cannot answer this)."""
        async with self._unavailable_as_error():
            if self._channel is None:
                await self.connect()
            await asyncio.wait_for(self._channel.declare_queue(self.queue_name, passive=True), PUBLISH_TIMEOUT)

    @contextlib.asynccontextmanager
    async def _unavailable_as_error(self):
        """aio-pika's connection and channel errors, translated once, here."""
        import aio_pika.exceptions as amqp

        try:
            yield
        except (amqp.AMQPConnectionError, amqp.ChannelInvalidStateError, amqp.ChannelClosed,
                ConnectionError, OSError, asyncio.TimeoutError) as exc:
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
            self._channel = None

    async def consume(self, handlers: dict[str, JobHandler] | None = None, *, prefetch: int = 10, stop=None) -> None:
        """Run handlers (default: the attached ones) for queued messages until ``stop`` (an asyncio.Event) is set.

        A message whose handler raises (or whose topic has no handler) is
        rejected without requeue, so RabbitMQ moves it to the dead-letter queue.
        """
        import asyncio

        handlers = self._handlers if handlers is None else handlers
        if self._channel is None:
            await self.connect()
        await self._channel.set_qos(prefetch_count=prefetch)
        queue = await self.declare(self._channel)
        stop = stop or asyncio.Event()

        async def on_message(message) -> None:
            try:
                envelope = orjson.loads(message.body)
                handler = handlers[envelope["topic"]]
                await handle_once(self._ledger, handler, envelope["topic"], envelope["payload"], message.message_id or "")
            except Exception as exc:
                from vedina.errors import BackendUnavailable, translate

                if isinstance(exc, Busy) or isinstance(translate(exc), BackendUnavailable):
                    # Not a poison message: handled elsewhere right now, or an outage.
                    log.warning("job postponed", extra={"message_id": message.message_id, "reason": type(exc).__name__})
                    await asyncio.sleep(OUTAGE_REQUEUE_DELAY)
                    await message.nack(requeue=True)
                    return
                log.exception("job failed; dead-lettered", extra={"message_id": message.message_id})
                await message.reject(requeue=False)
                return
            await message.ack()

        tag = await queue.consume(on_message)
        try:
            await stop.wait()
        finally:
            await queue.cancel(tag)
