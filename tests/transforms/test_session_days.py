"""Daily bars follow the trading session (transforms.session_days): batch, both streaming paths
and repair give the same 1d bars as an independent pandas computation that reads the session
days from exchange_calendars itself, over real dates: Thanksgiving 2026 (no session), the
half-day after it (closes 13:00 New York time), the DST change of 1 November 2026, and a 24/7
crypto pair whose 1d bar stays the UTC day."""
from __future__ import annotations

import datetime as dt
import json
import random

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphastream.records import Tick
from alphastream.sessions import SessionMap
from alphastream.tick_archive import TickArchive
from pipeline.repair import closed_until, recompute
from tests.fixtures.beam import Collected
from tests.fixtures.per_tick import PerTickBars, PerTickDedup
from tests.fixtures.reference import assert_same_bars, bars_frame, pandas_bars
from transforms.bars import merge_all
from transforms.batch_bars import BatchBars, bars_from_ordered_ticks, session_parts
from transforms.parse import TICKS
from transforms.tick_batches import DEDUP_BUCKET_US, BarsFromTickBatches, DedupTickBatches, ParseTickBatches
from transforms.tick_tables import ticks_to_table
from transforms.validation import ValidationPolicy

DAY_US = 86_400_000_000
INTERVALS = ("1h", "1d")
CALENDARS = {"AAPL": "XNYS", "SHOP": "XTSE", "BTC-USD": "24/7"}
OVERRIDES = (("SHOP", "XTSE"),)  # Toronto: no US Thanksgiving; the default map sends the others


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


# Thanksgiving week (holiday 26 November, half-day 27 November) and the week of the DST change.
SPANS = ((utc("2026-11-24T00:00"), utc("2026-11-29T00:00")), (utc("2026-10-30T00:00"), utc("2026-11-04T00:00")))


