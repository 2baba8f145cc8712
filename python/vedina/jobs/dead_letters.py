"""Dead letters: jobs that failed their topic's last try, for an operator to look at and replay.

``vedina jobs dead list|replay|drop [--id ID ...] [--all]`` works on both
profiles through :class:`DeadLetters`:

- :class:`OutboxDeadLetters` (both profiles): outbox rows whose ``attempts``
  reached their topic's ``max_attempts`` (in the embedded profile every failed
  job ends here; in the real one only a row the relay itself could not
  publish). Replay sets ``attempts = 0`` and clears the claim, so the relay
  takes the row at once; drop deletes it.
- :class:`RabbitDeadLetters` (real profile): the ``<prefix>.jobs.dead`` queue.
  Each message is taken with a manual-ack ``basic.get`` on a channel of its
  own and held unacknowledged until the pass ends, then the kept ones are
  requeued (so a listing loses nothing and sees each message once); replay
  publishes a copy (confirmed, attempts reset) to ``<prefix>.jobs`` before it
  acks the dead one; drop acks it.

A dead letter's id is its message id (``outbox-<row id>``): the same id the
job had in the queue, so replaying it and the ledger of handled messages
agree (a failed run was never recorded as handled).

>>> letters = dead_letters_for(resources, policies)
>>> [letter.id for letter in await letters.list()]
['outbox-12']
>>> await letters.replay(ids={"outbox-12"})
1
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

import msgspec
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vedina.jobs.retry import RetryPolicies
from vedina.storage.broker import ATTEMPTS_HEADER, ERROR_HEADER, PUBLISH_TIMEOUT, RabbitBroker
from vedina.storage.schema import outbox

OUTBOX_ID_PREFIX = "outbox-"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # the message id
    source: Literal["outbox", "queue"]
    topic: str
    payload: Any
    attempts: int  # counted failures
    error: str | None


class DeadLetters(Protocol):
    async def list(self, *, limit: int | None = None) -> list[DeadLetter]: ...

    async def replay(self, *, ids: set[str] | None) -> int:
        """Send the chosen ones (``None``: all) back to their queue with their attempts reset."""
        ...

    async def drop(self, *, ids: set[str] | None) -> int:
        """Delete the chosen ones (``None``: all) for good."""
        ...


def _outbox_row_ids(ids: Iterable[str]) -> list[int]:
    row_ids = []
    for value in ids:
        digits = value.removeprefix(OUTBOX_ID_PREFIX)
        if digits.isdigit():
            row_ids.append(int(digits))
    return row_ids


class OutboxDeadLetters:
    def __init__(self, engine: AsyncEngine, policies: RetryPolicies) -> None:
        self._engine = engine
        self._policies = policies

    def _dead(self, ids: set[str] | None):
        condition = sa.and_(outbox.c.published_at.is_(None),
                            outbox.c.attempts >= self._policies.attempt_limit(outbox.c.topic))
        if ids is not None:
            condition = sa.and_(condition, outbox.c.id.in_(_outbox_row_ids(ids)))
        return condition

    async def list(self, *, limit: int | None = None) -> list[DeadLetter]:
        query = sa.select(outbox.c.id, outbox.c.topic, outbox.c.payload, outbox.c.attempts, outbox.c.last_error)
        query = query.where(self._dead(None)).order_by(outbox.c.id)
        if limit is not None:
            query = query.limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [DeadLetter(id=f"{OUTBOX_ID_PREFIX}{row.id}", source="outbox", topic=row.topic, payload=row.payload,
                           attempts=row.attempts, error=row.last_error) for row in rows]

    async def replay(self, *, ids: set[str] | None) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.update(outbox).where(self._dead(ids)).values(attempts=0, claimed_by=None, claimed_until=None)
            )
        return result.rowcount

    async def drop(self, *, ids: set[str] | None) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(sa.delete(outbox).where(self._dead(ids)))
        return result.rowcount


class RabbitDeadLetters:
    def __init__(self, broker: RabbitBroker) -> None:
        self._broker = broker

    async def list(self, *, limit: int | None = None) -> list[DeadLetter]:
        seen: list[DeadLetter] = []

        async def keep(letter: DeadLetter, message, channel) -> bool:
            seen.append(letter)
            return limit is None or len(seen) < limit

        await self._pass(keep)
        return seen

    async def replay(self, *, ids: set[str] | None) -> int:
        broker = self._broker

        async def republish(message, channel) -> None:
            letter = _letter(message)
            copy = broker.message(message.body, topic=letter.topic, message_id=message.message_id or "")
            await asyncio.wait_for(channel.default_exchange.publish(copy, routing_key=broker.queue_name),
                                   PUBLISH_TIMEOUT)
            await message.ack()

        return await self._act(ids, republish)

    async def drop(self, *, ids: set[str] | None) -> int:
        async def ack(message, channel) -> None:
            await message.ack()

        return await self._act(ids, ack)

    async def _act(self, ids: set[str] | None, act) -> int:
        done = 0

        async def visit(letter: DeadLetter, message, channel) -> bool:
            nonlocal done
            if ids is None or letter.id in ids:
                await act(message, channel)
                done += 1
            return True

        await self._pass(visit)
        return done

    async def _pass(self, visit: Callable[..., Any]) -> None:
        """Take each message of the dead queue once; ``visit`` acts on it (ack) or leaves it, and
        returns False to stop. Every message left is requeued when the pass ends."""
        channel = await self._broker.open_channel()
        held = []
        try:
            queue = await self._broker.declare_dead(channel)
            while True:
                message = await queue.get(no_ack=False, fail=False, timeout=PUBLISH_TIMEOUT)
                if message is None:
                    break
                held.append(message)
                if not await visit(_letter(message), message, channel):
                    break
        finally:
            for message in held:
                if not message.processed:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
            await channel.close()


def _letter(message) -> DeadLetter:
    headers = message.headers or {}
    try:
        envelope = orjson.loads(message.body)
        topic, payload = envelope["topic"], envelope["payload"]
    except (orjson.JSONDecodeError, KeyError, TypeError):  # an unreadable message, rejected as it came
        topic, payload = message.type or "", message.body.decode(errors="replace")[:2000]
    error = headers.get(ERROR_HEADER)
    if isinstance(error, bytes):
        error = error.decode(errors="replace")
    return DeadLetter(id=message.message_id or "", source="queue", topic=topic, payload=payload,
                      attempts=int(headers.get(ATTEMPTS_HEADER, 0)), error=error)


class AllDeadLetters:
    """The outbox's dead rows and, on the real profile, the dead queue: one list."""

    def __init__(self, *sources: DeadLetters) -> None:
        self._sources = sources

    async def list(self, *, limit: int | None = None) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        for source in self._sources:
            letters += await source.list(limit=None if limit is None else limit - len(letters))
            if limit is not None and len(letters) >= limit:
                break
        return letters

    async def replay(self, *, ids: set[str] | None) -> int:
        return sum([await source.replay(ids=ids) for source in self._sources])

    async def drop(self, *, ids: set[str] | None) -> int:
        return sum([await source.drop(ids=ids) for source in self._sources])


