"""OHLCV bars from Arrow tables of ticks: the fast batch path.

Beam's FixedWindows on the DirectRunner in batch costs time quadratic in windows per key. So
batch does not window: ticks stay columnar, are split by (symbol, coarse bucket) where the
coarse bucket is a multiple of the largest interval (every interval must divide it, so no bar
straddles two groups), grouped in the global window, and each group is deduplicated and turned
into bars for every interval with numpy. Groups span at least a UTC day, whatever the
intervals: a symbol-day is the unit tick data comes in, and each group costs a fixed Beam and
Arrow overhead, so fewer, larger groups are faster. Parallelism is symbols x days; one group
holds one symbol-day of ticks in memory (docs/benchmarks.md sizes it).

The shuffle carries each group as LZ4-compressed Arrow IPC bytes (typed ``bytes``): the
DirectRunner's data plane copies every shuffled byte several times, so smaller is better; and
its GroupingBuffer decodes and re-encodes every shuffled value with the value's coder, which
for bytes is a copy but for a ``pa.Table`` (ArrowTableCoder) would be a second decompression
and compression. Uncompressed IPC saves a little CPU for much more peak memory.

Deliveries of one trade (transforms.trade_identity) resolve to the smallest (ts_us, price, size)
whatever the order of rows and files. A trade redelivered with another time can fall in the next
group (across midnight, say): each group also receives, as *context*, the rows of the previous
group within ``dedup_horizon_seconds`` of its end, resolves identities over context and own
rows together and makes bars from its own winning rows only. Only the previous group sends
context: a later group's rows are later, so they never win. Deliveries of one trade farther
apart than the horizon are matched only when they fall in the same group.

With sessions (transforms.session_days), ``1d`` bars are sessions, and a session can span two
groups (extended hours cross midnight UTC): each group emits its partial bar of every session it
touches, combined per (symbol, session) after the groups, a few elements per symbol-day.

The result equals the streaming paths over the same ticks whenever each trade's deliveries
reach streaming together (tests/transforms/test_batch_bars.py proves it): the same total trade order
(ts_us, trade_id, source) picks open and close.
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput

from alphastream.intervals import interval_micros, interval_seconds
from alphastream.records import METRICS_NAMESPACE, Bar, PaneTiming
from alphastream.sessions import NO_SESSION, SessionMap
from transforms.bars import OhlcvAccumulator, OhlcvCombineFn, bar_from_accumulator
from transforms.beam_types import PColl, Transform
from transforms.session_days import DAILY, bucket_starts, follows_sessions
from transforms.tick_tables import ipc_to_table, table_to_ipc
from transforms.trade_identity import DELIVERY_ORDER

# Trades are ordered by (ts_us, trade_id, source), then arrival: open and close follow it.
TRADE_ORDER = ("ts_us", "trade_id", "source")
BARS, SESSION_PARTS = "bars", "session_parts"  # _DedupAndBarsDoFn's outputs
# Groups span at least this long (see the module docstring).
MIN_GROUP_SECONDS = 86_400


def check_intervals_nest(intervals: tuple[str, ...]) -> None:
    """Every interval must divide the largest one (1m, 5m, 1h: yes; 1m, 7m, 1h: no)."""
    largest = max(interval_seconds(i) for i in intervals)
    odd = [i for i in intervals if largest % interval_seconds(i)]
    if odd:
        raise ValueError(
            f"intervals {', '.join(odd)} do not divide the largest interval ({max(intervals, key=interval_seconds)}); "
            "choose intervals that nest, e.g. 1m,5m,15m,1h"
        )


def coarse_bucket_micros(intervals: tuple[str, ...], min_group_seconds: int = MIN_GROUP_SECONDS) -> int:
    """The group width: the smallest multiple of the largest interval spanning min_group_seconds."""
    largest = max(interval_micros(i) for i in intervals)
    multiple = max(1, -(-min_group_seconds * 1_000_000 // largest))
    return largest * multiple


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """(int64 code per row, the distinct values): integer keys numpy can sort and compare
    fast, where comparing strings row by row would cost a Python object per row."""
    encoded = pc.dictionary_encode(column).combine_chunks()  # chunks share one dictionary
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary


def split_by_symbol_bucket(table: pa.Table, coarse_us: int) -> Iterator[tuple[tuple[str, int], pa.Table]]:
    """Yield ((symbol, coarse bucket start), sub-table) covering every row of ``table``. The
    sub-tables leave the symbol column out: the key carries it, and neither the take below
    nor the shuffle then copies a string per row for it."""
    if table.num_rows == 0:
        return
    symbol_codes, symbols = _codes(table.column("symbol"))
    ts = table.column("ts_us").to_numpy()
    coarse = ts - ts % coarse_us
    bucket_index = (coarse - coarse.min()) // coarse_us
    group = symbol_codes * (int(bucket_index.max()) + 1) + bucket_index
    order = np.argsort(group, kind="stable")  # stable: rows keep their order within a group
    group = group[order]
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    ends = np.append(starts[1:], len(group))
    ordered = table.drop_columns(["symbol"]).take(pa.array(order))
    for start, end in zip(starts, ends, strict=True):
        row = order[start]
        yield (symbols[symbol_codes[row]].as_py(), int(coarse[row])), ordered.slice(start, end - start)


def context_for_next_group(table: pa.Table, coarse_us: int,
                           horizon_us: int) -> Iterator[tuple[tuple[str, int], pa.Table]]:
    """Yield ((symbol, next group start), rows of ``table`` within ``horizon_us`` of their group's
    end): what the next group needs to see an earlier delivery of its trades (``horizon_us`` is
    at most ``coarse_us``, so no other group can hold one)."""
    if table.num_rows == 0 or horizon_us <= 0:
        return
    ts = table.column("ts_us").to_numpy()
    near_end = ts % coarse_us >= coarse_us - horizon_us
    if not near_end.any():
        return
    for (symbol, start), rows in split_by_symbol_bucket(table.filter(pa.array(near_end)), coarse_us):
        yield (symbol, start + coarse_us), rows


def trade_order(table: pa.Table, max_python_ties: float = 0.05) -> np.ndarray:
    """Row indices sorting ``table`` by TRADE_ORDER, stable (full ties keep their row order).

    numpy sorts the int64 timestamps; only rows whose timestamp ties with a neighbour are
    then ordered by (trade_id, source) in Python. With microsecond times ties are rare apart
    from repeated deliveries of one trade, and this is far quicker than Arrow's multi-key
    sort_indices. Feeds with coarse times (seconds, milliseconds) tie a lot: past
    ``max_python_ties`` of the rows, Arrow sorts instead.
    """
    ts = table.column("ts_us").to_numpy()
    order = np.argsort(ts, kind="stable")
    ordered_ts = ts[order]
    ties = ordered_ts[1:] == ordered_ts[:-1]
    if not ties.any():
        return order
    in_tie = np.zeros(len(ts), dtype=bool)
    in_tie[1:] |= ties
    in_tie[:-1] |= ties
    positions = np.flatnonzero(in_tie)  # runs of equal timestamps, in ascending ts order
    if len(positions) > max_python_ties * len(ts):
        by_arrow: np.ndarray = pc.sort_indices(table, sort_keys=[(key, "ascending") for key in TRADE_ORDER]).to_numpy()
        return by_arrow
    rows = order[positions]
    row_ids = pa.array(rows)
    keys = sorted(zip(ordered_ts[positions].tolist(), table.column("trade_id").take(row_ids).to_pylist(),
                      table.column("source").take(row_ids).to_pylist(), rows.tolist(), strict=True))
    # Sorting by ts first keeps every run inside its own positions; the row index last keeps
    # full ties stable. Python compares str by code point, which is UTF-8 byte order: Arrow's.
    order[positions] = [key[3] for key in keys]
    return order


def winning_deliveries(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(row indices of the kept delivery of each trade, in trade order; row indices of the
    conflicting deliveries dropped). ``table`` holds one symbol, so a trade is (source, trade_id)
    here; its kept delivery is the smallest (ts_us, price, size), the first row among equal ones."""
    order = trade_order(table)
    trade_codes, trade_ids = _codes(table.column("trade_id"))
    if len(trade_ids) == table.num_rows:
        return order, np.empty(0, dtype=np.int64)  # no trade id occurs twice, so no trade does
    # Only rows whose trade id occurs more than once can repeat a trade; they are few, so the
    # source and delivery columns are read for them alone, not encoded whole.
    suspects = np.flatnonzero(np.bincount(trade_codes)[trade_codes] > 1)
    rows = pa.array(suspects)
    source_codes, _ = _codes(table.column("source").take(rows))
    ts, price, size = (table.column(name).take(rows).to_numpy() for name in DELIVERY_ORDER)
    # By trade, then delivery order; lexsort is stable, so among equal deliveries the first row leads.
    by_trade = np.lexsort((size, price, ts, trade_codes[suspects], source_codes))
    source_codes, trade_codes = source_codes[by_trade], trade_codes[suspects][by_trade]
    ts, price, size, suspects = ts[by_trade], price[by_trade], size[by_trade], suspects[by_trade]
    repeat = np.concatenate(([False], (source_codes[1:] == source_codes[:-1]) & (trade_codes[1:] == trade_codes[:-1])))
    winner = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(repeat))))  # each row's trade's first
    disagrees = (ts != ts[winner]) | (price != price[winner]) | (size != size[winner])
    keep = np.ones(len(order), dtype=bool)
    keep[suspects[repeat]] = False
    return order[keep[order]], suspects[repeat & disagrees]


