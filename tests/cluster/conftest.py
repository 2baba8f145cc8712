"""The lab (tests/cluster/topology.py) for the whole cluster session, and the drill reports.

Every test here is marked ``cluster``: ``make cluster-test`` runs them (root, iproute2, the engines
from Debian's packages). Each drill records requests sent, failed and lost writes; the table is
printed at the end of the run and written to ``var/cluster/drills.json``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.cluster import netns

REPO = Path(__file__).resolve().parents[2]
REPORTS: list[dict] = []
TAG = "vdcl"  # names of the lab's namespaces and bridges (leftovers of a killed run are removed)


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def lab_ready():
    why = netns.available()
    if why is not None:
        pytest.skip(why)
    netns.leftovers(prefix=TAG)


@pytest.fixture(scope="session")
def cluster(lab_ready, request):
    from tests.cluster.topology import Cluster

    root = Path(tempfile.mkdtemp(prefix="vedina-cluster-"))
    built = Cluster.build(root, tag=TAG)
    failed_before = request.session.testsfailed
    try:
        yield built
    finally:
        built.destroy()
        if request.session.testsfailed == failed_before:  # keep the logs of a failed run only
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def report(request):
    """``report(drill, result, lost=..., **more)``: one line of the drill table."""

    def add(drill: str, result: dict, *, lost: int, **more) -> None:
        REPORTS.append({"drill": drill, "sent": result["sent"], "failed": result["failed"],
                        "lost_writes": lost, "acknowledged_writes": len(result["acked"]),
                        "failures": result["failures"], **more})

    return add


def pytest_terminal_summary(terminalreporter):
    if not REPORTS:
        return
    out = REPO / "var" / "cluster" / "drills.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(REPORTS, indent=2))
    terminalreporter.section("cluster drills")
    for line in REPORTS:
        extra = {k: v for k, v in line.items() if k not in ("drill", "sent", "failed", "lost_writes")}
        terminalreporter.write_line(f"{line['drill']:<40} sent {line['sent']:>6}  failed {line['failed']:>3}  "
                                    f"lost writes {line['lost_writes']}  {json.dumps(extra)}")
    terminalreporter.write_line(f"(written to {out})")