def dead_letters_for(resources, policies: RetryPolicies | None = None) -> DeadLetters:
    """The dead letters of a process's resources (vedina.storage.resources.Resources); by default
    with the relay's retry policies, which decide when an outbox row is dead."""
    policies = policies or resources.relay.policies
    sources: list[DeadLetters] = [OutboxDeadLetters(resources.engine, policies)]
    if isinstance(resources.broker, RabbitBroker):
        sources.append(RabbitDeadLetters(resources.broker))
    return AllDeadLetters(*sources)


async def dead_command(settings, *, action: str, ids: list[str], everything: bool) -> int:
    """``vedina jobs dead ACTION``: list prints one JSON object per line; replay and drop need
    ``--id`` or ``--all`` and print how many they did. Returns the exit status."""
    from vedina.storage.resources import open_resources

    if action != "list" and not ids and not everything:
        print(f"vedina jobs dead {action}: name the dead letters with --id, or pass --all", file=sys.stderr)
        return 2
    resources = await open_resources(settings)
    try:
        letters = dead_letters_for(resources)
        chosen = None if everything or not ids else set(ids)
        if action == "list":
            for letter in await letters.list():
                if chosen is None or letter.id in chosen:
                    print(msgspec.json.encode(letter).decode())
            return 0
        done = await (letters.replay if action == "replay" else letters.drop)(ids=chosen)
        print(f"{'replayed' if action == 'replay' else 'dropped'} {done} dead letter(s)")
        return 0
    finally:
        await resources.close()
