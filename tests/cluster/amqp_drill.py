"""The broker side of the RabbitMQ cluster drills, run inside a client host's namespace.

The lab's addresses exist only inside its namespaces, so the test process (root namespace) cannot
open AMQP connections to the nodes; it runs this module in a client host instead
(``host.popen([sys.executable, "-m", "tests.cluster.amqp_drill", ...])``) and talks to it through
files in ``--work``. The broker is wired as a Vedina process wires it, from the environment:
``load_settings`` (``AMQP_URLS``, ``AMQP_QUEUE_TYPE``, ``AMQP_QUEUE_PREFIX``, ``DATA_DIR``) and
``open_resources`` (an embedded SQLite database under ``DATA_DIR`` holds the outbox and the ledger
of handled message ids).

``declare``: connect (declaring the jobs and dead queues), write ``result.json``
(``{"node", "queues", "queue_type"}``) and exit.

``drill``: two processes' worth of resources: a publisher (jobs enqueued in the outbox at
``--rate`` per second, relayed by the :class:`~vedina.storage.outbox.OutboxRelay` with publisher
confirms) and a consumer (``RabbitBroker.consume`` with a :class:`MessageLedger`), each on a node of
its own choosing (shuffled ``AMQP_URLS``). ``status.json`` is rewritten every 0.2 s (counts and the
node each side is on). When the file ``finish`` appears, publishing stops, the outbox is drained,
the consumer gets every job, 1.5 s more for redeliveries, and ``result.json`` says how many times each
job ran (``runs``: job number -> count), how many repeats the ledger skipped and which nodes each
side used, in order, and how many messages were ``left`` in the jobs queue at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import time
from pathlib import Path

TOPIC = "drill.job"


def write_json(path: Path, data: dict) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(data))
    partial.replace(path)  # the test never reads half a file


class Repeats(logging.Handler):
    """Counts the deliveries the ledger recognised as already handled."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "duplicate job message skipped":
            self.count += 1


async def declare(work: Path) -> None:
    from vedina.config import load_settings
    from vedina.storage.resources import open_resources

    resources = await open_resources(load_settings(dict(os.environ)))
    broker = resources.broker
    try:
        await broker.ping()  # connects: the jobs and dead queues are declared first
        write_json(work / "result.json", {"node": broker.node, "queue_type": broker.queue_type,
                                          "queues": [broker.queue_name, broker.dead_queue_name]})
    finally:
        await resources.close()


async def drill(work: Path, *, rate: float) -> None:
    from vedina.config import load_settings
    from vedina.storage import migrate
    from vedina.storage.broker import BrokerUnavailable
    from vedina.storage.message_ledger import MessageLedger
    from vedina.storage.outbox import enqueue
    from vedina.storage.resources import open_resources

    settings = load_settings(dict(os.environ))
    await migrate.upgrade(settings)
    publisher, consumer = await open_resources(settings), await open_resources(settings)
    repeats = Repeats()
    logging.getLogger("vedina.storage.broker").addHandler(repeats)
    logging.getLogger("vedina.storage.broker").setLevel(logging.INFO)

    runs: collections.Counter[int] = collections.Counter()
    counts = {"enqueued": 0, "published": 0, "outages": 0}
    nodes: dict[str, list[str]] = {"consumer": [], "publisher": []}
    finishing, stop = asyncio.Event(), asyncio.Event()

    async def handler(payload: dict) -> None:
        await asyncio.sleep(0.01)  # a few jobs are always in hand
        runs[payload["n"]] += 1

    consumer.broker.attach_handlers({TOPIC: handler}, ledger=MessageLedger(consumer.engine))

    async def produce() -> None:
        while not finishing.is_set():
            async with publisher.engine.begin() as conn:
                await enqueue(conn, topic=TOPIC, payload={"n": counts["enqueued"]})
            counts["enqueued"] += 1
            await asyncio.sleep(1 / rate)

    async def relay() -> None:
        while True:
            try:
                published = await publisher.relay.relay_once()
            except BrokerUnavailable:  # a switch of node under way: the rows wait, uncounted
                counts["outages"] += 1
                await asyncio.sleep(0.2)
                continue
            counts["published"] += published
            if not published:
                if finishing.is_set() and not await publisher.relay.pending():
                    return
                await asyncio.sleep(0.05)

    def note_nodes() -> dict:
        for side, resources in (("consumer", consumer), ("publisher", publisher)):
            node = resources.broker.node
            if node and (not nodes[side] or nodes[side][-1] != node):
                nodes[side].append(node)
        return {**counts, "handled": sum(runs.values()), "consumer_node": consumer.broker.node,
                "publisher_node": publisher.broker.node, "time": time.time()}

    async def report() -> None:
        while not stop.is_set():
            write_json(work / "status.json", note_nodes())
            if (work / "finish").exists():
                finishing.set()
            await asyncio.sleep(0.2)

    reporter = asyncio.create_task(report())
    consuming = asyncio.create_task(consumer.broker.consume(stop=stop))
    try:
        await asyncio.gather(produce(), relay())
        deadline = time.monotonic() + 40
        while len(runs) < counts["enqueued"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # redeliveries of jobs in hand when a node went would show by now
    finally:
        stop.set()
        await asyncio.wait_for(consuming, 30)
        await reporter
        last = note_nodes()
        await consumer.close()  # anything it held unacknowledged is back in the queue now
        try:
            left = await waiting(publisher.broker)
        finally:
            write_json(work / "result.json", {**last, "runs": {str(n): c for n, c in sorted(runs.items())},
                                              "repeats_skipped": repeats.count, "nodes": nodes, "left": left})
            await publisher.close()


async def waiting(broker) -> int | None:
    """Messages ready in the jobs queue, as its leader counts them now (``list_queues`` shows a
    quorum queue's count as of its last metrics tick, seconds old); None if no node answers."""
    from vedina.storage.broker import BrokerUnavailable

    try:
        channel = await broker.open_channel()
    except BrokerUnavailable:
        return None
    try:
        declared = await channel.declare_queue(broker.queue_name, passive=True)
        return declared.declaration_result.message_count
    finally:
        await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["declare", "drill"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=25.0, help="jobs enqueued per second")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.mode == "declare":
        asyncio.run(declare(args.work))
    else:
        asyncio.run(drill(args.work, rate=args.rate))


if __name__ == "__main__":
    main()
