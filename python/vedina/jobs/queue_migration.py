"""``vedina jobs migrate-queues``: convert the job queues to ``AMQP_QUEUE_TYPE`` (ADR 0018).

RabbitMQ cannot change a queue's type: a queue is declared once with its
``x-queue-type`` and a declaration with another type is refused
(PRECONDITION_FAILED). So a queue is converted by moving its messages out,
deleting it, declaring it again with the new type and moving them back:

1. the retry queues of the other type (their own names, see
   :class:`~vedina.storage.broker.RabbitBroker`) are emptied into the jobs
   queue (a retry comes early; its attempts header is kept) and deleted, so
   nothing dead-letters into the jobs queue while step 3 has it deleted;
2. the dead queue, then 3. the jobs queue: every message is moved to
   ``<name>.migrating`` (declared with the new type), the queue is deleted
   (only if empty: a publish that came meanwhile is moved too), declared with
   the new type, and the messages are moved back. RabbitMQ deletes a classic
   queue "if empty" atomically but not a quorum one: going back from quorum to
   classic needs every publisher stopped (see :func:`_delete_if_empty`).

Each move publishes with confirmation before it acknowledges the original, so
a crash leaves a message in both places, never in neither (the consumers'
ledger of message ids makes the copy a no-op); running the command again
finishes an interrupted conversion. Stop the ``vedina worker`` processes
first: a consumer of a deleted queue stops receiving. App hosts may keep
running: a job published while its queue is missing comes back unroutable and
stays in the outbox, uncounted (an outage), until the queue is back.

>>> await migrate_queues(broker)   # broker.queue_type is the target
['vedina.jobs.retry.800: 3 message(s) moved to vedina.jobs, deleted', 'vedina.jobs.dead: now quorum, 2 message(s)', ...]
"""

from __future__ import annotations

import asyncio
import contextlib

from vedina.storage.broker import PUBLISH_TIMEOUT, RETRY_LEVELS_MS, BrokerUnavailable, RabbitBroker

HOLDING_SUFFIX = ".migrating"


async def migrate_queues(broker: RabbitBroker) -> list[str]:
    """Convert ``broker``'s queues to ``broker.queue_type``; returns one line per queue acted on."""
    connection = await broker.raw_connection()
    try:
        report = await _drop_other_retry_queues(connection, broker)
        report.append(await _convert(connection, broker.dead_queue_name, broker.queue_arguments("dead"), broker))
        report.append(await _convert(connection, broker.queue_name, broker.queue_arguments("jobs"), broker))
        return report
    finally:
        await connection.close()


async def _drop_other_retry_queues(connection, broker: RabbitBroker) -> list[str]:
    other = RabbitBroker("amqp://unused/", prefix=broker.queue_name.removesuffix(".jobs"),
                         queue_type="classic" if broker.queue_type == "quorum" else "quorum")
    report = []
    for level in RETRY_LEVELS_MS:
        name = f"{other.retry_prefix}{level}"
        if await _exists(connection, name):
            moved = await _move(connection, name, broker.queue_name)
            async with _channel(connection) as channel:
                await channel.queue_delete(name)
            report.append(f"{name}: {moved} message(s) moved to {broker.queue_name}, deleted")
    return report


async def _convert(connection, name: str, arguments: dict, broker: RabbitBroker) -> str:
    holding = name + HOLDING_SUFFIX
    holding_arguments = {"x-queue-type": broker.queue_type} if broker.queue_type == "quorum" else None
    if await _declares(connection, name, arguments):  # already of the target type (or new)
        moved = await _move(connection, holding, name, delete=True) if await _exists(connection, holding) else 0
        return f"{name}: already {broker.queue_type}" + (f", {moved} message(s) moved back from {holding}" if moved else "")
    async with _channel(connection) as channel:
        await channel.declare_queue(holding, durable=True, arguments=holding_arguments)
    while True:
        await _move(connection, name, holding)
        if await _delete_if_empty(connection, name, quorum=broker.queue_type == "classic"):
            break
    async with _channel(connection) as channel:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    moved = await _move(connection, holding, name, delete=True)
    return f"{name}: now {broker.queue_type}, {moved} message(s)"


@contextlib.asynccontextmanager
async def _channel(connection):
    """A channel for one step: RabbitMQ closes a channel on any refused declaration."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        yield channel
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def _exists(connection, name: str) -> bool:
    import aio_pika.exceptions as amqp

    try:
        async with _channel(connection) as channel:
            await channel.declare_queue(name, passive=True)
        return True
    except amqp.ChannelNotFoundEntity:
        return False


async def _declares(connection, name: str, arguments: dict) -> bool:
    """True when ``name`` could be declared with ``arguments`` (it has them, or did not exist)."""
    import aio_pika.exceptions as amqp

    try:
        async with _channel(connection) as channel:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        return True
    except amqp.ChannelPreconditionFailed:
        return False


async def _move(connection, source: str, target: str, *, delete: bool = False) -> int:
    """Move every message of ``source`` to ``target`` (each one confirmed, then acknowledged)."""
    import aio_pika
    from aiormq.abc import DeliveredMessage

    moved = 0
    async with _channel(connection) as channel:
        queue = await channel.declare_queue(source, passive=True)
        while (message := await queue.get(no_ack=False, fail=False, timeout=PUBLISH_TIMEOUT)) is not None:
            copy = aio_pika.Message(
                body=message.body, headers=message.headers or {}, content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message.message_id, type=message.type,
            )
            result = await asyncio.wait_for(channel.default_exchange.publish(copy, routing_key=target), PUBLISH_TIMEOUT)
            if isinstance(result, DeliveredMessage):
                raise BrokerUnavailable(f"queue {target!r} missing")  # returned: leave the original where it is
            await message.ack()
            moved += 1
        if delete:  # a holding queue: only this command puts messages there
            await channel.queue_delete(source)
    return moved


async def _delete_if_empty(connection, name: str, *, quorum: bool) -> bool:
    """Delete ``name`` if it holds no message. A classic queue is deleted "if empty" by the broker;
    a quorum queue cannot be (NOT_IMPLEMENTED), so it is counted first and a message published
    between the count and the delete would go with it: converting quorum queues back to classic
    needs the publishers (app hosts too) stopped."""
    import aio_pika.exceptions as amqp

    async with _channel(connection) as channel:
        if quorum:
            queue = await channel.declare_queue(name, passive=True)
            if queue.declaration_result.message_count:
                return False
            await channel.queue_delete(name)
            return True
        try:
            await channel.queue_delete(name, if_empty=True)
            return True
        except amqp.ChannelPreconditionFailed:  # a message arrived after the move: move it too
            return False


async def migrate_command(settings) -> int:
    """``vedina jobs migrate-queues``: prints what it did; returns the exit status."""
    import sys

    from vedina.storage.resources import open_resources

    resources = await open_resources(settings)
    try:
        if not isinstance(resources.broker, RabbitBroker):
            print("vedina jobs migrate-queues: no broker configured (AMQP_URL or AMQP_URLS)", file=sys.stderr)
            return 2
        for line in await migrate_queues(resources.broker):
            print(line)
        return 0
    finally:
        await resources.close()
