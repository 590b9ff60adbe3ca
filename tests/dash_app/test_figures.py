"""Figure builders, and the session VWAP checked against an independent loop over the bars."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from dash_app import figures, indicators, views
from dash_app.figures import Overlays, gap_breaks
from dash_app.panels import dead_letter_counts
from dash_app.views import bars_frame
from tests.fixtures.bars import SESSION_OPEN, make_bars


def _validated(builder):
    """The builder's figure JSON read back by plotly, which also validates it."""
    return lambda *args, **kwargs: go.Figure(builder(*args, **kwargs))


candles_figure = _validated(figures.candles_figure)
dead_letters_figure = _validated(figures.dead_letters_figure)
throughput_figure = _validated(figures.throughput_figure)
message_figure = _validated(figures.message_figure)


def _trace(fig, name):
    return next(t for t in fig.data if t.name == name)


def test_candles_figure_has_one_candle_per_bar_and_shares_the_time_axis():
    bars = make_bars(390)
    fig = candles_figure(bars, Overlays())
    candles = fig.data[0]
    assert candles.type == "candlestick" and len(candles.x) == 390
    assert list(candles.open[:3]) == [b["open"] for b in bars[:3]]
    volume = next(t for t in fig.data if t.type == "bar")
    assert list(volume.y) == [b["volume"] for b in bars]
    # three panels (price, volume, volatility) on one shared time axis
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3"}
    assert fig.layout.xaxis.matches == "x3" and fig.layout.xaxis2.matches == "x3"
    assert fig.layout.xaxis.rangeslider.visible is False
    # naive UTC times: plotly.js has no time zones
    assert pd.Timestamp(candles.x[0]) == pd.Timestamp("2026-11-23 14:30:00")


def test_volume_bars_are_coloured_by_direction():
    bars = make_bars(20)
    volume = next(t for t in candles_figure(bars).data if t.type == "bar")
    expected = ["#16a34a" if b["close"] >= b["open"] else "#dc2626" for b in bars]
    assert list(volume.marker.color) == expected


def test_overlays_draw_the_lines_they_are_given():
    bars = make_bars(120)
    line = [float(i) for i in range(len(bars))]
    lines = indicators.OverlayLines(sma={10: line}, ema={30: line[::-1]}, bollinger=(line, line, line),
                                    volatility=line)
    fig = candles_figure(bars, Overlays(sma=(10,), ema=(30,), vwap=True, bollinger=20, volatility=15), lines)
    names = [t.name for t in fig.data]
    assert {"SMA 10", "EMA 30", "VWAP (session)", "BB(20, 2σ)", "volatility (15)"} <= set(names)
    assert names.count("BB(20, 2σ)") == 3  # upper, lower (filled between) and middle
    assert list(_trace(fig, "SMA 10").y) == line and list(_trace(fig, "EMA 30").y) == line[::-1]
    assert list(_trace(fig, "volatility (15)").y) == line
    plain = [t.name for t in candles_figure(bars, Overlays()).data]
    assert not {"SMA 10", "EMA 30", "VWAP (session)", "BB(20, 2σ)"} & set(plain)


def test_cached_layout_is_not_changed_by_a_figure():
    bars = make_bars(30) + make_bars(30, start=SESSION_OPEN + pd.Timedelta(days=1))
    with_breaks = candles_figure(bars, Overlays(title="AAPL", extra={"uirevision": "k"}))
    assert len(with_breaks.layout.xaxis.rangebreaks) == 1 and with_breaks.layout.uirevision == "k"
    again = candles_figure(make_bars(30), Overlays())
    assert not again.layout.xaxis.rangebreaks and again.layout.uirevision is None
    assert not again.layout.title.text


def test_empty_bars_give_a_figure_that_says_so():
    fig = candles_figure([], Overlays())
    assert not fig.data
    assert "No bars" in fig.layout.annotations[0].text
    assert message_figure("API down").layout.annotations[0].text == "API down"


def test_overnight_gap_is_cut_from_the_axis():
    day1 = make_bars(30)
    day2 = make_bars(30, start=SESSION_OPEN + pd.Timedelta(days=1))
    frame = bars_frame(day1 + day2)
    breaks = gap_breaks(frame["bucket_start"], "1m")
    assert len(breaks) == 1
    gap_start = SESSION_OPEN + pd.Timedelta(minutes=30)
    assert breaks[0]["values"] == [gap_start]
    assert breaks[0]["dvalue"] == (pd.Timedelta(days=1) - pd.Timedelta(minutes=30)).total_seconds() * 1000
    assert gap_breaks(bars_frame(day1)["bucket_start"], "1m") == []


# -- session VWAP (the dashboard's own line) ------------------------------------------------------


