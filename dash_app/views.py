"""View logic of the price chart as plain functions: what to fetch, how to merge, what to show.

The callbacks are thin: they read the inputs, call these functions and the API client, and
hand the results to the figure builders. Everything here is testable without a browser.
Times are ISO-8601 UTC strings at the edges (API, browser store) and pandas timestamps inside.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from alphastream.intervals import interval_seconds
from dash_app.api_client import BAR_COLUMNS

INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")
DEFAULT_INTERVAL = "1m"

# Time ranges the picker offers, as spans ending at the symbol's newest bar.
RANGE_SPANS: dict[str, dt.timedelta | None] = {
    "1h": dt.timedelta(hours=1),
    "1d": dt.timedelta(days=1),
    "1w": dt.timedelta(weeks=1),
    "custom": None,
}
RANGE_LABELS: dict[str, str] = {"1h": "Last hour", "1d": "Last day", "1w": "Last week", "custom": "Custom"}
DEFAULT_RANGE = "1d"

NUMERIC_BAR_COLUMNS = ("open", "high", "low", "close", "volume", "vwap")


# -- times ---------------------------------------------------------------------------------------


def parse_time(value: str | dt.datetime | pd.Timestamp) -> pd.Timestamp:
    """A UTC timestamp from an ISO-8601 string (naive strings are taken as UTC)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def iso(stamp: pd.Timestamp | dt.datetime) -> str:
    """ISO-8601 UTC with a ``Z``, the spelling the API's query parameters take."""
    return parse_time(stamp).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- bars ----------------------------------------------------------------------------------------


def bars_frame(bars: Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
    """Bars as a DataFrame, oldest first: bucket_start as UTC timestamps, prices as floats."""
    if isinstance(bars, pd.DataFrame):
        return bars
    frame = pd.DataFrame(list(bars), columns=list(BAR_COLUMNS))
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True, format="ISO8601")
    for column in NUMERIC_BAR_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["trades"] = pd.to_numeric(frame["trades"], errors="coerce")
    return frame.sort_values("bucket_start", kind="stable").reset_index(drop=True)


def merge_bars(existing: Iterable[dict], fresh: Iterable[dict]) -> list[dict]:
    """Bars of both lists, one per bucket, the fresh version winning, oldest first.

    Live mode fetches from the newest bar it already has, so the last (still open) bar comes
    back updated by each early pane and replaces the old copy in place.
    """
    by_start = {parse_time(bar["bucket_start"]): bar for bar in existing}
    for bar in fresh:
        by_start[parse_time(bar["bucket_start"])] = bar
    return [by_start[start] for start in sorted(by_start)]


def trim_to_span(bars: list[dict], span: dt.timedelta | None, interval: str) -> list[dict]:
    """Only the bars within ``span`` of the newest one (live mode keeps the window's width)."""
    if span is None or not bars:
        return bars
    first = parse_time(bars[-1]["bucket_start"]) + pd.Timedelta(seconds=interval_seconds(interval)) - span
    return [bar for bar in bars if parse_time(bar["bucket_start"]) >= first]


@dataclass(frozen=True)
class Window:
    """The time range to fetch: [start, end) as ISO-8601 UTC."""

    start: str
    end: str


def resolve_window(range_key: str, interval: str, newest_bar: str | None, now: pd.Timestamp,
                   custom_start: str | None = None, custom_end: str | None = None) -> Window:
    """The window a range choice means for one symbol.

    Relative ranges end just after the symbol's newest bar rather than at the wall clock, so a
    historical data set (the demo is a past trading day) still fills the chart; for live data
    the newest bar is the current one and the two agree. A custom range takes whole UTC days,
    end day included.
    """
    if range_key == "custom":
        if not custom_start or not custom_end:
            raise ValueError("custom range: pick both a start and an end date")
        start = parse_time(custom_start).floor("D")
        end = parse_time(custom_end).floor("D") + pd.Timedelta(days=1)
        if end <= start:
            raise ValueError(f"custom range: end {custom_end} is before start {custom_start}")
        return Window(iso(start), iso(end))
    span = RANGE_SPANS.get(range_key)
    if span is None:
        raise ValueError(f"unknown range {range_key!r}: expected one of {', '.join(RANGE_SPANS)}")
    step = pd.Timedelta(seconds=interval_seconds(interval))
    anchor = parse_time(newest_bar) if newest_bar else parse_time(now)
    end = anchor.floor(step) + step
    return Window(iso(end - span), iso(end))


def live_fetch_start(bars: Sequence[dict], window: Window) -> str:
    """Where a live poll starts fetching: the newest bar held (it may have been updated)."""
    return bars[-1]["bucket_start"] if bars else window.start


# -- freshness ----------------------------------------------------------------------------------


def format_age(seconds: float | None) -> str:
    """Freshness for people: 42 s, 7 min, 3 h, 2 d."""
    if seconds is None:
        return "no data"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
