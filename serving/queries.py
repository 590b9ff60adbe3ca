"""All of the API's SQL, parameterised only.

Column names come from ``alphastream.records`` (``storage_columns``), composed with
``psycopg.sql.Identifier``; every value a client sends travels as a bound parameter. The
statements are built once at import time.

Bars are served two ways: straight from a stored interval, or rolled up with ``date_bin``
from the largest stored interval that divides the requested one. Both produce the same
columns, so paging, CSV, indicators and the stream share one shape.
"""
from __future__ import annotations

import datetime as dt
import enum
import functools
from typing import Any, Callable, Mapping, ParamSpec, cast

from psycopg import AsyncConnection, sql

from alphastream.records import BAR_FIELDS, DEAD_LETTER_FIELDS, PaneTiming, storage_columns
from store.revisions import FINAL_REVISION

BARS_TABLE = "bars"
TICKS_TABLE = "ticks"
DEAD_LETTERS_TABLE = "dead_letters"
BARS = sql.Identifier(BARS_TABLE)
DEAD_LETTERS = sql.Identifier(DEAD_LETTERS_TABLE)

# Storage-only columns: written by the database, not part of the pipeline's records.
UPDATED_AT = "updated_at"
RECORDED_AT = "recorded_at"

BAR_COLUMNS: tuple[str, ...] = storage_columns(BAR_FIELDS)
BAR_ROW_COLUMNS: tuple[str, ...] = BAR_COLUMNS + (UPDATED_AT,)
# Derived from the stored pane by ``bar_state_columns``: whether a bar can still change.
STATE = "state"
REVISION = "revision"
BAR_STATE_COLUMNS: tuple[str, ...] = (STATE, REVISION)
# Derived from trades by ``FILLED_COLUMN``: a carry-forward bar of a bucket without a trade.
FILLED = "filled"
# A bar as the API serves it (JSON, CSV and the stream).
BAR_API_COLUMNS: tuple[str, ...] = BAR_ROW_COLUMNS + BAR_STATE_COLUMNS + (FILLED,)
DEAD_LETTER_COLUMNS: tuple[str, ...] = storage_columns(DEAD_LETTER_FIELDS)
DEAD_LETTER_ROW_COLUMNS: tuple[str, ...] = DEAD_LETTER_COLUMNS + (RECORDED_AT,)

P = ParamSpec("P")

# Buckets are aligned to the Unix epoch, as Beam's FixedWindows align them.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

_c = {name: sql.Identifier(name) for name in BAR_ROW_COLUMNS}  # KeyError below if records change
symbol, interval, bucket_start = _c["symbol"], _c["interval"], _c["bucket_start"]


