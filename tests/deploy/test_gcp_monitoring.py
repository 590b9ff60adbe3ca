"""terraform/gcp/monitoring.tf offline: every alert policy and the dashboard parse into the
google-cloud-monitoring types (unknown fields rejected), and every metric type they use is one
GCP or the pipeline emits. ``terraform fmt -check`` is clean."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from google.cloud import monitoring_dashboard_v1, monitoring_v3
from google.protobuf import json_format

from alphastream.records import METRICS_NAMESPACE
from tests.fixtures import hcl

GCP = Path(__file__).resolve().parents[2] / "terraform" / "gcp"
# GCP's documented metric types (cloud.google.com/monitoring/api/metrics_gcp) that the policies may use.
GCP_METRIC_TYPES = {
    "dataflow.googleapis.com/job/data_watermark_age", "dataflow.googleapis.com/job/system_lag",
    "dataflow.googleapis.com/job/is_failed", "dataflow.googleapis.com/job/user_counter",
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age",
    "run.googleapis.com/request_count", "run.googleapis.com/request_latencies",
    "cloudsql.googleapis.com/database/cpu/utilization", "cloudsql.googleapis.com/database/disk/utilization",
}
REQUIRED = {"data_watermark_age", "system_lag", "is_failed", "oldest_unacked_message_age", "user_counter",
            "request_count", "request_latencies", "cpu/utilization", "disk/utilization"}


def _load() -> dict:
    return hcl.unquote_all(hcl.load(GCP / "monitoring.tf"))


def _unwrap(value):
    """python-hcl2 gives every block and attribute as a one-element list and keeps string
    escapes; proto messages want the value itself."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, str):
        return value.replace('\\"', '"')
    return value


def _substitute(template, entry: dict):
    """Fill ``${each.value.X}`` from the for_each entry (Terraform would; other references stay)."""
    if isinstance(template, dict):
        return {k: _substitute(v, entry) for k, v in template.items()}
    if isinstance(template, list):
        return [_substitute(v, entry) for v in template]
    if isinstance(template, str):
        whole = re.fullmatch(r"\$\{each\.value\.(\w+)\}", template)
        if whole:
            return entry[whole.group(1)]
        return re.sub(r"\$\{each\.value\.(\w+)\}", lambda m: str(entry[m.group(1)]), template)
    return template


def policies() -> dict[str, monitoring_v3.AlertPolicy]:
    tf = _load()
    entries = _unwrap(next(local["threshold_alerts"] for local in tf["locals"] if "threshold_alerts" in local))
    resource = next(r["google_monitoring_alert_policy"] for r in tf["resource"]
                    if "google_monitoring_alert_policy" in r)["threshold"]
    template = {k: v for k, v in _unwrap(resource).items() if k not in ("for_each", "project")}
    parsed = {}
    for key, entry in entries.items():
        body = _substitute(template, entry)
        # A threshold from a variable is a number at apply time; stand in a number offline.
        threshold = body["conditions"]["condition_threshold"]
        if isinstance(threshold["threshold_value"], str):
            threshold["threshold_value"] = 1.0
        body["notification_channels"] = []  # var.alert_notification_channels, a list of ids
        body["user_labels"] = {}
        threshold["aggregations"] = [threshold["aggregations"]]  # repeated blocks are lists in the API
        body["conditions"] = [body["conditions"]]
        policy = monitoring_v3.AlertPolicy.pb()()
        json_format.ParseDict(body, policy, ignore_unknown_fields=False)
        parsed[key] = monitoring_v3.AlertPolicy.wrap(policy)
    return parsed


def _metric_type(metric_filter: str) -> str:
    match = re.search(r'metric\.type\s*=\s*"([^"]+)"', metric_filter)
    assert match, f"filter names no metric type: {metric_filter}"
    return match.group(1)


def test_every_policy_parses_into_the_alert_policy_type_and_uses_real_metrics():
    parsed = policies()
    types = {_metric_type(p.conditions[0].condition_threshold.filter) for p in parsed.values()}
    assert types <= GCP_METRIC_TYPES, f"unknown metric types: {types - GCP_METRIC_TYPES}"
    assert all(any(t.endswith(r) for t in types) for r in REQUIRED), "a required signal has no policy"
    for key, policy in parsed.items():
        condition = policy.conditions[0].condition_threshold
        assert condition.comparison == monitoring_v3.ComparisonType.COMPARISON_GT, key
        assert condition.aggregations[0].per_series_aligner != 0, key
        assert policy.documentation.content, f"{key} has no runbook text"


def test_dead_letter_policy_watches_the_pipelines_own_counter():
    dead = policies()["pipeline-dead-letters"].conditions[0].condition_threshold.filter
    names = re.findall(r'metric\.label\.metric_name\s*=\s*"([^"]+)"', dead)
    assert names == ["ticks_dead_lettered"]
    source = (Path(__file__).resolve().parents[2] / "transforms" / "parse.py").read_text()
    assert f'Metrics.counter(METRICS_NAMESPACE, "{names[0]}")' in source and METRICS_NAMESPACE


def test_an_unknown_field_is_rejected():
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict({"display_name": "x", "conditionz": []}, monitoring_v3.AlertPolicy.pb()(),
                              ignore_unknown_fields=False)


def test_dashboard_parses_and_charts_real_metrics():
    text = (GCP / "monitoring_dashboard.json").read_text()
    dashboard = monitoring_dashboard_v1.Dashboard.pb()()
    json_format.Parse(text, dashboard, ignore_unknown_fields=False)
    filters = [w.xy_chart.data_sets[0].time_series_query.time_series_filter.filter
               for w in dashboard.grid_layout.widgets]
    assert {_metric_type(f) for f in filters} == GCP_METRIC_TYPES - {"dataflow.googleapis.com/job/is_failed"}
    assert 'dashboard_json = file("${path.module}/monitoring_dashboard.json")' in (GCP / "monitoring.tf").read_text()
    assert json.loads(text)["displayName"]


def test_terraform_fmt_is_clean():
    terraform = shutil.which("terraform")
    assert terraform, "terraform not found (scripts/setup.sh installs it)"
    done = subprocess.run([terraform, "fmt", "-check", "-diff", "monitoring.tf", "monitoring_variables.tf"],
                          cwd=GCP, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
