"""tests/cluster/rabbitmq.py: a 3-node RabbitMQ cluster on test hosts, driven by Vedina's own broker.

The nodes' addresses exist only inside the lab's namespaces, so the broker side runs in a client
host as a subprocess (tests/cluster/amqp_drill.py) wired from AMQP_URLS / AMQP_QUEUE_TYPE=quorum as
a Vedina process is; the test reads the files it writes and stops or kills nodes meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster import netns, rabbitmq
from tests.cluster.labs import module_lab
from tests.cluster.rabbitmq import RabbitNodes

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
TAG = "vdcrq"


class Mq:
    def __init__(self, lab: netns.Lab, network: netns.Network, nodes: RabbitNodes, client: netns.Host,
                 root: Path) -> None:
        self.lab, self.network, self.nodes, self.client, self.root = lab, network, nodes, client, root

    def env(self, work: Path, prefix: str, nodes: RabbitNodes | None = None) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(work), "VEDINA_ENV": "test",
                "DATA_DIR": str(work / "data"), "AMQP_URLS": ",".join((nodes or self.nodes).urls()),
                "AMQP_QUEUE_TYPE": "quorum", "AMQP_QUEUE_PREFIX": prefix}

    def declare(self, prefix: str, nodes: RabbitNodes | None = None) -> dict:
        """Connect once from the client host (declaring the queues); what the script saw."""
        work = self.root / f"declare-{prefix}-{time.monotonic_ns()}"
        work.mkdir(parents=True)
        self.client.run([sys.executable, "-m", "tests.cluster.amqp_drill", "declare", "--work", str(work)],
                        env=self.env(work, prefix, nodes), timeout=60)
        return json.loads((work / "result.json").read_text())


@pytest.fixture(scope="module")
def mq(request, tmp_path_factory):
    lab = module_lab(request, TAG, why=rabbitmq.available())
    network = lab.network("mq", "10.231.7")
    hosts = [lab.host(f"mq{n}", {network: 40 + n}) for n in (1, 2, 3)]
    client = lab.host("client", {network: 2})
    root = tmp_path_factory.mktemp("rabbitmq")
    nodes = RabbitNodes(hosts, root / "nodes")
    request.addfinalizer(nodes.destroy)  # before lab.destroy: finalizers run last-in first-out
    began = time.monotonic()
    nodes.start()
    print(f"\nrabbitmq: 3 nodes started and clustered in {time.monotonic() - began:.1f} s")
    return Mq(lab, network, nodes, client, root)


def queue(mq: Mq, name: str) -> dict:
    """The queue as ``list_queues`` shows it ({} while it is not listed: its leader's node just went)."""
    return next((q for q in mq.nodes.queues() if q["name"] == name), {})


def status(work: Path) -> dict:
    path = work / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_status(work: Path, proc: subprocess.Popen, predicate, what: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        now = status(work)
        if now and predicate(now):
            return now
        assert proc.poll() is None, f"the drill exited {proc.returncode} before {what}: {tail(work / 'drill.log')}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s (last status {now})"
        time.sleep(0.1)


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def test_three_nodes_form_one_cluster_and_the_jobs_queues_are_quorum_queues_on_all_of_them(mq):
    every = {mq.nodes.node(i) for i in range(3)}
    assert set(mq.nodes.cluster_status(2)["disk_nodes"]) == every
    assert mq.nodes.running(1) == every
    assert mq.nodes.urls()[2] == f"amqp://vedina:{mq.nodes.password}@10.231.7.43:5672/"

    seen = mq.declare("vdc-declared")
    assert seen["queue_type"] == "quorum" and seen["node"].endswith(":5672/") and "******" in seen["node"]
    for name in ("vdc-declared.jobs", "vdc-declared.jobs.dead"):
        declared = queue(mq, name)
        assert declared.get("type") == "quorum", declared
        assert set(declared["members"]) == every and set(declared["online"]) == every


def test_publishing_and_consuming_go_on_while_the_consumers_node_is_stopped_and_every_job_runs_once(mq):
    work = mq.root / "drill"
    work.mkdir()
    proc = mq.client.popen([sys.executable, "-m", "tests.cluster.amqp_drill", "drill", "--work", str(work),
                            "--rate", "25"], log=work / "drill.log", env=mq.env(work, "vdc-drill"), cwd=REPO)
    victim = None
    try:
        before = wait_status(work, proc, lambda s: s["handled"] >= 50 and s["consumer_node"] and s["publisher_node"],
                             "the first 50 jobs handled", timeout=60)
        victim = mq.nodes.index_of(before["consumer_node"])
        publisher_too = mq.nodes.index_of(before["publisher_node"]) == victim
        mq.nodes.stop_node(victim)
        at_stop = status(work)

        def moved_on(now: dict) -> bool:
            return (now["handled"] >= at_stop["handled"] + 75 and now["published"] >= at_stop["published"] + 75
                    and bool(now["consumer_node"]) and mq.nodes.index_of(now["consumer_node"]) != victim)

        during = wait_status(work, proc, moved_on, "75 more jobs published and handled with the node down",
                             timeout=40)
        assert mq.nodes.node(victim) not in mq.nodes.running()  # it was down all along

        mq.nodes.start_node(victim)  # back, and rejoined, while the drill goes on
        assert mq.nodes.running(victim) == {mq.nodes.node(i) for i in range(3)}
        (work / "finish").touch()
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if victim is not None and victim in mq.nodes.stopped:
            mq.nodes.start_node(victim)  # the next test wants three nodes
    assert proc.returncode == 0, tail(work / "drill.log")
    result = json.loads((work / "result.json").read_text())

    enqueued, runs = result["enqueued"], result["runs"]
    missing = [n for n in range(enqueued) if str(n) not in runs]
    repeated = {n: count for n, count in runs.items() if count != 1}
    assert enqueued >= 200 and result["published"] >= enqueued
    assert not missing and not repeated and len(runs) == enqueued, (missing[:20], repeated)
    assert result["nodes"]["consumer"][0] == before["consumer_node"] and len(result["nodes"]["consumer"]) >= 2
    assert during["consumer_node"] != before["consumer_node"]
    assert result["left"] == 0  # counted by the queue's leader when the drill ended
    deadline = time.monotonic() + 15  # list_queues shows a quorum queue's count as of its last 5 s tick
    while (jobs := queue(mq, "vdc-drill.jobs")).get("messages") != 0:
        assert time.monotonic() < deadline, f"messages left in the jobs queue: {jobs}"
        time.sleep(1)
    assert jobs["type"] == "quorum"
    assert set(jobs["online"]) == {mq.nodes.node(i) for i in range(3)}  # the restarted node's member too
    print(f"\nrabbitmq drill: {enqueued} jobs, node {victim + 1} (the consumer's"
          f"{', and the publisher' + chr(39) + 's' if publisher_too else ''}) stopped; "
          f"{result['outages']} relay outages, {result['repeats_skipped']} repeats skipped by the ledger, "
          f"consumer nodes {result['nodes']['consumer']}")


def test_a_killed_leader_is_replaced_and_the_node_rejoins_when_started(mq):
    mq.declare("vdc-killed")
    leader = mq.nodes.index_of(queue(mq, "vdc-killed.jobs")["leader"].split("@")[1])
    mq.nodes.kill_node(leader)
    try:
        others = {mq.nodes.node(i) for i in range(3) if i != leader}
        deadline = time.monotonic() + 30
        while (now := queue(mq, "vdc-killed.jobs")).get("leader") not in others:
            assert time.monotonic() < deadline, f"no new leader: {now}"
            time.sleep(0.5)
        assert mq.declare("vdc-killed")["node"] is not None  # the survivors take clients and declarations
    finally:
        mq.nodes.start_node(leader)
    assert mq.nodes.running() == {mq.nodes.node(i) for i in range(3)}
    deadline = time.monotonic() + 30
    while len((now := queue(mq, "vdc-killed.jobs")).get("online", [])) < 3:
        assert time.monotonic() < deadline, f"the restarted member is not back online: {now}"
        time.sleep(0.5)


def test_a_single_node_starts_alone_and_takes_quorum_queues(mq):
    solo = mq.lab.host("solo", {mq.network: 50})
    nodes = RabbitNodes([solo], mq.root / "solo", password="solo-password")
    try:
        began = time.monotonic()
        nodes.start()
        print(f"\nrabbitmq: 1 node started in {time.monotonic() - began:.1f} s")
        assert nodes.running() == {"rabbit@10.231.7.50"}
        assert nodes.urls() == ["amqp://vedina:solo-password@10.231.7.50:5672/"]
        seen = mq.declare("vdc-solo", nodes)
        assert seen["node"] == "amqp://vedina:******@10.231.7.50:5672/"
        assert next(q for q in nodes.queues() if q["name"] == "vdc-solo.jobs")["type"] == "quorum"
    finally:
        nodes.destroy()
    assert not solo.pids()
