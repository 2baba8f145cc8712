"""The nodes of a RabbitMQ cluster (``AMQP_URLS``), tried in turn.

aio-pika's robust connection reconnects to the one URL it was given, so a node
that is gone for good would keep a worker waiting for it. With several nodes
the broker opens plain connections through :class:`NodeConnector` instead, and
reconnects itself (:class:`vedina.storage.broker.RabbitBroker`) when one closes.

Order: each process shuffles the list once, so the connections of many
processes spread over the nodes (in the given order every process would sit on
the first node, and all of them would move to the second one at once when it
fails). After a connection to a node, the next attempt starts with the node
after it, so a process that lost its node tries the others before that one.

>>> nodes = NodeConnector(["amqp://u:p@mq1/", "amqp://u:p@mq2/"])
>>> connection = await nodes.connect()   # the first node that answers
>>> nodes.current                          # without the password, for logs
'amqp://u:******@mq2/'
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from yarl import URL

CONNECT_TIMEOUT = 5.0  # seconds per node: a node that does not answer in time is skipped


class NoNodeAnswered(ConnectionError):
    """No node of the list accepted a connection (the message names each node and its error)."""


def redacted(url: str) -> str:
    parsed = URL(url)
    return str(parsed.with_password("******")) if parsed.password else url


class NodeConnector:
    def __init__(self, urls: Sequence[str], *, shuffle: bool = True, timeout: float = CONNECT_TIMEOUT,
                 rng: random.Random | None = None) -> None:
        if not urls:
            raise ValueError("at least one broker URL")
        self.urls = list(urls)
        if shuffle:
            (rng or random).shuffle(self.urls)
        self._timeout = timeout
        self._start = 0
        self.current: str | None = None  # the node of the last connection, redacted

    async def connect(self):
        """A connection to the first node (from where the last one left off) that answers.

        Raises :class:`NoNodeAnswered` when none does."""
        import aio_pika
        import aio_pika.exceptions as amqp

        failures = []
        for step in range(len(self.urls)):
            index = (self._start + step) % len(self.urls)
            try:
                connection = await aio_pika.connect(self.urls[index], timeout=self._timeout)
            except (amqp.AMQPError, OSError, asyncio.TimeoutError) as exc:
                failures.append(f"{redacted(self.urls[index])}: {type(exc).__name__}: {exc}"[:200])
                continue
            self._start = (index + 1) % len(self.urls)
            self.current = redacted(self.urls[index])
            return connection
        raise NoNodeAnswered("no broker node answered: " + "; ".join(failures))
