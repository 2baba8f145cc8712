"""Job brokers: RabbitMQ for the real profile, in-process dispatch for the embedded one.

A message is ``{"topic": ..., "payload": {...}}`` with a message id that
consumers use to ignore duplicates (the outbox delivers at least once).

RabbitMQ layout (declared idempotently by both publisher and consumer):

- queue ``<prefix>.jobs``, durable, dead-lettering to ``<prefix>.jobs.dead``
  (only a message that cannot be read at all is rejected into it);
- queue ``<prefix>.jobs.dead``, durable: messages whose last try failed;
- queues ``<prefix>.jobs.retry.<ms>``, durable, declared on first use: a
  message waits there ``<ms>`` milliseconds (the queue's ``x-message-ttl``) and
  is then dead-lettered back to ``<prefix>.jobs``. Every message of one queue
  has the same delay, so the one at the head always expires first: a short
  delay never waits behind a long one (RabbitMQ expires only at the head).
  The delays form a grid (:data:`RETRY_LEVELS_MS`, doubling from 50 ms); the
  policy's jittered delay goes to the nearest level. A retry queue left unused
  for its delay plus a minute is deleted by RabbitMQ (``x-expires``); it is
  declared again right before each use, so it never goes with a message in it.

A handler that raises is a counted failure: the consumer republishes the
message (confirmed) with its failure count in the ``x-vedina-attempts`` header
to the retry queue of its back-off (:mod:`vedina.jobs.retry`), or to the dead
queue after the topic's last try, and only then acks the original. Outages
and :class:`~vedina.storage.message_ledger.Busy` are requeued uncounted.

Publishing uses publisher confirms and persistent messages, so a publish that
returned is on the broker's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from vedina.jobs.retry import RetryPolicies
from vedina.storage.message_ledger import Busy, MessageLedger

log = logging.getLogger(__name__)


def _metrics():
    """vedina.metrics, imported on first use: prometheus_client picks its (multiprocess) mode when
    imported, and `vedina serve` may import this module before it sets PROMETHEUS_MULTIPROC_DIR."""
    from vedina import metrics

    return metrics

OUTAGE_REQUEUE_DELAY = 1.0  # seconds before a job that met an outage goes back to the queue
PUBLISH_TIMEOUT = 5.0  # seconds for a confirmed publish (or a ping) before the broker counts as down
SHUTDOWN_GRACE = 60.0  # seconds the jobs in hand may take to finish once the consumer stops
ATTEMPTS_HEADER = "x-vedina-attempts"  # counted failures so far (absent: none)
ERROR_HEADER = "x-vedina-error"  # the last failure, on retried and dead messages
RETRY_LEVELS_MS = tuple(50 * 2**k for k in range(17))  # 50 ms .. 54.6 min
RETRY_QUEUE_IDLE_MS = 60_000  # a retry queue unused for its delay plus this is deleted by RabbitMQ
# A retry queue's arguments follow from its name (declare_retry): changing this constant or the
# arguments needs new names, since RabbitMQ refuses to redeclare a queue with other arguments.

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

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def is_outage(exc: BaseException) -> bool:
    """Not the message's failure: handled elsewhere right now, or a backing service is down."""
    from vedina.errors import BackendUnavailable, translate

    return isinstance(exc, Busy | BrokerUnavailable) or isinstance(translate(exc), BackendUnavailable)


