"""deploy/prometheus: the scrape config and alert rules pass promtool, every alert has a unit test
that fires it and one that does not, and the rules use only metric names the app defines."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.ops.observability import promtool

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "vedina-alerts.yml"
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus)")


def alert_names() -> set[str]:
    return {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}


def test_the_scrape_config_passes_promtool_check_config():
    checked = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = {job["job_name"] for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    assert {"vedina-api", "vedina-worker", "mysqld", "redis", "rabbitmq"} <= jobs


def test_the_alert_rules_pass_promtool_check_rules():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {"VedinaHighErrorRate", "VedinaHighP99Latency", "Vedina5xxBurst", "VedinaOutboxBacklogGrowing",
            "VedinaDeadLetters", "VedinaRedisFallbackActive", "VedinaReplicaLag", "VedinaWorkerDown"} <= alert_names()


def test_the_alert_unit_tests_pass():
    tests = sorted(str(path) for path in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    checked = promtool("test", "rules", *tests)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_is_shown_to_fire_and_not_to_fire():
    fires, silent = set(), set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alert_names() - fires == set(), "never shown firing"
    assert alert_names() - silent == set(), "never shown silent"


def test_the_rules_name_only_metrics_the_app_defines():
    from prometheus_client import REGISTRY

    import vedina.metrics  # noqa: F401  (registers every vedina_ metric)

    defined = {sample_name for collector in list(REGISTRY._collector_to_names)
               for sample_name in REGISTRY._collector_to_names[collector]}
    used = set(re.findall(r"\b(vedina_[a-z_]+)", RULES.read_text()))
    assert used and used <= defined, used - defined