def market(seed: int, count: int, span: tuple[int, int]) -> list[Tick]:
    """Ticks of three symbols spread over ``span``, in time order, with repeated deliveries."""
    rng = random.Random(seed)
    ticks = [Tick(rng.choice(list(CALENDARS)), rng.randrange(*span), round(rng.uniform(90, 110), 2),
                  float(rng.randrange(0, 9)), str(i), rng.choice(["a", "b"])) for i in range(count)]
    return sorted(ticks + rng.sample(ticks, count // 20), key=lambda t: t.ts_us)


def reference(ticks: list[Tick], hours: str) -> pd.DataFrame:
    return pandas_bars(pd.DataFrame(ticks, columns=Tick._fields), INTERVALS, CALENDARS, hours)


def run_batch(ticks: list[Tick], sessions: SessionMap, dedup_horizon_seconds: int = 0) -> list:
    tables = [ticks_to_table(ticks[i:i + 700]) for i in range(0, len(ticks), 700)]
    with TestPipeline() as p:
        got = Collected(p | beam.Create(tables, reshuffle=False)
                        | BatchBars(INTERVALS, dedup_horizon_seconds, sessions=sessions))
    return got.items


def streaming_options():
    options = TestPipeline().options
    options.view_as(StandardOptions).streaming = True
    return options


def final_panes(bars: list) -> list:
    last = {}
    for bar in bars:
        key = (bar.symbol, bar.interval, bar.bucket_start_us)
        if key not in last or bar.pane_index > last[key].pane_index:
            last[key] = bar
    return list(last.values())


def run_messages(ticks: list[Tick], sessions: SessionMap, per_message: int = 40) -> list:
    """The streaming graph's path: JSON-array messages, shuffled, each stamped with its earliest tick."""
    chunks = [ticks[i:i + per_message] for i in range(0, len(ticks), per_message)]
    messages = [TimestampedValue(("test", json.dumps([t._asdict() for t in chunk]).encode()),
                                 Timestamp(micros=chunk[0].ts_us)) for chunk in chunks]
    random.Random(3).shuffle(messages)
    stream = (TestStream().advance_watermark_to(Timestamp(micros=ticks[0].ts_us - ticks[0].ts_us % 1000))
              .add_elements(messages).advance_watermark_to_infinity())
    with TestPipeline(options=streaming_options()) as p:
        parsed = p | stream | ParseTickBatches(lambda: 2**62, "test", ValidationPolicy(), DEDUP_BUCKET_US)
        got = Collected(parsed[TICKS] | DedupTickBatches(DEDUP_BUCKET_US, horizon_seconds=10**6)
                        | BarsFromTickBatches(INTERVALS, 0, 0, sessions))
    return final_panes(got.items)


def run_per_tick(ticks: list[Tick], sessions: SessionMap) -> list:
    first_us = ticks[0].ts_us
    stream = (TestStream().advance_watermark_to(Timestamp(micros=first_us - first_us % 1000))
              .add_elements([TimestampedValue(t, Timestamp(micros=t.ts_us)) for t in ticks])
              .advance_watermark_to_infinity())
    with TestPipeline(options=streaming_options()) as p:
        got = Collected(p | stream | PerTickDedup(horizon_seconds=10**6) | PerTickBars(INTERVALS, 0, 0, sessions))
    return final_panes(got.items)


@pytest.mark.parametrize("hours", ["regular", "extended"])
@pytest.mark.parametrize("span", SPANS, ids=["thanksgiving", "dst"])
def test_batch_streaming_and_pandas_agree_on_session_days(hours, span):
    ticks = market(seed=11, count=600, span=span)
    sessions = SessionMap(OVERRIDES, hours)
    expected = reference(ticks, hours)
    assert_same_bars(bars_frame(run_batch(ticks, sessions, dedup_horizon_seconds=3_600)), expected)
    assert_same_bars(bars_frame(run_messages(ticks, sessions)), expected)
    assert_same_bars(bars_frame(run_per_tick(ticks, sessions)), expected)

    days = expected[(expected["interval"] == "1d")]
    opens = {(symbol, pd.Timestamp(start, unit="us").strftime("%m-%d %H:%M"))
             for symbol, start in zip(days["symbol"], days["bucket_start_us"], strict=True)}
    if span == SPANS[0]:
        assert not any(s == "AAPL" and day.startswith("11-26") for s, day in opens)  # Thanksgiving
        assert ("AAPL", "11-27 14:30" if hours == "regular" else "11-27 09:00") in opens
        assert ("SHOP", "11-26 14:30" if hours == "regular" else "11-26 09:00") in opens  # open in Toronto
        assert ("BTC-USD", "11-26 00:00") in opens
        half_day = days[(days["symbol"] == "AAPL") & (days["bucket_start_us"] == utc("2026-11-27T14:30"))]
        if hours == "regular":  # the half-day's bar ends at 13:00 New York time
            in_half_day = [t for t in ticks if t.symbol == "AAPL" and utc("2026-11-27T14:30") <= t.ts_us
                           < utc("2026-11-27T18:00")]
            assert half_day["trades"].item() == len({(t.source, t.trade_id) for t in in_half_day})
    else:
        assert ("AAPL", "10-30 13:30" if hours == "regular" else "10-30 08:00") in opens  # summer time
        assert ("AAPL", "11-02 14:30" if hours == "regular" else "11-02 09:00") in opens  # winter time


def test_a_session_window_closes_at_the_session_close():
    """A tick that is late for the half-day's session (the watermark passed 13:00 New York time)
    is dropped with no allowed lateness, where a UTC-day window would still be open."""
    on_time = Tick("AAPL", utc("2026-11-27T15:00"), 100.0, 1.0, "1", "a")
    late = Tick("AAPL", utc("2026-11-27T17:00"), 120.0, 1.0, "2", "a")
    crypto_on_time = Tick("BTC-USD", utc("2026-11-27T17:00"), 50.0, 1.0, "3", "a")
    stream = (TestStream().advance_watermark_to(Timestamp(micros=utc("2026-11-27T14:00")))
              .add_elements([TimestampedValue(t, Timestamp(micros=t.ts_us)) for t in (on_time,)])
              .advance_watermark_to(Timestamp(micros=utc("2026-11-27T18:30")))
              .add_elements([TimestampedValue(t, Timestamp(micros=t.ts_us)) for t in (late, crypto_on_time)])
              .advance_watermark_to_infinity())
    with TestPipeline(options=streaming_options()) as p:
        got = Collected(p | stream | PerTickBars(("1d",), 0, 0, SessionMap()))
    bars = {(b.symbol, b.bucket_start_us): b for b in got.items}
    assert set(bars) == {("AAPL", utc("2026-11-27T14:30")), ("BTC-USD", utc("2026-11-27T00:00"))}
    assert bars["AAPL", utc("2026-11-27T14:30")].trades == 1
    assert bars["AAPL", utc("2026-11-27T14:30")].high == 100.0
    assert bars["BTC-USD", utc("2026-11-27T00:00")].trades == 1  # the UTC day is still open


@pytest.mark.parametrize("hours", ["regular", "extended"])
def test_repair_ranges_own_the_sessions_opening_in_them(tmp_path, hours):
    """Two consecutive repairs (as finaliser passes make them) give the batch path's bars, each
    session's 1d bar exactly once, also for extended sessions crossing midnight UTC."""
    start, end = SPANS[0]
    ticks = market(seed=5, count=600, span=(start, end))
    archive = TickArchive(str(tmp_path), "ingest")
    archive.append(ticks)
    archive.close()
    sessions = SessionMap(OVERRIDES, hours)
    middle = utc("2026-11-27T00:00")
    repaired = [b for edges in ((start, middle), (middle, end))
                for b in recompute(str(tmp_path), *edges, INTERVALS, now_us=end + 30 * DAY_US, sessions=sessions).bars]
    expected = bars_frame([b for b in run_batch(ticks, sessions) if b.bucket_start_us >= start])
    assert_same_bars(bars_frame(repaired), expected)
    # A 1d bar is final only when every session opening before the edge has closed.
    assert closed_until(utc("2026-11-28T00:30"), 0, INTERVALS, sessions) == utc("2026-11-27T00:00")
    assert closed_until(utc("2026-11-28T00:30"), 0, INTERVALS) == utc("2026-11-28T00:00")


tick_times = st.lists(st.tuples(st.sampled_from(list(CALENDARS)), st.integers(*SPANS[0]),
                                st.integers(1, 5), st.integers(0, 3)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tick_times, st.sampled_from(["regular", "extended"]), st.integers(1, 4))
def test_session_parts_of_any_split_merge_to_the_pandas_session_bar(rows, hours, splits):
    """The batch path's pieces: a session's partial bars from any split of its ticks merge to
    the bar pandas computes, and so does bars_from_ordered_ticks over all of them at once."""
    ticks = sorted((Tick(symbol, ts, float(price), float(size), str(i), "a")
                    for i, (symbol, ts, price, size) in enumerate(rows)), key=lambda t: (t.ts_us, t.trade_id))
    sessions = SessionMap(OVERRIDES, hours)
    expected = reference(ticks, hours)
    made = []
    for symbol in sorted({t.symbol for t in ticks}):
        own = [t for t in ticks if t.symbol == symbol]
        ts, price, size = (np.array([getattr(t, f) for t in own]) for f in ("ts_us", "price", "size"))
        made += bars_from_ordered_ticks(symbol, ts, price, size, INTERVALS, sessions)
        table = ticks_to_table(own).drop_columns(["symbol"])
        cuts = np.array_split(np.arange(len(own)), splits)
        parts: dict = {}
        for rows_of_part in cuts:
            for key, acc in session_parts(symbol, table, rows_of_part, sessions):
                parts[key] = merge_all([parts.get(key), acc])
        by_open = {b.bucket_start_us: b for b in made if b.symbol == symbol and b.interval == "1d"}
        assert sorted(by_open) == sorted(open_us for _, open_us in parts)
        for (_, open_us), acc in parts.items():
            bar = by_open[open_us]
            assert (acc.open, acc.close, acc.high, acc.low, acc.trades) == (bar.open, bar.close, bar.high, bar.low,
                                                                              bar.trades)
    assert_same_bars(bars_frame(made), expected)
