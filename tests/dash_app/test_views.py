"""Dashboard view logic without a browser: windows, live merging, watchlist, health, client."""
from __future__ import annotations

import datetime as dt
import socket

import pandas as pd
import pytest

from dash_app import panels, views
from dash_app.__main__ import parse_args
from dash_app.api_client import ApiClient, ApiError, ApiUnavailable, SymbolInfo, _split_page
from dash_app.settings import DashSettings
from dash_app.updates import overlays_from_inputs, watchlist_table
from tests.fixtures.bars import SESSION_OPEN, make_bars

# -- windows ---------------------------------------------------------------------------------


def test_relative_range_ends_after_newest_bar_not_at_wall_clock():
    newest = "2026-11-23T20:59:00Z"  # the demo's last 1m bar of a past session
    now = pd.Timestamp("2026-11-24T06:00:00Z")
    window = views.resolve_window("1d", "1m", newest, now)
    assert window.end == "2026-11-23T21:00:00.000000Z"
    assert window.start == "2026-11-22T21:00:00.000000Z"
    hour = views.resolve_window("1h", "5m", newest, now)
    assert (hour.start, hour.end) == ("2026-11-23T20:00:00.000000Z", "2026-11-23T21:00:00.000000Z")


def test_relative_range_without_bars_uses_the_clock():
    now = pd.Timestamp("2026-11-24T06:00:30Z")
    window = views.resolve_window("1h", "1m", None, now)
    assert window.end == "2026-11-24T06:01:00.000000Z"


def test_custom_range_takes_whole_days_and_rejects_bad_input():
    window = views.resolve_window("custom", "1h", None, SESSION_OPEN, "2026-11-20", "2026-11-23")
    assert (window.start, window.end) == ("2026-11-20T00:00:00.000000Z", "2026-11-24T00:00:00.000000Z")
    with pytest.raises(ValueError, match="both a start and an end"):
        views.resolve_window("custom", "1h", None, SESSION_OPEN, "2026-11-20", None)
    with pytest.raises(ValueError, match="before start"):
        views.resolve_window("custom", "1h", None, SESSION_OPEN, "2026-11-23", "2026-11-20")
    with pytest.raises(ValueError, match="unknown range"):
        views.resolve_window("1y", "1h", None, SESSION_OPEN)


# -- live merging ----------------------------------------------------------------------------


def test_merge_bars_updates_the_open_bar_in_place_and_appends_new_ones():
    held = make_bars(3)
    updated_last = {**held[-1], "close": 123.0, "high": 123.0, "pane_index": 2, "timing": "EARLY"}
    new = make_bars(1, start=SESSION_OPEN + pd.Timedelta(minutes=3), seed=9)[0]
    merged = views.merge_bars(held, [updated_last, new])
    assert [b["bucket_start"] for b in merged] == [b["bucket_start"] for b in held] + [new["bucket_start"]]
    assert merged[2]["close"] == 123.0
    assert merged[:2] == held[:2]


def test_merge_bars_matches_times_spelled_differently():
    held = make_bars(1)
    same_time_other_spelling = {**held[0], "bucket_start": "2026-11-23T14:30:00+00:00", "close": 1.0}
    assert views.merge_bars(held, [same_time_other_spelling]) == [same_time_other_spelling]


def test_trim_to_span_keeps_the_window_width():
    bars = make_bars(90)
    kept = views.trim_to_span(bars, dt.timedelta(hours=1), "1m")
    assert len(kept) == 60
    assert kept[-1] == bars[-1]
    assert views.trim_to_span(bars, None, "1m") == bars


def test_live_fetch_starts_at_the_newest_bar_held():
    window = views.Window("2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z")
    bars = make_bars(5)
    assert views.live_fetch_start(bars, window) == bars[-1]["bucket_start"]
    assert views.live_fetch_start([], window) == window.start


def test_bars_frame_parses_times_and_numbers():
    bars = make_bars(3)
    bars[0] = {**bars[0], "open": "101.5"}  # a decimal serialised as a string
    frame = views.bars_frame(list(reversed(bars)))
    assert frame["bucket_start"].is_monotonic_increasing
    assert str(frame["bucket_start"].dt.tz) == "UTC"
    assert frame.loc[0, "open"] == 101.5


# -- watchlist -------------------------------------------------------------------------------


def test_watchlist_marks_stale_symbols_and_reads_the_quotes():
    now = pd.Timestamp("2026-11-23T21:00:30Z")
    symbols = [SymbolInfo("AAPL", "2026-11-23T14:30:00Z", "2026-11-23T21:00:00Z", 110.0),
               SymbolInfo("MSFT", "2026-11-23T14:30:00Z", "2026-11-23T20:00:00Z", 50.0),
               SymbolInfo("NODATA", None, None, None)]
    quotes = [{"symbol": "AAPL", "price": 111.0, "day_open": 100.0, "day_volume": 12345, "change_pct": 11.0,
               "bucket_start": "2026-11-23T20:59:00Z", "updated_at": "2026-11-23T21:00:00Z"}]
    rows = {r.symbol: r for r in panels.watchlist_rows(symbols, quotes, now, stale_seconds=120)}
    assert rows["AAPL"].change_pct == pytest.approx(11.0) and rows["AAPL"].last_price == 111.0
    assert rows["AAPL"].volume == 12345
    assert rows["AAPL"].age_seconds == 30 and not rows["AAPL"].stale  # from updated_at
    # no quote: the symbol list's newest bar says how old it is
    assert rows["MSFT"].stale and rows["MSFT"].age_seconds == 3630 and rows["MSFT"].last_price == 50.0
    assert rows["MSFT"].change_pct is None and rows["MSFT"].volume is None
    assert rows["NODATA"].stale and rows["NODATA"].age_seconds is None and rows["NODATA"].last_price is None

    table = watchlist_table(list(rows.values()), selected="AAPL")
    text = str(table)
    assert text.count("badge-stale") == 2
    assert "+11.00%" in text and "selected" in text and "12.3k" in text


