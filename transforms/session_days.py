"""Daily bars follow the trading session: the ``1d`` bucket of a tick is its symbol's session.

With a ``SessionMap`` (``alphastream.sessions``), a ``1d`` bar covers one session [open, close)
of the symbol's calendar in the run's hours (regular or extended), and its bucket starts at
the session's open (so daylight saving moves it in UTC, a half-day's bar ends at the early
close, and a holiday has no bar). Its VWAP is the session VWAP. A tick outside every session is
in no ``1d`` bar; it still counts in the intraday bars. A 24/7 symbol's session is the UTC day,
which is also what every ``1d`` bucket is without a SessionMap. Other intervals stay epoch-aligned.

Sessions must be shorter than a day (every exchange_calendars calendar's are): the batch path
and the finaliser rely on a session ending within a day of its UTC day's start.

Batch (``transforms.batch_bars``) and repair reduce session buckets with numpy;
streaming (``transforms.bars.WindowedBars``) windows them with ``SessionDayWindows``.
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

from typing import Any

import numpy as np
from apache_beam.coders import coders
from apache_beam.transforms import window
from apache_beam.utils.timestamp import Timestamp

from alphastream.intervals import interval_micros
from alphastream.sessions import NO_SESSION, SessionMap

DAILY = "1d"


def follows_sessions(interval: str, sessions: SessionMap | None) -> bool:
    """Whether ``interval``'s buckets are sessions (only ``1d``, and only with a SessionMap)."""
    return sessions is not None and interval == DAILY


def bucket_starts(symbol: str, interval: str, ts_us: np.ndarray, sessions: SessionMap | None) -> np.ndarray:
    """The bucket start of each time: its session's open for a session-following interval
    (NO_SESSION outside every session), else the epoch-aligned bucket."""
    if sessions is not None and follows_sessions(interval, sessions):
        return sessions.session_bounds(symbol, ts_us)[0]
    width = interval_micros(interval)
    starts: np.ndarray = ts_us - ts_us % width
    return starts


class SessionDayWindows(window.NonMergingWindowFn):
    """Streaming ``1d`` windows: (symbol, value) at time t -> the window [open, close) of the
    symbol's session holding t, so the window closes (and lateness counts) from the session
    close. Elements outside every session must be left out before (bucket_starts says which):
    Beam's runners expect every element to have a window."""

    def __init__(self, sessions: SessionMap):
        self._sessions = sessions

    def assign(self, context: Any) -> list[window.IntervalWindow]:
        symbol = context.element[0]
        opens, closes = self._sessions.session_bounds(symbol, np.array([context.timestamp.micros], dtype=np.int64))
        if opens[0] == NO_SESSION:
            raise ValueError(f"{symbol} at {context.timestamp} is outside every session: "
                             "leave such elements out of 1d windows (transforms.session_days.bucket_starts)")
        return [window.IntervalWindow(Timestamp(micros=int(opens[0])), Timestamp(micros=int(closes[0])))]

    def get_window_coder(self) -> coders.IntervalWindowCoder:
        return coders.IntervalWindowCoder()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._sessions == other._sessions

    def __hash__(self) -> int:
        return hash(self._sessions)
