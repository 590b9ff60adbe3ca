"""``GET /v1/alerts`` and the store signals of ``/metrics`` against a real PostgreSQL, written
by the pipeline's own sinks: a quiet store alerts nothing, a stopped feed is stale at the first
request after its threshold, a dead-letter burst shows with its reasons, a dead database is an
alert (and ``alphastream_db_up 0``)."""
from __future__ import annotations

import datetime as dt
import time

import apache_beam as beam
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from alphastream.records import Bar, DeadLetter, DeadLetterReason, PaneTiming
from pipeline.postgres_sink import WriteDeadLettersToPostgres
from serving.alerts import SEVERITY
from serving.main import create_app
from tests.fixtures.api import api_settings, write_bars
from tests.fixtures.paths import RULES

STALE_SECONDS = 6.0
DEAD_LETTER_WINDOW_SECONDS = 60.0
DEAD_LETTER_RATE = 1.0  # per second: more than 60 letters in the window
BAR_INTERVAL = "1s"


def live_bar(symbol: str, start: dt.datetime, pane_index: int = 0) -> Bar:
    """An early pane of a 1-second bar starting at ``start``, as a live pipeline writes it."""
    return Bar(symbol=symbol, interval=BAR_INTERVAL, bucket_start_us=int(start.timestamp()) * 1_000_000,
               open=100.0, high=101.0, low=99.5, close=100.5, volume=3.0, vwap=100.2, trades=3,
               timing=PaneTiming.EARLY.value, pane_index=pane_index)


def write_dead_letters(db_url: str, count: int, reason: DeadLetterReason) -> None:
    now_us = int(time.time() * 1_000_000)
    letters = [DeadLetter(reason=reason.value, detail="test burst", raw=f'{{"n": {n}}}', origin="test",
                          seen_at_us=now_us + n) for n in range(count)]
    with beam.Pipeline() as p:
        _ = p | beam.Create(letters) | WriteDeadLettersToPostgres(db_url)


def sleep_until(moment: dt.datetime) -> None:
    time.sleep(max(0.0, (moment - dt.datetime.now(dt.timezone.utc)).total_seconds()))


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def api(db_url):
    settings = api_settings(api_alert_stale_seconds=STALE_SECONDS,
                            api_alert_dead_letter_window_seconds=DEAD_LETTER_WINDOW_SECONDS,
                            api_alert_dead_letter_rate=DEAD_LETTER_RATE)
    with TestClient(create_app(settings, dsn=db_url)) as client:
        yield client


def alerts_of(api: TestClient) -> list[dict]:
    answer = api.get("/v1/alerts")
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_quiet_store_alerts_nothing(api, db_url):
    assert alerts_of(api) == []  # empty store
    write_bars(db_url, [live_bar("AAPL", dt.datetime.now(dt.timezone.utc))])
    write_dead_letters(db_url, 30, DeadLetterReason.BAD_PRICE)  # 0.5/s: under the rate
    assert alerts_of(api) == []
    samples = metric_samples(api.get("/metrics").text)
    assert samples[("alphastream_db_up", ())] == 1.0
    assert samples[("alphastream_dead_letters_recent", (("reason", "bad_price"),))] == 30


def test_stopped_feed_is_stale_at_the_first_request_after_the_threshold(api, db_url):
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    write_bars(db_url, [live_bar("AAPL", started), live_bar("MSFT", started)])
    ended = started + dt.timedelta(seconds=1)
    # Both feeds are live while their newest bar is younger than the threshold...
    assert dt.datetime.now(dt.timezone.utc) < ended + dt.timedelta(seconds=STALE_SECONDS), "writing bars took too long"
    assert alerts_of(api) == []
    # ...then AAPL's feed stops while MSFT's keeps writing bars.
    stale_at = ended + dt.timedelta(seconds=STALE_SECONDS)
    sleep_until(stale_at - dt.timedelta(seconds=2))
    write_bars(db_url, [live_bar("MSFT", dt.datetime.now(dt.timezone.utc).replace(microsecond=0))])
    sleep_until(stale_at + dt.timedelta(seconds=0.2))

    items = alerts_of(api)
    assert [(a["alert"], a["symbol"], a["interval"]) for a in items] == [("SymbolDataStale", "AAPL", BAR_INTERVAL)]
    alert = items[0]
    assert alert["severity"] == "warning" and alert["threshold"] == STALE_SECONDS
    assert STALE_SECONDS < alert["value"] < STALE_SECONDS + 5
    assert dt.datetime.fromisoformat(alert["since"]) == stale_at
    assert alert["runbook_url"] == "docs/alerts.md#symboldatastale" and "AAPL" in alert["summary"]
    samples = metric_samples(api.get("/metrics").text)
    assert samples[("alphastream_bar_age_seconds", (("interval", "1s"), ("symbol", "AAPL")))] > STALE_SECONDS

    write_bars(db_url, [live_bar("AAPL", dt.datetime.now(dt.timezone.utc).replace(microsecond=0))])
    assert all(a["symbol"] != "AAPL" for a in alerts_of(api)), "a feed that resumes is no longer stale"


def test_dead_letter_burst_shows_with_its_reasons(api, db_url):
    write_dead_letters(db_url, 90, DeadLetterReason.BAD_JSON)
    write_dead_letters(db_url, 10, DeadLetterReason.FUTURE_TIMESTAMP)
    items = alerts_of(api)
    assert [a["alert"] for a in items] == ["DeadLetterRate"]
    alert = items[0]
    assert alert["reasons"] == {"bad_json": 90, "future_timestamp": 10}
    assert alert["value"] == pytest.approx(100 / DEAD_LETTER_WINDOW_SECONDS)
    assert alert["threshold"] == DEAD_LETTER_RATE and "bad_json 90" in alert["summary"]


def test_unreachable_database_is_an_alert_and_db_up_zero():
    app = create_app(api_settings(api_pool_timeout_seconds=0.5),
                     dsn="postgresql://nobody@127.0.0.1:9/none?connect_timeout=1")
    with TestClient(app) as bare:
        answer = bare.get("/v1/alerts")
        metrics = bare.get("/metrics").text
    assert answer.status_code == 200
    assert [(a["alert"], a["severity"]) for a in answer.json()["items"]] == [("DatabaseUnreachable", "critical")]
    assert metric_samples(metrics)[("alphastream_db_up", ())] == 0.0


def test_alert_names_and_severities_are_the_prometheus_rules():
    rules = {rule["alert"]: rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    for name, severity in SEVERITY.items():
        assert rules[name.value]["labels"]["severity"] == severity, name


def test_alerts_need_the_api_key_when_one_is_set(db_url):
    with TestClient(create_app(api_settings(api_key="k3y"), dsn=db_url)) as client:
        assert client.get("/v1/alerts").status_code == 401
        assert client.get("/v1/alerts", headers={"Authorization": "Bearer k3y"}).json()["items"] == []