@pytest.mark.parametrize("volume,text", [(None, "—"), (8120, "8,120"), (45_300, "45.3k"),
                                         (1_042_707, "1.04M"), (2.5e9, "2.5B")])
def test_format_volume(volume, text):
    assert panels.format_volume(volume) == text


@pytest.mark.parametrize("seconds,text", [(None, "no data"), (42, "42 s"), (150, "2 min"),
                                          (7200, "2 h"), (3 * 86400, "3 d")])
def test_format_age(seconds, text):
    assert views.format_age(seconds) == text


def test_overlays_from_inputs_falls_back_on_bad_windows():
    overlays = overlays_from_inputs(["sma", "bollinger"], "30", None, 1, "x", "5m", "AAPL")
    assert overlays.sma == (30,) and overlays.ema == ()
    assert overlays.bollinger == 20 and overlays.volatility == 20 and not overlays.vwap


# -- pipeline health -------------------------------------------------------------------------


def test_dead_letter_counts_by_reason_and_bucket():
    dead = [{"reason": "bad_price", "seen_at": "2026-11-23T14:31:10Z"},
            {"reason": "bad_price", "seen_at": "2026-11-23T14:31:50Z"},
            {"reason": "bad_json", "seen_at": "2026-11-23T14:35:00Z"}]
    counts = panels.dead_letter_counts(dead, panels.health_bucket(dead))
    assert panels.health_bucket(dead) == "1m"
    assert counts.loc[pd.Timestamp("2026-11-23T14:31Z"), "bad_price"] == 2
    assert counts["bad_json"].sum() == 1
    assert panels.dead_letter_counts([]).empty


def test_throughput_per_minute_sums_trades_and_counts_bars_over_symbols():
    aapl = make_bars(3, symbol="AAPL")
    msft = make_bars(2, start=SESSION_OPEN + pd.Timedelta(minutes=4), symbol="MSFT")
    rates = panels.throughput_per_minute({"AAPL": aapl, "MSFT": msft, "NONE": []})
    assert len(rates) == 6  # 14:30 .. 14:35, the quiet 14:33 included with zeros
    assert rates.loc[pd.Timestamp("2026-11-23T14:30Z"), "ticks"] == aapl[0]["trades"]
    assert rates.loc[pd.Timestamp("2026-11-23T14:33Z")].tolist() == [0.0, 0.0]
    assert rates["bars"].sum() == 5
    assert rates["ticks"].sum() == sum(b["trades"] for b in aapl + msft)
    assert panels.throughput_per_minute({}).empty


def test_throughput_window_is_the_hour_up_to_the_newest_bar():
    symbols = [SymbolInfo("A", None, "2026-11-23T20:59:00Z", 1.0), SymbolInfo("B", None, "2026-11-23T20:10:00Z", 1.0),
               SymbolInfo("C", None, None, None)]
    start, end = panels.throughput_window(symbols)
    assert (pd.Timestamp(start), pd.Timestamp(end)) == (pd.Timestamp("2026-11-23T20:00Z"),
                                                        pd.Timestamp("2026-11-23T21:00Z"))
    assert panels.throughput_window(symbols[2:]) is None


# -- API client and command line ---------------------------------------------------------------


def test_split_page_reads_lists_and_cursor_pages():
    assert _split_page({"items": [{"a": 1}], "next_cursor": None}, "/x") == ([{"a": 1}], None)
    assert _split_page({"items": [{"a": 1}], "next_cursor": "abc"}, "/x") == ([{"a": 1}], "abc")
    with pytest.raises(ApiError, match=r"expected \{'items'.*got \['unexpected'\]"):
        _split_page({"unexpected": 1}, "/x")
    with pytest.raises(ApiError, match="got list"):
        _split_page([{"a": 1}], "/x")


def test_client_reports_an_unreachable_api_with_its_url():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ApiClient(f"http://127.0.0.1:{port}/", timeout=2)
    with pytest.raises(ApiUnavailable, match=f"unreachable at http://127.0.0.1:{port}"):
        client.symbols()


def test_command_line_overrides_environment(monkeypatch):
    monkeypatch.setenv("ALPHASTREAM_API_URL", "http://10.0.0.1:9000")
    monkeypatch.setenv("ALPHASTREAM_DASH_PORT", "8123")
    defaults = DashSettings()
    assert parse_args([], defaults).api_url == "http://10.0.0.1:9000"
    assert parse_args([], defaults).port == 8123
    args = parse_args(["--api-url", "http://127.0.0.1:1", "--port", "9"], defaults)
    assert (args.api_url, args.port) == ("http://127.0.0.1:1", 9)
