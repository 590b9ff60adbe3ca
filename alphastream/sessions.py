"""Trading sessions per symbol, from a maintained calendar (``exchange_calendars``).

Each symbol maps to an exchange calendar: an explicit override first, else a pair form
(``BTC-USD``, ``XBT/USD``) trades 24/7 and anything else is a US equity on ``XNYS``. Holidays,
early closes (half-days) and daylight-saving changes come from the calendar, never from here.

Two kinds of hours:

* ``regular``: the calendar's sessions (XNYS 09:30-16:00 New York time, 13:00 on a half-day).
* ``extended``: regular plus pre- and post-market, by the US convention on the same trading
  days: from 04:00 exchange time to 4 hours after the regular close (20:00, or 17:00 on a
  half-day). The calendar does not model extended hours; this convention is ours.

Used by gap filling (``transforms.gap_fill``): a bucket is filled only if it overlaps a session;
and by daily bars (``transforms.session_days``): a ``1d`` bar is a session, opening at its open.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

ALWAYS_OPEN = "24/7"
DAY_US = 86_400_000_000
NO_SESSION = np.iinfo(np.int64).min  # session_bounds' open and close of a time in no session
EQUITY_EXCHANGE = "XNYS"
HOURS = ("regular", "extended")
PRE_MARKET_OPEN = pd.Timedelta(hours=4)  # 04:00 exchange time
POST_MARKET_LENGTH = pd.Timedelta(hours=4)  # after the regular close


def parse_exchange_map(text: str) -> tuple[tuple[str, str], ...]:
    """'AAPL=XNYS,ETH-USD=24/7' -> (("AAPL", "XNYS"), ("ETH-USD", "24/7")); names checked."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        symbol, sep, exchange = part.partition("=")
        if not sep or not symbol.strip() or not exchange.strip():
            raise ValueError(f"bad exchange mapping {part!r}: expected SYMBOL=CALENDAR, e.g. AAPL=XNYS or ETH-USD=24/7")
        calendar(exchange.strip())  # an unknown calendar name fails here, naming the choices
        pairs.append((symbol.strip().upper(), exchange.strip()))
    return tuple(pairs)


@functools.lru_cache(maxsize=None)
def calendar(name: str) -> ExchangeCalendar:
    """The exchange_calendars calendar ``name`` (XNYS, XLON, 24/7...), built once per process."""
    import exchange_calendars

    try:
        return exchange_calendars.get_calendar(name)
    except exchange_calendars.errors.InvalidCalendarName:
        raise ValueError(f"unknown exchange calendar {name!r}: use a name from "
                         "exchange_calendars.get_calendar_names(), e.g. XNYS, XNAS, XLON, 24/7") from None


def _micros(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(values).tz_convert("UTC").as_unit("us").asi8, dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _sessions(name: str, hours: str, first_day: str, last_day: str) -> tuple[np.ndarray, np.ndarray]:
    """(opens, closes) in epoch us of ``name``'s sessions dated within [first_day, last_day]."""
    cal = calendar(name)
    first = max(pd.Timestamp(first_day), cal.first_session)
    last = min(pd.Timestamp(last_day), cal.last_session)
    if first > last:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    schedule = cal.schedule.loc[first:last]
    opens, closes = schedule["open"], schedule["close"]
    if hours == "extended":
        local_midnight = pd.DatetimeIndex(schedule.index).tz_localize(cal.tz)
        opens = pd.Series(local_midnight + PRE_MARKET_OPEN, index=schedule.index)
        closes = closes + POST_MARKET_LENGTH
    return _micros(opens), _micros(closes)


def _sessions_around(name: str, hours: str, first_us: int, last_us: int) -> tuple[np.ndarray, np.ndarray]:
    """(opens, closes) of ``name``'s sessions that may hold a time in [first_us, last_us]."""
    # Sessions are dated by their local day: one day either side covers every time zone.
    first_day = pd.Timestamp(first_us - DAY_US, unit="us").strftime("%Y-%m-%d")
    last_day = pd.Timestamp(last_us + DAY_US, unit="us").strftime("%Y-%m-%d")
    return _sessions(name, hours, first_day, last_day)


@dataclass(frozen=True)
class SessionMap:
    """Symbol -> exchange calendar, and which hours count as open."""

    overrides: tuple[tuple[str, str], ...] = ()
    hours: str = "regular"

    def __post_init__(self) -> None:
        if self.hours not in HOURS:
            raise ValueError(f"session hours must be one of {', '.join(HOURS)}, got {self.hours!r}")

    def exchange(self, symbol: str) -> str:
        for name, exchange in self.overrides:
            if name == symbol:
                return exchange
        return ALWAYS_OPEN if "-" in symbol or "/" in symbol else EQUITY_EXCHANGE

    def open_mask(self, symbol: str, bucket_starts: np.ndarray, width_us: int) -> np.ndarray:
        """Which buckets [start, start + width) overlap one of the symbol's sessions."""
        starts = np.asarray(bucket_starts, dtype=np.int64)
        exchange = self.exchange(symbol)
        if exchange == ALWAYS_OPEN or not len(starts):
            return np.ones(len(starts), dtype=bool)
        opens, closes = _sessions_around(exchange, self.hours, int(starts.min()), int(starts.max()))
        index = np.searchsorted(closes, starts, side="right")  # the first session closing after the start
        inside = index < len(closes)
        overlaps = np.zeros(len(starts), dtype=bool)
        overlaps[inside] = opens[index[inside]] < starts[inside] + width_us
        return overlaps

    def session_bounds(self, symbol: str, ts_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(open, close) in epoch us of the session [open, close) holding each time, both
        NO_SESSION for a time outside every session. A 24/7 symbol's session is its UTC day."""
        ts = np.asarray(ts_us, dtype=np.int64)
        if self.exchange(symbol) == ALWAYS_OPEN:
            day_start = ts - ts % DAY_US
            return day_start, day_start + DAY_US
        if not len(ts):
            return ts.copy(), ts.copy()
        opens, closes = _sessions_around(self.exchange(symbol), self.hours, int(ts.min()), int(ts.max()))
        index = np.searchsorted(closes, ts, side="right")  # the first session closing after the time
        inside = index < len(closes)
        inside[inside] = opens[index[inside]] <= ts[inside]
        found = np.where(inside, index, 0)
        no_session = np.full(len(ts), NO_SESSION, dtype=np.int64)
        if not len(closes):
            return no_session, no_session.copy()
        return np.where(inside, opens[found], no_session), np.where(inside, closes[found], no_session)
