"""Yahoo Finance via yfinance, polled, one tick per bar (see ``polling``).

``yfinance.Ticker(symbol).history(period="1d", interval="1m")`` returns a DataFrame indexed by
bar start (tz-aware, the exchange's zone) with Open, High, Low, Close, Volume columns
(``yfinance.download`` returns the same with a (field, ticker) column MultiIndex; both are
accepted). Yahoo publishes no rate limit for this unofficial API; poll gently (default 60 s).
"""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pandas as pd

from alphastream.intervals import interval_seconds
from alphastream.records import MICROS_PER_SECOND, Tick
from ingestion.connectors.base import MalformedFrame
from ingestion.connectors.polling import BarPoller, bar_close_tick

INTERVALS = ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h")
DEFAULT_POLL_SECONDS = 60.0
HISTORY_PERIOD = "1d"


def history_ticks(symbol: str, frame: pd.DataFrame, interval: str, source: str = "yahoo") -> list[Tick]:
    """A yfinance history DataFrame -> one tick per bar with a close, oldest first."""
    if isinstance(frame.columns, pd.MultiIndex):  # yfinance.download: (field, ticker) columns
        try:
            frame = frame.xs(symbol, axis=1, level=-1)
        except KeyError:
            raise MalformedFrame(f"yfinance frame has no columns for {symbol!r}") from None
    missing = {"Close", "Volume"} - set(frame.columns)
    if missing or not isinstance(frame.index, pd.DatetimeIndex):
        raise MalformedFrame(f"yfinance frame lacks {sorted(missing) or 'a DatetimeIndex'}")
    interval_us = interval_seconds(interval) * MICROS_PER_SECOND
    index = frame.index if frame.index.tz is not None else frame.index.tz_localize("UTC")
    ticks = []
    for start, close, volume in zip(index, frame["Close"], frame["Volume"], strict=True):
        if pd.isna(close):
            continue  # yfinance pads the current minute with NaN until it has a trade
        start_us = int(start.tz_convert(dt.timezone.utc).value // 1_000)
        ticks.append(bar_close_tick(symbol=symbol, bar_start_us=start_us, interval_us=interval_us,
                                    interval_name=interval, close=float(close),
                                    volume=0.0 if pd.isna(volume) else float(volume), source=source))
    return sorted(ticks, key=lambda t: t.ts_us)


class YahooPoller(BarPoller):
    source = "yahoo"

    def __init__(self, symbols: list[str], interval: str = "1m", poll_seconds: float = DEFAULT_POLL_SECONDS, **kwargs):
        super().__init__(symbols, poll_seconds, **kwargs)
        if interval not in INTERVALS:
            raise ValueError(f"yahoo interval must be one of {INTERVALS}, got {interval!r}")
        self.interval = interval

    def _history(self, symbol: str) -> Any:
        import yfinance  # imported lazily: slow to import, and only this source needs it

        return yfinance.Ticker(symbol).history(period=HISTORY_PERIOD, interval=self.interval)

    async def fetch_ticks(self, symbol: str) -> list[Tick]:
        frame = await asyncio.to_thread(self._history, symbol)
        self.stats.frames += 1
        if frame is None or frame.empty:
            return []
        return history_ticks(symbol, frame, self.interval, self.source)
