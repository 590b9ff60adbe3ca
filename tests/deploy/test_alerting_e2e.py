"""End to end, for real: Debian's Prometheus scrapes a running ``python -m ingestion --source
synthetic`` and the real API, evaluates the repository's alert rules, and Debian's Alertmanager
delivers to a webhook this test runs.

- Stopping the feed must deliver IngestionFeedSilent within a bounded time; starting it again
  must deliver the resolution. The feed publishes to the stdout sink: the alert concerns the
  feed, and no broker is needed for it.
- The API, run with an API key and scraped with it as a bearer token (``authorization:
  credentials_file``, as a production Prometheus would), over a PostgreSQL store whose only
  symbol has an old bar: SymbolDataStale must reach the webhook; a fresh bar resolves it.

Prometheus scrapes and evaluates every second here (production: 15 s), so the time to the feed
alert is the rule's own ``for: 30s`` plus a few seconds of plumbing. SymbolDataStale waits
``for: 2m`` in the repository; its expression and labels are used as they are, with ``for``
shortened (its timing is what the promtool tests check).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from alphastream.local_services import free_port, stop_process
from alphastream.records import Bar, PaneTiming
from serving.main import create_app
from tests.fixtures.api import api_settings, write_bars
from tests.fixtures.servers import HOST, PORT_PLACEHOLDER, Command, serve

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT = "IngestionFeedSilent"
STORE_ALERT = "SymbolDataStale"
STORE_ALERT_FOR = "2s"
API_KEY = "e2e-scrape-key"
STARTUP_TIMEOUT_SECONDS = 30.0
# The rule waits 30 s (`for`); scrape, evaluation and Alertmanager's group wait add ~3 s.
FIRE_WITHIN_SECONDS = 45.0
RESOLVE_WITHIN_SECONDS = 20.0


class Webhook:
    """An Alertmanager webhook receiver on loopback recording every notification."""

    def __init__(self) -> None:
        self.notifications: list[dict] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.notifications.append(json.loads(body))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, status: str, timeout: float, alert: str = ALERT) -> dict:
        """The first notification of ``alert`` with ``status`` (firing / resolved)."""
        def match():
            return next((n for n in self.notifications if n["status"] == status
                         and any(a["labels"].get("alertname") == alert for a in n["alerts"])), None)

        with self.arrived:
            assert self.arrived.wait_for(match, timeout), (
                f"no {status} {alert} notification within {timeout:.0f} s; got {self.notifications}")
            return match()


def require(binary: str) -> str:
    path = shutil.which(binary)
    assert path, f"{binary} not found: apt-get install prometheus prometheus-alertmanager"
    return path


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)


def prometheus_value(port: int, query: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


@contextlib.contextmanager
def alerting(tmp_path: Path, scrape_configs: list[dict], rules: Path = RULES) -> Iterator[tuple[Webhook, int]]:
    """Webhook, Alertmanager and Prometheus (scraping ``scrape_configs`` with ``rules``) on
    loopback; yields (webhook, prometheus port)."""
    webhook = Webhook()
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "test", "group_by": ["alertname", "feed", "symbol"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": webhook.url, "send_resolved": True}]}],
    }))
    alertmanager = Command([require("prometheus-alertmanager"), f"--config.file={tmp_path / 'alertmanager.yml'}",
                            f"--web.listen-address={HOST}:{PORT_PLACEHOLDER}", "--cluster.listen-address=",
                            f"--storage.path={tmp_path / 'am'}"],
                           ready_path="/-/ready", log_path=tmp_path / "alertmanager.log", name="Alertmanager")
    prometheus = Command([require("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--web.listen-address={HOST}:{PORT_PLACEHOLDER}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          "--rules.alert.resend-delay=1s"],
                         ready_path="/-/ready", log_path=tmp_path / "prometheus.log", name="Prometheus")
    try:
        with serve(alertmanager, timeout=STARTUP_TIMEOUT_SECONDS) as alertmanager_url:
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [
                    {"targets": [urllib.parse.urlsplit(alertmanager_url).netloc]}]}]},
                "scrape_configs": scrape_configs,
            }))
            with serve(prometheus, timeout=STARTUP_TIMEOUT_SECONDS) as prometheus_url:
                yield webhook, urllib.parse.urlsplit(prometheus_url).port
    finally:
        webhook.server.shutdown()


@pytest.fixture
def alerting_stack(tmp_path):
    """The stack scraping one ingestion process; yields (webhook, prometheus port, ingestion
    metrics port)."""
    feed_port = free_port()
    with alerting(tmp_path, [{"job_name": "ingestion", "static_configs": [
            {"targets": [f"127.0.0.1:{feed_port}"], "labels": {"feed": "synthetic"}}]}]) as (webhook, prom_port):
        yield webhook, prom_port, feed_port


def start_feed(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ingestion", "--source", "synthetic", "--sink", "stdout", "--rate", "50",
         "--num_symbols", "2", "--metrics_port", str(port), "--log_level", "WARNING"],
        cwd=ROOT, stdout=subprocess.DEVNULL)


def test_stopped_feed_alerts_the_webhook_and_resolves_when_it_returns(alerting_stack):
    webhook, prom_port, feed_port = alerting_stack
    feed = start_feed(feed_port)
    try:
        wait_until(lambda: prometheus_value(prom_port, 'up{job="ingestion"} == 1'), STARTUP_TIMEOUT_SECONDS,
                   "Prometheus to scrape the feed")
        wait_until(lambda: prometheus_value(prom_port, "alphastream_ingest_ticks_received_total > 0"),
                   STARTUP_TIMEOUT_SECONDS, "ticks to show in Prometheus")
        assert not webhook.notifications, "nothing may alert while the feed runs"

        stop_process(feed, "the synthetic feed", signal.SIGTERM)
        stopped = time.monotonic()
        firing = webhook.wait_for("firing", FIRE_WITHIN_SECONDS)
        fired_after = time.monotonic() - stopped
        alert = next(a for a in firing["alerts"] if a["labels"]["alertname"] == ALERT)
        assert alert["labels"]["feed"] == "synthetic" and alert["labels"]["severity"] == "critical"
        assert alert["annotations"]["runbook_url"].endswith("#ingestionfeedsilent")

        feed = start_feed(feed_port)
        restarted = time.monotonic()
        webhook.wait_for("resolved", RESOLVE_WITHIN_SECONDS)
        resolved_after = time.monotonic() - restarted
        print(f"{ALERT}: firing {fired_after:.1f} s after the feed stopped, resolved {resolved_after:.1f} s "
              "after it restarted")
    finally:
        stop_process(feed, "the synthetic feed", signal.SIGTERM)


def rules_with_short_for(tmp_path: Path, alert: str, duration: str) -> Path:
    """The repository's rules with ``alert``'s ``for`` set to ``duration``."""
    groups = yaml.safe_load(RULES.read_text())
    rule = next(r for g in groups["groups"] for r in g["rules"] if r.get("alert") == alert)
    rule["for"] = duration
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(groups))
    return path


def one_minute_bar(symbol: str, start: dt.datetime) -> Bar:
    return Bar(symbol, "1m", int(start.timestamp()) * 1_000_000, 10.0, 11.0, 9.0, 10.5, 5.0, 10.2, 5,
               PaneTiming.EARLY.value, 0)


def test_stale_symbol_in_the_store_alerts_through_the_api_scraped_with_its_key(tmp_path, db_url):
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    write_bars(db_url, [one_minute_bar("AAPL", now - dt.timedelta(hours=1))])
    (tmp_path / "api_key").write_text(API_KEY)
    rules = rules_with_short_for(tmp_path, STORE_ALERT, STORE_ALERT_FOR)
    with serve(create_app(api_settings(api_key=API_KEY), dsn=db_url)) as api_url:
        scrape = {"job_name": "api", "authorization": {"credentials_file": str(tmp_path / "api_key")},
                  "static_configs": [{"targets": [api_url.removeprefix("http://")]}]}
        with alerting(tmp_path, [scrape], rules) as (webhook, prom_port):
            wait_until(lambda: prometheus_value(prom_port, 'alphastream_db_up{job="api"} == 1'),
                       STARTUP_TIMEOUT_SECONDS, "Prometheus to scrape the API with its key")
            scraped = time.monotonic()
            firing = webhook.wait_for("firing", FIRE_WITHIN_SECONDS, STORE_ALERT)
            fired_after = time.monotonic() - scraped
            alert = next(a for a in firing["alerts"] if a["labels"]["alertname"] == STORE_ALERT)
            assert alert["labels"]["symbol"] == "AAPL" and alert["labels"]["interval"] == "1m"
            assert alert["annotations"]["runbook_url"].endswith("#symboldatastale")

            write_bars(db_url, [one_minute_bar("AAPL", now)])  # the feed is back: the open bar is written
            written = time.monotonic()
            webhook.wait_for("resolved", RESOLVE_WITHIN_SECONDS, STORE_ALERT)
            print(f"{STORE_ALERT}: firing {fired_after:.1f} s after the first authenticated scrape, resolved "
                  f"{time.monotonic() - written:.1f} s after a fresh bar was written")
            assert not any(a["labels"]["alertname"] == "DatabaseUnreachable"
                           for n in webhook.notifications for a in n["alerts"])