def _columns(names: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _epoch_us(column: sql.Composable) -> sql.Composable:
    return sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(column)


class BarState(str, enum.Enum):
    """Whether a served bar can still change (``store.revisions.bar_state``)."""

    PROVISIONAL = "provisional"  # its window is open, or closed and not yet finalised
    FINAL = "final"  # stored final (a batch run or a repair): only a re-run over corrected input changes it
    REVISED = "revised"  # a late tick changed it after its window closed; not yet finalised


# Whether a stored bar is final, from its row: the store's own rule (store.revisions).
STORED_FINAL = sql.SQL("({} >= {})").format(sql.Identifier("revision"), sql.Literal(FINAL_REVISION))
FINAL = "final"  # that flag, carried through the bar queries under this name


def bar_state_columns(final: sql.Composable, timing: sql.Composable, pane_index: sql.Composable) -> sql.Composable:
    """The ``state`` and ``revision`` columns of a bar: the one place that decides whether a
    bar can change. The same rule as ``store.revisions.bar_state``, in SQL."""
    return sql.SQL("CASE WHEN {final} THEN {final_state} WHEN {timing} = {late} THEN {revised} "
                   "ELSE {provisional} END AS {state}, {pane_index} AS {revision}").format(
        final=final, final_state=sql.Literal(BarState.FINAL.value), timing=timing,
        late=sql.Literal(PaneTiming.LATE.value), revised=sql.Literal(BarState.REVISED.value),
        provisional=sql.Literal(BarState.PROVISIONAL.value), state=sql.Identifier(STATE), pane_index=pane_index,
        revision=sql.Identifier(REVISION))


# Gap filling writes a bar without a trade (``transforms.gap_fill.is_filled``); a real bar has at
# least one. A rolled-up bar is filled when every stored bar in it is (its trades sum to 0).
FILLED_COLUMN = sql.SQL("{} = 0 AS {}").format(_c["trades"], sql.Identifier(FILLED))


# -- catalog and symbols -------------------------------------------------------------------------

# Every stored (symbol, interval) with its first and last bar. A loose index scan over the
# primary key (a recursive CTE that jumps to the next key), so the cost grows with the number
# of pairs, not of bars.
CATALOG = sql.SQL("""
WITH RECURSIVE pairs AS (
    (SELECT {symbol}, {interval} FROM {bars} ORDER BY {symbol}, {interval} LIMIT 1)
    UNION ALL
    SELECT nxt.{symbol}, nxt.{interval} FROM pairs AS p CROSS JOIN LATERAL (
        SELECT {symbol}, {interval} FROM {bars} AS b
        WHERE (b.{symbol}, b.{interval}) > (p.{symbol}, p.{interval})
        ORDER BY {symbol}, {interval} LIMIT 1) AS nxt
)
SELECT p.{symbol}, p.{interval}, f.{bucket_start}, l.{bucket_start}, l.{close}, l.{updated_at}
FROM pairs AS p
CROSS JOIN LATERAL (SELECT {bucket_start} FROM {bars} AS b
    WHERE b.{symbol} = p.{symbol} AND b.{interval} = p.{interval}
    ORDER BY {bucket_start} LIMIT 1) AS f
CROSS JOIN LATERAL (SELECT {bucket_start}, {close}, {updated_at} FROM {bars} AS b
    WHERE b.{symbol} = p.{symbol} AND b.{interval} = p.{interval}
    ORDER BY {bucket_start} DESC LIMIT 1) AS l
ORDER BY p.{symbol}, p.{interval}
""").format(bars=BARS, symbol=symbol, interval=interval, bucket_start=bucket_start,
            close=_c["close"], updated_at=_c[UPDATED_AT])

# The newest bar of each (symbol, interval) asked for, with the open and volume of its UTC day.
LATEST_QUOTES = sql.SQL("""
SELECT q.{symbol}, q.{interval}, l.{bucket_start}, l.{close}, l.{updated_at}, d.day_open, d.day_volume
FROM unnest(%(symbols)s::text[], %(intervals)s::text[]) AS q({symbol}, {interval})
CROSS JOIN LATERAL (SELECT {bucket_start}, {close}, {updated_at} FROM {bars} AS b
    WHERE b.{symbol} = q.{symbol} AND b.{interval} = q.{interval}
    ORDER BY {bucket_start} DESC LIMIT 1) AS l
CROSS JOIN LATERAL (SELECT (array_agg({open} ORDER BY {bucket_start}))[1] AS day_open,
                           sum({volume}) AS day_volume
    FROM {bars} AS b
    WHERE b.{symbol} = q.{symbol} AND b.{interval} = q.{interval}
      AND b.{bucket_start} >= date_bin(interval '1 day', l.{bucket_start}, %(epoch)s)) AS d
ORDER BY q.{symbol}
""").format(bars=BARS, symbol=symbol, interval=interval, bucket_start=bucket_start,
            close=_c["close"], open=_c["open"], volume=_c["volume"], updated_at=_c[UPDATED_AT])


# -- bars ----------------------------------------------------------------------------------------

def _stored(*, backward: bool, limit: str) -> sql.Composed:
    """Stored bars of one interval in key order: [lo, hi) oldest first, or before lo newest first."""
    where, order = ((sql.SQL("{b} < %(lo)s"), sql.SQL("DESC")) if backward else
                    (sql.SQL("{b} >= %(lo)s AND {b} < %(hi)s"), sql.SQL("")))
    return sql.SQL("""
SELECT {columns}, {stored_final} AS {final} FROM {bars}
WHERE {symbol} = %(symbol)s AND {interval} = %(source)s AND {where}
ORDER BY {bucket_start} {order} LIMIT {limit}""").format(
        columns=_columns(BAR_ROW_COLUMNS), stored_final=STORED_FINAL, final=sql.Identifier(FINAL), bars=BARS,
        symbol=symbol, interval=interval,
        bucket_start=bucket_start, where=where.format(b=bucket_start), order=order,
        limit=sql.Placeholder(limit))


# Bars of a larger interval rolled up from stored ones: open of the first constituent, close of
# the last, volume-weighted VWAP (trade-weighted when there is no volume, which keeps the bar
# definition "mean price when volume is 0"). A rolled bar is EARLY if any constituent is, else
# LATE if any is; its pane_index and updated_at are the largest of its constituents'; it is final
# when all of them are.
_ROLLUP = sql.SQL("""
SELECT {symbol}, %(interval)s::text AS {interval},
       date_bin(%(stride)s, {bucket_start}, %(epoch)s) AS {bucket_start},
       (array_agg({open} ORDER BY {bucket_start}))[1] AS {open},
       max({high}) AS {high}, min({low}) AS {low},
       (array_agg({close} ORDER BY {bucket_start} DESC))[1] AS {close},
       sum({volume}) AS {volume},
       coalesce(sum({vwap} * {volume}) / nullif(sum({volume}), 0),
                sum({vwap} * {trades}) / nullif(sum({trades}), 0)) AS {vwap},
       sum({trades})::bigint AS {trades},
       CASE WHEN bool_or({timing} = {early}) THEN {early}
            WHEN bool_or({timing} = {late}) THEN {late} ELSE {on_time} END AS {timing},
       max({pane_index}) AS {pane_index}, max({updated_at}) AS {updated_at}, bool_and({final}) AS {final}
FROM ({stored}) AS constituents
GROUP BY {symbol}, 3
ORDER BY 3 {order} LIMIT {limit}""")


def bar_range(rolled: bool, *, backward: bool = False) -> sql.Composed:
    """Bars in [lo, hi) oldest first (at most %(rows)s), or, backward, the %(lookback)s bars
    before lo newest first; stored, or rolled up from %(scan_rows)s / %(lookback_scan_rows)s
    stored bars.

    A roll-up reads a bounded number of stored rows in key order rather than a time range:
    the first N rolled bars never need more than N * ratio stored bars, so the work per page
    is bounded however long the range is (and gaps such as weekends cost nothing).
    """
    rows = "lookback" if backward else "rows"
    if not rolled:
        return _stored(backward=backward, limit=rows)
    return _ROLLUP.format(
        stored=_stored(backward=backward, limit="lookback_scan_rows" if backward else "scan_rows"),
        order=sql.SQL("DESC" if backward else ""), limit=sql.Placeholder(rows),
        early=sql.Literal(PaneTiming.EARLY.value), late=sql.Literal(PaneTiming.LATE.value),
        on_time=sql.Literal(PaneTiming.ON_TIME.value), final=sql.Identifier(FINAL), **_c)


def rendered(build: Callable[P, sql.Composable]) -> Callable[P, sql.SQL]:
    """Cache a statement builder's result as SQL text: composing ``sql.Composed`` on every
    request would cost more than running the statement."""
    @functools.lru_cache(maxsize=None)
    def cached(*args: Any, **kwargs: Any) -> sql.SQL:
        return sql.SQL(build(*args, **kwargs).as_string(None))

    functools.update_wrapper(cached, build)
    return cast(Callable[P, sql.SQL], cached)


# A page's rows share their series key (symbol, interval): the route fills it in rather than
# reading it from every row. It leads BAR_API_COLUMNS, so a page row prefixed with the key is a
# full served bar, in the same column order.
SERIES_KEY_COLUMNS: tuple[str, ...] = tuple(name for name in BAR_ROW_COLUMNS if _c[name] in (symbol, interval))
PAGE_COLUMNS: tuple[str, ...] = BAR_API_COLUMNS[len(SERIES_KEY_COLUMNS):]
if BAR_ROW_COLUMNS[:len(SERIES_KEY_COLUMNS)] != SERIES_KEY_COLUMNS:
    raise RuntimeError(f"bar columns {BAR_ROW_COLUMNS} no longer start with the series key {SERIES_KEY_COLUMNS}")
PAGE_START_INDEX: int = next(i for i, name in enumerate(PAGE_COLUMNS) if _c[name] == bucket_start)
_STATE = bar_state_columns(sql.Identifier(FINAL), _c["timing"], _c["pane_index"])


@rendered
def bars_page(rolled: bool) -> sql.Composed:
    """One page of bars: each row's ``PAGE_COLUMNS`` (``BAR_API_COLUMNS`` without the series key).

    Rows travel as typed values (binary protocol) and are rendered to JSON by orjson, which is
    faster than PostgreSQL's own JSON functions; the series key and an epoch-microsecond copy of
    the start are left out because fewer columns make the fetch cheaper (docs/benchmarks.md).
    """
    return sql.SQL("SELECT {columns}, {state}, {filled} FROM ({page}) AS page ORDER BY {bucket_start}").format(
        columns=_columns(BAR_ROW_COLUMNS[len(SERIES_KEY_COLUMNS):]), state=_STATE, filled=FILLED_COLUMN,
        page=bar_range(rolled), bucket_start=bucket_start)


# Stored bars of several (symbol, interval) written after %(since)s, for the stream: an index
# range scan per pair over bars starting at or after %(lo)s (older late updates are not pushed).
STREAM_STORED = sql.SQL("""
SELECT {updated_at}, {symbol}, {interval}, {us}, {columns}, {state}, {filled} FROM {bars}
WHERE ({symbol}, {interval}) IN (SELECT * FROM unnest(%(symbols)s::text[], %(intervals)s::text[]))
  AND {bucket_start} >= %(lo)s AND {updated_at} > %(since)s
ORDER BY {updated_at}, {symbol}, {bucket_start} LIMIT %(rows)s""").format(
    updated_at=_c[UPDATED_AT], us=_epoch_us(bucket_start), columns=_columns(BAR_ROW_COLUMNS),
    state=bar_state_columns(STORED_FINAL, _c["timing"], _c["pane_index"]), filled=FILLED_COLUMN, bars=BARS,
    symbol=symbol, interval=interval, bucket_start=bucket_start)

DATABASE_NOW = sql.SQL("SELECT now()")


# -- indicators ----------------------------------------------------------------------------------

@rendered
def indicator_inputs(rolled: bool) -> sql.Composed:
    """The bars an indicator page needs, oldest first: up to %(lookback)s warm-up bars before
    lo, then up to %(rows)s bars from lo; ``in_page`` tells them apart."""
    return sql.SQL("""
SELECT {us} AS us, in_page, {high}, {low}, {close}, {volume}, {vwap} FROM (
    (SELECT *, false AS in_page FROM ({before}) AS b)
    UNION ALL
    (SELECT *, true AS in_page FROM ({page}) AS p)
) AS series ORDER BY {bucket_start}""").format(
        us=_epoch_us(bucket_start), before=bar_range(rolled, backward=True), page=bar_range(rolled),
        high=_c["high"], low=_c["low"], close=_c["close"], volume=_c["volume"], vwap=_c["vwap"],
        bucket_start=bucket_start)


# Window-function indicators over the series above (the recursive ones are computed in Python:
# see indicators.py).
# Each is NULL until its window is full.
INDICATOR_EXPRESSIONS: dict[str, sql.Composable] = {
    "sma": sql.SQL("CASE WHEN count({close}) OVER w = %(window)s THEN avg({close}) OVER w END").format(
        close=_c["close"]),
    "vwap": sql.SQL(
        "CASE WHEN count({close}) OVER w = %(window)s THEN coalesce("
        "sum({vwap} * {volume}) OVER w / nullif(sum({volume}) OVER w, 0), avg({vwap}) OVER w) END"
    ).format(close=_c["close"], vwap=_c["vwap"], volume=_c["volume"]),
    # Sample standard deviation of close-to-close log returns over `window` returns, in percent.
    "volatility": sql.SQL(
        "CASE WHEN count(log_return) OVER w = %(window)s THEN stddev_samp(log_return) OVER w * 100 END"),
}


@rendered
def indicator_page(rolled: bool, kind: str) -> sql.Composed:
    """Epoch-microsecond start and indicator value of each bar of the page.

    Log returns are differences of logs, not logs of ratios: a ratio of two finite closes can
    overflow (an error in PostgreSQL), and a close that is not positive has no return.
    """
    return sql.SQL("""
SELECT us, value FROM (
    SELECT us, in_page, {expression} AS value FROM (
        SELECT *, log_close - lag(log_close) OVER (ORDER BY us) AS log_return FROM (
            SELECT *, CASE WHEN {close} > 0 THEN ln({close}) END AS log_close
            FROM ({inputs}) AS inputs) AS with_logs) AS with_returns
    WINDOW w AS (ORDER BY us ROWS BETWEEN %(preceding)s::integer PRECEDING AND CURRENT ROW)
) AS valued WHERE in_page ORDER BY us""").format(
        expression=INDICATOR_EXPRESSIONS[kind], close=_c["close"], inputs=indicator_inputs(rolled))


# -- risk ----------------------------------------------------------------------------------------

@rendered
def closes(rolled: bool) -> sql.Composed:
    """Epoch-microsecond start and close of the bars in [lo, hi), oldest first (at most %(rows)s)."""
    return sql.SQL("SELECT {us}, {close} FROM ({page}) AS page ORDER BY {bucket_start}").format(
        us=_epoch_us(bucket_start), close=_c["close"], page=bar_range(rolled), bucket_start=bucket_start)


# -- dead letters --------------------------------------------------------------------------------

# Newest first: each row's key (the cursor position), then its columns. The key
# (seen_at, origin, reason, md5(raw)) is the table's unique identity, so the cursor is exact
# even when many letters share a timestamp.
_dl = {name: sql.Identifier(name) for name in DEAD_LETTER_ROW_COLUMNS}  # KeyError if records change
_DEAD_KEY = sql.SQL("({seen_at}, {origin}, {reason}, md5({raw}))").format(**_dl)
DEAD_LETTERS_PAGE = sql.SQL("""
SELECT {us}, {origin}, {reason}, md5({raw}), {columns} FROM {table}
WHERE (%(since)s::timestamptz IS NULL OR {seen_at} >= %(since)s)
  AND (%(reason)s::text IS NULL OR {reason} = %(reason)s)
  AND (%(after_seen_at)s::timestamptz IS NULL
       OR {key} < (%(after_seen_at)s, %(after_origin)s, %(after_reason)s, %(after_md5)s))
ORDER BY {seen_at} DESC, {origin} DESC, {reason} DESC, md5({raw}) DESC
LIMIT %(rows)s""").format(
    columns=_columns(DEAD_LETTER_ROW_COLUMNS), us=_epoch_us(_dl["seen_at"]), table=DEAD_LETTERS,
    key=_DEAD_KEY, **_dl)


# -- health and metrics --------------------------------------------------------------------------

PING = sql.SQL("SELECT 1")


async def fetch_one(conn: AsyncConnection[tuple[Any, ...]], query: sql.SQL | sql.Composed | str,
                    params: Mapping[str, Any] | None = None, *, binary: bool = False) -> tuple[Any, ...]:
    """The row of a statement that always returns one (an aggregate, ``now()``)."""
    row = await (await conn.execute(query, params, binary=binary)).fetchone()
    if row is None:
        raise RuntimeError(f"{query!r} returned no row")
    return row


# Rows PostgreSQL has counted into each table since its statistics were reset (inserts plus
# updates: the sink upserts bars), summed over partitions: a cheap, monotonic throughput counter.
ROWS_WRITTEN = sql.SQL("""
SELECT coalesce(parent.relname, c.relname) AS table_name, sum(s.n_tup_ins + s.n_tup_upd)::float8
FROM pg_stat_user_tables AS s
JOIN pg_class AS c ON c.oid = s.relid
LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid
LEFT JOIN pg_class AS parent ON parent.oid = i.inhparent
WHERE coalesce(parent.relname, c.relname) = ANY(%(tables)s)
GROUP BY 1""")