class BucketColumns(NamedTuple):
    """Per bucket of ordered ticks: the first and last row, and the bar's sums and extremes."""

    starts: np.ndarray  # row of each bucket's first tick
    ends: np.ndarray  # one past its last tick
    highs: np.ndarray
    lows: np.ndarray
    volumes: np.ndarray
    notionals: np.ndarray
    price_sums: np.ndarray


def bucket_columns(buckets: np.ndarray, price: np.ndarray, size: np.ndarray, notional: np.ndarray) -> BucketColumns:
    """Reduce ordered ticks (``buckets`` non-decreasing, one start per row) bucket by bucket."""
    starts = np.flatnonzero(np.concatenate(([True], buckets[1:] != buckets[:-1])))
    ends = np.concatenate((starts[1:], [len(buckets)]))
    return BucketColumns(starts, ends, np.maximum.reduceat(price, starts), np.minimum.reduceat(price, starts),
                         np.add.reduceat(size, starts), np.add.reduceat(notional, starts),
                         np.add.reduceat(price, starts))


def bars_from_ordered_ticks(symbol: str, ts: np.ndarray, price: np.ndarray, size: np.ndarray,
                            intervals: tuple[str, ...], sessions: SessionMap | None = None) -> Iterator[Bar]:
    """Bars of one symbol from the columns of its deduplicated ticks, in trade order; with
    ``sessions``, ``1d`` bars are sessions (transforms.session_days)."""
    notional = price * size
    for interval in intervals:
        buckets = bucket_starts(symbol, interval, ts, sessions)
        if follows_sessions(interval, sessions):
            in_session = buckets != NO_SESSION
            if not in_session.any():
                continue
            buckets, interval_price, interval_size = buckets[in_session], price[in_session], size[in_session]
            interval_notional = notional[in_session]
        else:
            interval_price, interval_size, interval_notional = price, size, notional
        cols = bucket_columns(buckets, interval_price, interval_size, interval_notional)
        counts = cols.ends - cols.starts
        vwaps = np.divide(cols.notionals, cols.volumes, out=cols.price_sums / counts, where=cols.volumes > 0)
        # Rounding of the sums can put the quotient just outside the bar's prices.
        np.clip(vwaps, cols.lows, cols.highs, out=vwaps)
        # tolist() turns each column into Python numbers in one call, not one scalar at a time.
        columns = (buckets[cols.starts], interval_price[cols.starts], cols.highs, cols.lows,
                   interval_price[cols.ends - 1], cols.volumes, vwaps, counts)
        for bucket, open_, high, low, close, volume, vwap, trades in zip(*(c.tolist() for c in columns), strict=True):
            yield Bar(
                symbol=symbol, interval=interval, bucket_start_us=bucket, open=open_, high=high, low=low,
                close=close, volume=volume, vwap=vwap, trades=trades, timing=PaneTiming.ON_TIME.value, pane_index=0,
            )