def test_session_vwap_resets_each_day():
    day1 = make_bars(30, seed=1)
    day2 = make_bars(30, start=SESSION_OPEN + pd.Timedelta(days=1), seed=2)
    frame = bars_frame(day1 + day2)
    vwap = indicators.session_vwap(frame)
    for day, end in ((day1, 29), (day2, 59)):
        notional = sum(b["vwap"] * b["volume"] for b in day)
        assert vwap.iloc[end] == pytest.approx(notional / sum(b["volume"] for b in day))
    assert vwap.iloc[30] == pytest.approx(day2[0]["vwap"])


def test_session_vwap_survives_bars_without_volume():
    bars = make_bars(3)
    bars[0] = {**bars[0], "volume": 0.0}
    vwap = indicators.session_vwap(bars_frame(bars))
    assert vwap.iloc[0] == pytest.approx(bars[0]["vwap"])
    assert vwap.iloc[1] == pytest.approx(bars[1]["vwap"])


# -- health figures -------------------------------------------------------------------------------


def test_dead_letters_figure_stacks_reasons():
    dead = [{"reason": r, "seen_at": f"2026-11-23T14:{m:02d}:00Z"}
            for r, m in (("bad_price", 1), ("bad_price", 2), ("bad_json", 2))]
    fig = dead_letters_figure(dead_letter_counts(dead, "1m"))
    assert fig.layout.barmode == "stack"
    assert sorted(t.name for t in fig.data) == ["bad_json", "bad_price"]
    assert sum(_trace(fig, "bad_price").y) == 2
    assert "No dead letters" in dead_letters_figure(pd.DataFrame()).layout.annotations[0].text


def test_throughput_figure_plots_both_rates():
    index = pd.date_range("2026-11-23T15:00Z", periods=3, freq="30s")
    rates = pd.DataFrame({"ticks": [100.0, 120.0, 90.0], "bars": [20.0, 20.0, 21.0]}, index=index)
    fig = throughput_figure(rates)
    assert list(_trace(fig, "ticks/min").y) == [100.0, 120.0, 90.0]
    assert _trace(fig, "bars/min").yaxis == "y2"


def _anomaly(bucket_start: str, kind: str, score: float, threshold: float, interval: str = "1m") -> dict:
    """An anomaly as ``GET /v1/anomalies`` serves it."""
    return {"symbol": "AAPL", "interval": interval, "bucket_start": bucket_start, "kind": kind, "score": score,
            "threshold": threshold, "details": {}, "updated_at": bucket_start}


def test_anomalies_are_marked_above_their_bars_with_kind_score_and_threshold():
    bars = make_bars(60)
    anomalies = [_anomaly(bars[10]["bucket_start"], "return_outlier", 7.25, 6.0),
                 _anomaly(bars[40]["bucket_start"], "return_outlier", -8.5, 6.0),
                 _anomaly(bars[25]["bucket_start"], "volume_spike", 12.0, 8.0)]
    fig = candles_figure(bars, Overlays(), figures.NO_LINES, anomalies)
    outliers, spikes = _trace(fig, "return outlier"), _trace(fig, "volume spike")
    assert outliers.mode == "markers" and outliers.yaxis == "y" and outliers.xaxis == "x"
    assert [pd.Timestamp(x) for x in outliers.x] == [pd.Timestamp(bars[i]["bucket_start"]).tz_localize(None)
                                                     for i in (10, 40)]
    assert [pd.Timestamp(x) for x in spikes.x] == [pd.Timestamp(bars[25]["bucket_start"]).tz_localize(None)]
    for trace, indices in ((outliers, (10, 40)), (spikes, (25,))):
        assert all(y > bars[i]["high"] for y, i in zip(trace.y, indices, strict=True))
    assert [tuple(row[:3]) for row in outliers.customdata] == [("return_outlier", 7.25, 6.0),
                                                                ("return_outlier", -8.5, 6.0)]
    assert "score" in outliers.hovertemplate and "threshold" in outliers.hovertemplate
    assert outliers.marker.color != spikes.marker.color


def test_an_anomaly_lands_on_the_chart_bar_holding_its_bucket():
    bars = make_bars(12, interval="5m")
    inside = pd.Timestamp(bars[3]["bucket_start"]) + pd.Timedelta(minutes=2)  # a 1m detection in bar 3
    before = pd.Timestamp(bars[0]["bucket_start"]) - pd.Timedelta(minutes=1)  # not on the chart
    anomalies = [_anomaly(views.iso(inside), "stale_price", 30, 30), _anomaly(views.iso(before), "gap_jump", 9, 6)]
    fig = candles_figure(bars, Overlays(interval="5m"), figures.NO_LINES, anomalies)
    stale = _trace(fig, "stale price")
    assert [pd.Timestamp(x) for x in stale.x] == [pd.Timestamp(bars[3]["bucket_start"]).tz_localize(None)]
    assert not any(t.name == "gap jump" for t in fig.data)


def test_no_anomalies_no_markers():
    fig = candles_figure(make_bars(30), Overlays(), figures.NO_LINES, [])
    assert not any(t.mode == "markers" for t in fig.data if t.type == "scatter")
