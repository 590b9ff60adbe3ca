"""deploy/prometheus: the alert rules pass their promtool unit tests, every alert is tested
firing and quiet, every metric a rule reads is one the API or ingestion really exposes, and
Prometheus and Alertmanager accept the configuration.

promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages; these
tests fail (not skip) without them, because unchecked alert rules are how alerts silently rot.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alphastream.records import Bar, PaneTiming, Tick
from ingestion.connectors.coinbase import CoinbaseFeed
from ingestion.metrics import IngestionMetrics
from ingestion.sinks.base import StdoutSink
from serving.main import create_app
from tests.fixtures.api import api_settings, write_bars
from tests.fixtures.paths import PROMETHEUS_DIR, RULES

RULE_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
FEEDS = Path(__file__).parents[1] / "data" / "feeds"
TOOL_TIMEOUT_SECONDS = 60


def run_tool(name: str, *args: str) -> str:
    path = shutil.which(name)
    assert path, (f"{name} not found: install Debian's prometheus and prometheus-alertmanager packages "
                  "(apt-get install prometheus prometheus-alertmanager)")
    done = subprocess.run([path, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_SECONDS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{name} {' '.join(args)} failed:\n{output}"
    return output


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_rule_unit_tests_pass():
    assert "SUCCESS" in run_tool("promtool", "test", "rules", str(RULE_TESTS))


def test_every_alert_is_tested_firing_and_quiet():
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = alert_names()
    assert len(names) == len(set(names)), "alert names must be unique"
    assert set(names) - firing == set(), "alerts without a test where they fire"
    assert set(names) - quiet == set(), "alerts without a test where they stay quiet"


def test_every_alert_has_a_runbook_section():
    runbook = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text().lower()
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"## {anchor}" in runbook, f"docs/alerts.md has no section for {rule['alert']}"


def test_prometheus_config_and_rules_are_valid():
    output = run_tool("promtool", "check", "config", "prometheus.yml")
    assert f"{len(alert_names())} rules found" in output


def test_alertmanager_config_is_valid():
    run_tool("amtool", "check-config", "alertmanager.yml")


# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SERIES = {"up"}
METRIC_NAME = re.compile(r"\b(alphastream_[a-z0-9_]+|up)\b(?!\s*\()")


def rule_metric_names() -> dict[str, set[str]]:
    """{alert: metric names its expression reads}."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: set(METRIC_NAME.findall(rule["expr"])) for g in groups for rule in g["rules"]}


def exposed_names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def ingestion_exposition() -> str:
    """A coinbase connector's exposition after frames with a sequence gap were read and ticks published."""
    feed = CoinbaseFeed(["BTC-USD", "ETH-USD"])
    for line in (FEEDS / "coinbase_gaps.jsonl").read_text().splitlines():
        if line.strip():
            feed.parse_frame(line)
    sink = StdoutSink(open(os.devnull, "w"))
    metrics = IngestionMetrics(feed, sink)
    sink.publish(Tick("BTC-USD", 1, 1.0, 1.0, "1", "coinbase"))
    feed.stats.record_tick("BTC-USD", time.time())
    return generate_latest(metrics.registry).decode()


def api_exposition(db_url: str) -> str:
    """The API's /metrics over a store holding one bar, after one request was answered."""
    write_bars(db_url, [Bar("AAPL", "1m", 0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1, PaneTiming.ON_TIME.value, 0)])
    with TestClient(create_app(api_settings(), dsn=db_url)) as client:
        client.get("/v1/symbols")
        return client.get("/metrics").text


def test_every_metric_a_rule_reads_is_exposed_by_the_api_or_ingestion(db_url):
    exposed = exposed_names(api_exposition(db_url)) | exposed_names(ingestion_exposition()) | PROMETHEUS_SERIES
    used = rule_metric_names()
    assert all(used.values()), f"rules whose metrics the pattern did not find: {used}"
    missing = {alert: sorted(names - exposed) for alert, names in used.items() if names - exposed}
    assert not missing, f"rules reading metrics nothing exposes (renamed?): {missing}"
