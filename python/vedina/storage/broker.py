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
returned is on the broker's disk; a message the broker could not route (its
queue is missing) comes back and the publish fails as an outage.

Queue types (``AMQP_QUEUE_TYPE``, ADR 0018): ``classic`` is the layout above as
it always was; ``quorum`` declares the jobs and dead queues with
``x-queue-type: quorum`` (replicated over the cluster's nodes, Raft) and the
retry queues as quorum queues too, under other names
(``<prefix>.jobs.retry.q.<ms>``: RabbitMQ refuses to redeclare a queue with
another type). Dead-lettering out of a quorum queue (an expired retry, a
rejected unreadable job) is ``at-least-once``, which RabbitMQ 3.10+ offers
with ``x-overflow: reject-publish``; no ``x-delivery-limit`` is set, since
outages requeue a message uncounted for as long as they last (failures are
counted in ``x-vedina-attempts``). ``vedina jobs migrate-queues`` converts
existing queues (:mod:`vedina.jobs.queue_migration`).

Nodes: given one URL (``AMQP_URL``), aio-pika's robust connection reconnects to
it. Given a list (``AMQP_URLS``), the broker connects to the first node that
answers (:class:`~vedina.storage.amqp_nodes.NodeConnector`) and, when that
connection closes, to another one: the consumer re-declares the queues and
consumes again, and a publish that met the lost connection is sent once more
on the new one (or fails as an outage, which the outbox does not count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import orjson

from vedina.jobs.retry import RetryPolicies
from vedina.storage.amqp_nodes import NodeConnector
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
QUEUE_TYPES = ("classic", "quorum")
RECONNECT_MAX_DELAY = 5.0  # seconds between rounds over the nodes while none answers (AMQP_URLS)
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
        # The handler's work is done: record it even if this task is cancelled now (a channel
        # closing with its node cancels the consumers' tasks), or the redelivered message would
        # find a claim still "running" and the job would run again once that claim expired.
        await asyncio.shield(ledger.done(message_id))
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
    """``url``: one node (aio-pika's robust connection); a list: the nodes of a cluster, tried in
    turn (shuffled once unless ``shuffle=False``) and switched when a connection is lost."""

    def __init__(self, url: str | Sequence[str], *, prefix: str, policies: RetryPolicies | None = None,
                 queue_type: str = "classic", shuffle: bool = True) -> None:
        if queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be one of {QUEUE_TYPES}, got {queue_type!r}")
        self._url = url if isinstance(url, str) else None
        self._nodes = None if isinstance(url, str) else NodeConnector(url, shuffle=shuffle)
        self.queue_type = queue_type
        self.queue_name = f"{prefix}.jobs"
        self.dead_queue_name = f"{prefix}.jobs.dead"
        self.retry_prefix = f"{prefix}.jobs.retry." if queue_type == "classic" else f"{prefix}.jobs.retry.q."
        self.retry_policies = policies or RetryPolicies()
        self._connection = None
        self._channel = None
        self._lost = asyncio.Event()  # set when the connection of a node list closes
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
            if self._channel is not None and not (self._nodes is not None and self._lost.is_set()):
                return
            if self._nodes is None:
                connection = await aio_pika.connect_robust(self._url, timeout=10)
            else:
                await self._abandon()
                connection = await self._nodes.connect()
            try:
                channel = await connection.channel(publisher_confirms=True)
                await self.declare(channel)
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.close()
                raise
            if self._nodes is not None:
                lost = self._lost = asyncio.Event()
                connection.close_callbacks.add(lambda *_: lost.set())
                channel.close_callbacks.add(lambda *_: lost.set())
                log.info("connected to a broker node", extra={"node": self._nodes.current})
            self._connection, self._channel = connection, channel

    async def raw_connection(self):
        """A connection of its own, to the node (or the first node that answers), with nothing
        declared: for `vedina jobs migrate-queues`, whose queues may not match. The caller closes it."""
        import aio_pika

        if self._nodes is None:
            return await aio_pika.connect(self._url, timeout=10)
        return await NodeConnector(self._nodes.urls, shuffle=False).connect()

    async def _abandon(self) -> None:
        """Close what is left of a lost connection (node list only)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 1)

    async def _ready_channel(self):
        """The shared channel, connecting first if there is none (or, with a node list, if its
        connection was lost)."""
        if self._channel is None or (self._nodes is not None and self._lost.is_set()):
            await self.connect()
        return self._channel

    @property
    def node(self) -> str | None:
        """The node of the current connection (node list only), without its password."""
        return self._nodes.current if self._nodes is not None and self._channel is not None else None

    async def open_channel(self):
        """A channel of its own (publisher confirms on), for work that must not disturb the
        shared one: the dead-letter commands. The caller closes it."""
        await self._ready_channel()
        return await self._connection.channel(publisher_confirms=True)

    def queue_arguments(self, role: str, *, level_ms: int = 0) -> dict[str, Any]:
        """The arguments of the ``jobs``, ``dead`` or ``retry`` queue for this queue type. The
        classic ones are those of every release before quorum queues (a redeclaration with any
        other arguments is refused by RabbitMQ)."""
        if role == "jobs":
            arguments: dict[str, Any] = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.dead_queue_name}
        elif role == "retry":
            arguments = {"x-message-ttl": level_ms, "x-dead-letter-exchange": "",
                         "x-dead-letter-routing-key": self.queue_name, "x-expires": level_ms + RETRY_QUEUE_IDLE_MS}
        else:
            arguments = {}
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
            if "x-dead-letter-exchange" in arguments:  # an expired retry must not vanish on its way back
                arguments |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        return arguments

    async def declare_dead(self, channel) -> Any:
        return await channel.declare_queue(self.dead_queue_name, durable=True, arguments=self.queue_arguments("dead") or None)

    async def declare(self, channel) -> Any:
        await self.declare_dead(channel)
        return await channel.declare_queue(self.queue_name, durable=True, arguments=self.queue_arguments("jobs"))

    async def declare_retry(self, channel, level_ms: int) -> Any:
        """The retry queue of one delay level; its arguments follow from its name, so a
        redeclaration never conflicts."""
        return await channel.declare_queue(
            f"{self.retry_prefix}{level_ms}", durable=True, arguments=self.queue_arguments("retry", level_ms=level_ms),
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
            channel = await self._ready_channel()
            try:
                await self._confirmed(channel, message, self.queue_name)
            except BrokerUnavailable:
                raise
            except Exception:
                if self._nodes is None or not self._lost.is_set():
                    raise
                # The node went away under this publish: once more on another node (if it had
                # reached the queue after all, the consumers' ledger makes the copy a no-op).
                log.warning("broker connection lost while publishing; sending again", extra={"message_id": message_id})
                await self._confirmed(await self._ready_channel(), message, self.queue_name)

    async def _confirmed(self, channel, message, routing_key: str) -> None:
        """Publish and wait (bounded) for the broker's confirm. A message returned unroutable
        (its queue missing, e.g. during ``vedina jobs migrate-queues``) was not taken."""
        from aiormq.abc import DeliveredMessage

        result = await asyncio.wait_for(channel.default_exchange.publish(message, routing_key=routing_key), PUBLISH_TIMEOUT)
        if isinstance(result, DeliveredMessage):
            raise BrokerUnavailable(f"queue {routing_key!r} missing: message returned unroutable")

    async def ping(self) -> None:
        """A real round trip: a passive declare of the jobs queue (a reconnecting
        connection is not "closed", but cannot answer this)."""
        async with self._unavailable_as_error():
            channel = await self._ready_channel()
            await asyncio.wait_for(channel.declare_queue(self.queue_name, passive=True), PUBLISH_TIMEOUT)

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting: ``jobs`` (ready), ``retry`` (all delay levels), ``dead``."""
        async with self._unavailable_as_error():
            channel = await self._ready_channel()
            jobs = await self.declare(channel)
            dead = await self.declare_dead(channel)
            retry = 0
            for level in RETRY_LEVELS_MS:
                retry += (await self.declare_retry(channel, level)).declaration_result.message_count
        return {"jobs": jobs.declaration_result.message_count, "retry": retry,
                "dead": dead.declaration_result.message_count}

    @contextlib.asynccontextmanager
    async def _unavailable_as_error(self):
        """aio-pika's connection and channel errors, translated once, here."""
        import aio_pika.exceptions as amqp

        try:
            yield
        except (amqp.AMQPConnectionError, amqp.ChannelInvalidStateError, amqp.ChannelClosed,
                amqp.DeliveryError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            # DeliveryError: the broker nacked the publish (a quorum queue at its length limit
            # with x-overflow reject-publish, or without a leader): it could not take it now.
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection, self._channel = self._connection, None, None
            if self._nodes is None:
                await connection.close()
            else:  # it may be a lost one
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 5)

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
            except Exception as exc:
                if self._nodes is None or not self._lost.is_set():
                    raise
                # Its channel died with the node: the broker gives the message to another consumer.
                log.warning("broker connection lost before the job was acknowledged; it is redelivered",
                            extra={"message_id": message.message_id, "error": f"{type(exc).__name__}"})
            finally:
                in_hand.discard(task)

        queue = tag = None
        try:
            while not stop.is_set():
                queue, tag, lost = await self._start_consuming(on_message, prefetch=prefetch, stop=stop)
                if queue is None:
                    break
                if self._nodes is None:  # the robust connection resumes the consumer by itself
                    await stop.wait()
                    break
                waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())}
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if not stop.is_set():
                    log.warning("broker connection lost: consuming from another node", extra={"node": self._nodes.current})
        finally:
            with contextlib.suppress(Exception):  # a dead channel takes no more messages anyway
                if queue is not None:
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

    async def _start_consuming(self, on_message, *, prefetch: int, stop: asyncio.Event):
        """Declare the queues and consume on the shared channel. With a node list, nodes that do
        not answer are tried again (backing off) until one does or ``stop`` is set: then (None, None, None).
        Also returns the event that the connection consumed on sets when it is lost."""
        delay = 0.25
        while True:
            try:
                channel = await self._ready_channel()
                lost = self._lost  # this connection's (a publish may replace both later)
                await channel.set_qos(prefetch_count=prefetch)
                queue = await self.declare(channel)
                return queue, await queue.consume(on_message), lost
            except Exception as exc:
                if self._nodes is None or stop.is_set():
                    raise
                log.warning("no broker node to consume from; trying again",
                            extra={"error": f"{type(exc).__name__}: {exc}"[:300], "retry_in_seconds": delay})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return None, None, None
            delay = min(delay * 2, RECONNECT_MAX_DELAY)

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
                if self._channel is None:  # lost meanwhile (node list): the original comes back by itself
                    raise BrokerUnavailable("broker connection lost")
                await self._confirmed(self._channel, copy, target)
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