async def handle_once(ledger: MessageLedger | None, handler: JobHandler, topic: str, payload: dict, message_id: str) -> bool:
    """Run ``handler`` unless ``message_id`` was handled before; True when it ran.
    Raises :class:`~vedina.storage.message_ledger.Busy` while another consumer runs it.
    Records the run in ``vedina_job_duration_seconds`` by topic and outcome."""
    started, outcome = time.perf_counter(), "failed"
    try:
        if ledger is None or not message_id:
            await handler(payload)
            outcome = "ok"
            return True
        if not await ledger.claim(message_id, topic):
            log.info("duplicate job message skipped", extra={"message_id": message_id, "topic": topic})
            outcome = "duplicate"
            return False
        try:
            await handler(payload)
        except BaseException:
            await ledger.release(message_id)
            raise
        await ledger.done(message_id)
        outcome = "ok"
        return True
    except asyncio.CancelledError:
        outcome = "cancelled"  # a worker stopping: the message goes back to the queue
        raise
    except Exception as exc:
        outcome = "postponed" if is_outage(exc) else "failed"
        raise
    finally:
        _metrics().JOB_DURATION.labels(topic, outcome).observe(time.perf_counter() - started)


def retry_level_ms(delay: float) -> int:
    """The retry queue for ``delay`` seconds: the nearest level of the grid (in ratio)."""
    if delay * 1000 <= RETRY_LEVELS_MS[0]:
        return RETRY_LEVELS_MS[0]
    index = round(math.log2(delay * 1000 / RETRY_LEVELS_MS[0]))
    return RETRY_LEVELS_MS[min(index, len(RETRY_LEVELS_MS) - 1)]


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
    def __init__(self, url: str, *, prefix: str, policies: RetryPolicies | None = None) -> None:
        self._url = url
        self.queue_name = f"{prefix}.jobs"
        self.dead_queue_name = f"{prefix}.jobs.dead"
        self.retry_prefix = f"{prefix}.jobs.retry."
        self.retry_policies = policies or RetryPolicies()
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

    async def open_channel(self):
        """A channel of its own (publisher confirms on), for work that must not disturb the
        shared one: the dead-letter commands. The caller closes it."""
        if self._channel is None:
            await self.connect()
        return await self._connection.channel(publisher_confirms=True)

    async def declare(self, channel) -> Any:
        await channel.declare_queue(self.dead_queue_name, durable=True)
        return await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dead_queue_name},
        )

    async def declare_retry(self, channel, level_ms: int) -> Any:
        """The retry queue of one delay level; its arguments follow from its name, so a
        redeclaration never conflicts."""
        return await channel.declare_queue(
            f"{self.retry_prefix}{level_ms}",
            durable=True,
            arguments={
                "x-message-ttl": level_ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": self.queue_name,
                "x-expires": level_ms + RETRY_QUEUE_IDLE_MS,
            },
        )

    def message(self, body: bytes, *, topic: str, message_id: str, headers: dict[str, Any] | None = None):
        import aio_pika

        return aio_pika.Message(
            body=body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            type=topic,
            headers=headers or {},
        )

    async def publish(self, topic: str, payload: dict[str, Any], *, message_id: str) -> None:
        message = self.message(orjson.dumps({"topic": topic, "payload": payload}), topic=topic, message_id=message_id)
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

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting: ``jobs`` (ready), ``retry`` (all delay levels), ``dead``."""
        async with self._unavailable_as_error():
            if self._channel is None:
                await self.connect()
            jobs = await self.declare(self._channel)
            dead = await self._channel.declare_queue(self.dead_queue_name, durable=True)
            retry = 0
            for level in RETRY_LEVELS_MS:
                retry += (await self.declare_retry(self._channel, level)).declaration_result.message_count
        return {"jobs": jobs.declaration_result.message_count, "retry": retry,
                "dead": dead.declaration_result.message_count}

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

    async def consume(
        self, handlers: dict[str, JobHandler] | None = None, *, prefetch: int = 10, stop=None,
        grace: float = SHUTDOWN_GRACE,
    ) -> None:
        """Run handlers (default: the attached ones) for queued messages until ``stop`` (an asyncio.Event) is set.

        A message whose handler raises (or whose topic has no handler) is retried
        per its topic's policy, then moved to the dead queue; one that cannot be
        read is rejected into it at once. When ``stop`` is set, the consumer is
        cancelled (no new message is taken) and the jobs in hand get ``grace``
        seconds to finish and be acknowledged; any still running then is
        cancelled and goes back to the queue unacknowledged: nothing is lost.
        """
        handlers = self._handlers if handlers is None else handlers
        if self._channel is None:
            await self.connect()
        await self._channel.set_qos(prefetch_count=prefetch)
        queue = await self.declare(self._channel)
        stop = stop or asyncio.Event()
        in_hand: set[asyncio.Task] = set()

        async def on_message(message) -> None:
            task = asyncio.current_task()
            in_hand.add(task)
            try:
                await self._deliver(handlers, message)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):  # back to the queue now (closing the channel would, too)
                    await asyncio.wait_for(message.nack(requeue=True), 1)
                raise
            finally:
                in_hand.discard(task)

        tag = await queue.consume(on_message)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):  # a dead channel takes no more messages anyway
                await queue.cancel(tag)
            if in_hand:
                log.info("finishing the jobs in hand", extra={"jobs": len(in_hand), "grace_seconds": grace})
                _, running = await asyncio.wait(set(in_hand), timeout=grace)
                for task in running:
                    task.cancel()
                if running:
                    log.warning("jobs still running at the end of the grace period go back to the queue",
                                extra={"jobs": len(running)})
                    await asyncio.wait(running, timeout=5)

    async def _deliver(self, handlers: dict[str, JobHandler], message) -> None:
        try:
            envelope = orjson.loads(message.body)
            topic, payload = envelope["topic"], envelope["payload"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("unreadable job message rejected to the dead queue",
                      extra={"message_id": message.message_id, "error": str(exc)[:200]})
            await message.reject(requeue=False)
            return
        try:
            handler = handlers.get(topic)
            if handler is None:
                raise LookupError(f"no handler for job topic {topic!r}")
            await handle_once(self._ledger, handler, topic, payload, message.message_id or "")
        except Exception as exc:
            if is_outage(exc):
                log.warning("job postponed", extra={"message_id": message.message_id, "reason": type(exc).__name__})
                await asyncio.sleep(OUTAGE_REQUEUE_DELAY)
                await message.nack(requeue=True)
                return
            await self._retry_or_bury(message, topic, exc)
            return
        await message.ack()

    async def _retry_or_bury(self, message, topic: str, exc: Exception) -> None:
        """A counted failure: republish (confirmed) to the retry queue of its back-off or,
        after the topic's last try, to the dead queue; then ack the original. If the
        broker cannot take the copy, the original goes back to the queue (not counted)."""
        failures = int((message.headers or {}).get(ATTEMPTS_HEADER, 0)) + 1
        policy = self.retry_policies.for_topic(topic)
        headers = {ATTEMPTS_HEADER: failures, ERROR_HEADER: f"{type(exc).__name__}: {exc}"[:500]}
        copy = self.message(message.body, topic=topic, message_id=message.message_id or "", headers=headers)
        try:
            async with self._unavailable_as_error():
                if policy.exhausted(failures):
                    target = self.dead_queue_name
                else:
                    level = retry_level_ms(policy.delay(failures))
                    target = (await self.declare_retry(self._channel, level)).name
                await asyncio.wait_for(self._channel.default_exchange.publish(copy, routing_key=target), PUBLISH_TIMEOUT)
        except BrokerUnavailable:
            log.warning("could not reschedule a failed job: requeued", extra={"message_id": message.message_id})
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        if target == self.dead_queue_name:
            _metrics().JOB_DEAD_LETTERS.labels(topic).inc()
            log.error("job dead-lettered", exc_info=exc,
                      extra={"message_id": message.message_id, "topic": topic, "attempts": failures})
        else:
            _metrics().JOB_RETRIES.labels(topic).inc()
            log.warning("job failed; retried later",
                        extra={"message_id": message.message_id, "topic": topic, "attempts": failures, "queue": target})
        await message.ack()