SessionPart = tuple[tuple[str, int], OhlcvAccumulator]  # ((symbol, session open), partial bar)


def session_parts(symbol: str, ticks: pa.Table, rows: np.ndarray, sessions: SessionMap) -> Iterator[SessionPart]:
    """One group's partial ``1d`` bar of each session its ``rows`` (deduplicated, in trade order)
    touch: a session can span two groups (crossing UTC midnight), so the parts are combined."""
    ts = ticks.column("ts_us").to_numpy()[rows]
    opens = bucket_starts(symbol, DAILY, ts, sessions)
    in_session = opens != NO_SESSION
    if not in_session.any():
        return
    rows, ts, opens = rows[in_session], ts[in_session], opens[in_session]
    price, size = (ticks.column(name).to_numpy()[rows] for name in ("price", "size"))
    cols = bucket_columns(opens, price, size, price * size)
    edges = np.concatenate((cols.starts, cols.ends - 1))
    edge_rows = pa.array(rows[edges])
    trade_ids = ticks.column("trade_id").take(edge_rows).to_pylist()
    sources = ticks.column("source").take(edge_rows).to_pylist()
    orders = list(zip(ts[edges].tolist(), trade_ids, sources, strict=True))
    n = len(cols.starts)
    columns = (opens[cols.starts], price[cols.starts], price[cols.ends - 1], cols.highs, cols.lows, cols.volumes,
               cols.notionals, cols.price_sums, cols.ends - cols.starts)
    for i, (open_us, open_, close, high, low, volume, notional, price_sum, trades) in enumerate(
            zip(*(c.tolist() for c in columns), strict=True)):
        yield (symbol, open_us), OhlcvAccumulator(orders[i], open_, orders[n + i], close, high, low, volume,
                                                  notional, price_sum, trades)


