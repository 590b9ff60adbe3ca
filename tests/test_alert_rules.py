"""deploy/prometheus: the alert rules pass their promtool unit tests, every alert is tested
firing and quiet, and Prometheus and Alertmanager accept the configuration.

promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages; these
tests fail (not skip) without them, because unchecked alert rules are how alerts silently rot.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"
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
    runbook = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text().lower()
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