# A group's input parts: (True, rows of the previous group near its end) or (False, own rows).
GroupPart = tuple[bool, bytes]


class _SplitDoFn(beam.DoFn):
    def __init__(self, coarse_us: int, horizon_us: int):
        self._coarse_us, self._horizon_us = coarse_us, horizon_us

    def process(self, table: pa.Table) -> Iterable[tuple[tuple[str, int], GroupPart]]:
        for key, group in split_by_symbol_bucket(table, self._coarse_us):
            yield key, (False, table_to_ipc(group))
        for key, rows in context_for_next_group(table, self._coarse_us, self._horizon_us):
            yield key, (True, table_to_ipc(rows))


class _DedupAndBarsDoFn(beam.DoFn):
    """A group's parts -> its bars of ``intervals``; with ``sessions``, also the group's partial
    session bars on the SESSION_PARTS output."""

    def __init__(self, intervals: tuple[str, ...], sessions: SessionMap | None):
        self._intervals, self._sessions = intervals, sessions
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "ticks_duplicate")
        self._conflicting = Metrics.counter(METRICS_NAMESPACE, "ticks_conflicting")
        self._unique = Metrics.counter(METRICS_NAMESPACE, "ticks_unique")
        self._bars = {i: Metrics.counter(METRICS_NAMESPACE, f"bars_{i}") for i in intervals}

    def process(self, element: tuple[tuple[str, int], Iterable[GroupPart]]) -> Iterable[Any]:
        (symbol, _), parts = element
        context: list[pa.Table] = []
        own: list[pa.Table] = []
        for is_context, part in parts:
            (context if is_context else own).append(ipc_to_table(part))
        if not own:
            return []  # rows near the end of a day, but none in the next one
        # Context rows first: the row indices from own_start on are this group's own.
        own_start = sum(t.num_rows for t in context)
        ticks = pa.concat_tables(context + own)
        winners, conflicting = winning_deliveries(ticks)
        if own_start:
            winners, conflicting = winners[winners >= own_start], conflicting[conflicting >= own_start]
        self._duplicates.inc(ticks.num_rows - own_start - len(winners))
        self._conflicting.inc(len(conflicting))
        self._unique.inc(len(winners))
        if not len(winners):
            return []  # every own row redelivers a trade of the previous group
        # numpy takes of the three columns bars need: taking the table would copy strings too.
        ts, price, size = (ticks.column(name).to_numpy()[winners] for name in ("ts_us", "price", "size"))
        bars: list[Any] = list(bars_from_ordered_ticks(symbol, ts, price, size, self._intervals))
        for interval, count in Counter(bar.interval for bar in bars).items():
            self._bars[interval].inc(count)  # one metric update per interval, not per bar
        if self._sessions is not None:
            bars.extend(TaggedOutput(SESSION_PARTS, part)
                        for part in session_parts(symbol, ticks, winners, self._sessions))
        return bars


class _SessionBarDoFn(beam.DoFn):
    """((symbol, session open), whole session's accumulator) -> its final ``1d`` Bar."""

    def __init__(self) -> None:
        self._bars = Metrics.counter(METRICS_NAMESPACE, f"bars_{DAILY}")

    def process(self, element: SessionPart) -> Iterable[Bar]:
        (symbol, open_us), acc = element
        self._bars.inc()
        return [bar_from_accumulator(symbol, DAILY, open_us, acc, PaneTiming.ON_TIME, 0)]


class BatchBars(Transform):
    """Canonical tick tables (any split, duplicates allowed) -> final Bars for every interval.

    dedup_horizon_seconds: deliveries of one trade at most this far apart in event time are
    matched even across group edges (groups then span at least the horizon); farther apart,
    each counts. 0 matches only within a group.
    sessions: with a SessionMap, ``1d`` bars are sessions (transforms.session_days); a session's
    partial bars from the groups it spans are combined per (symbol, session).
    """

    def __init__(self, intervals: tuple[str, ...], dedup_horizon_seconds: int = 0,
                 min_group_seconds: int = MIN_GROUP_SECONDS, sessions: SessionMap | None = None):
        super().__init__()
        check_intervals_nest(intervals)
        if dedup_horizon_seconds < 0:
            raise ValueError(f"dedup horizon must be >= 0 seconds, got {dedup_horizon_seconds}")
        self._intervals = intervals
        self._coarse_us = coarse_bucket_micros(intervals, max(min_group_seconds, dedup_horizon_seconds))
        self._horizon_us = dedup_horizon_seconds * 1_000_000
        self._sessions = sessions if any(follows_sessions(i, sessions) for i in intervals) else None

    def expand(self, tables: PColl) -> PColl:
        groups = (
            tables
            | "SplitBySymbolBucket" >> beam.ParDo(_SplitDoFn(self._coarse_us, self._horizon_us)).with_output_types(
                tuple[tuple[str, int], GroupPart])
            | "GroupBySymbolBucket" >> beam.GroupByKey()
        )
        if self._sessions is None:
            bars: PColl = groups | "DedupAndBars" >> beam.ParDo(
                _DedupAndBarsDoFn(self._intervals, None)).with_output_types(Bar)
            return bars
        bar_intervals = tuple(i for i in self._intervals if not follows_sessions(i, self._sessions))
        made = groups | "DedupAndBars" >> beam.ParDo(_DedupAndBarsDoFn(bar_intervals, self._sessions)).with_outputs(
            SESSION_PARTS, main=BARS)
        session_bars = (made[SESSION_PARTS]
                        | "CombineSessionParts" >> beam.CombinePerKey(OhlcvCombineFn())
                        | "SessionBars" >> beam.ParDo(_SessionBarDoFn()).with_output_types(Bar))
        with_sessions: PColl = ((made[BARS], session_bars)
                                | "WithSessionBars" >> beam.Flatten().with_output_types(Bar))
        return with_sessions
