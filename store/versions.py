"""Versions of bar series per UTC day: what lets a reader cache bars and know when not to.

``bar_versions`` (migration 0003) holds a counter per (symbol, interval, UTC day). Every write
of bars bumps the counters of the days it touched *in the same transaction*, so a change and
its bump become visible together. A reader that reads the counters of a range, then reads the
bars, may reuse those bars for as long as the counters of the range stay the same: any write
committed since would have raised one of them (counters only go up, so their sum is a safe
fingerprint of the range).

The bump is one statement, run last in the writer's transaction, taking its row locks in key
order: concurrent writers wait for each other on shared days but cannot deadlock on them.
Writers other than the project's sink must run ``BUMP_SQL`` in their transaction too.
"""
from __future__ import annotations

import itertools
from operator import itemgetter
from typing import Any, Iterable, Sequence

BAR_VERSIONS_TABLE = "bar_versions"
MICROS_PER_DAY = 86_400 * 1_000_000
CROSS_PRODUCT_MAX_DAYS = 3  # bump symbol x interval x day for batches spanning at most this many days

BUMP_SQL = f"""
INSERT INTO {BAR_VERSIONS_TABLE} AS v (symbol, interval, day, version)
SELECT symbol, interval, date '1970-01-01' + day_number, 1
FROM unnest(%(symbols)s::text[], %(intervals)s::text[], %(days)s::integer[]) AS touched(symbol, interval, day_number)
ORDER BY 1, 2, 3
ON CONFLICT (symbol, interval, day) DO UPDATE SET version = v.version + 1"""

# The fingerprint of a series over a day range: (rows, sum of versions). Both only grow.
FINGERPRINT_SQL = f"""
SELECT count(*), coalesce(sum(version), 0)::bigint FROM {BAR_VERSIONS_TABLE}
WHERE symbol = %(symbol)s AND interval = %(source)s AND day BETWEEN %(first_day)s AND %(last_day)s"""


def touched_days(rows: Sequence[Sequence[Any]], symbol_index: int, interval_index: int, time_index: int,
                 span: tuple[int, int]) -> dict[str, list[Any]]:
    """``BUMP_SQL`` parameters covering every (symbol, interval, UTC day) of bar ``rows``, whose
    bucket starts (epoch microseconds, at ``time_index``) lie in ``span`` = (first, last).

    A superset is as safe as the exact set (a needless bump only costs readers a cache miss), so
    a batch spanning at most ``CROSS_PRODUCT_MAX_DAYS`` days bumps every symbol x interval x day
    of it: two C-level passes over the rows instead of building a key tuple per row, which is a
    noticeable share of the sink's COPY. Longer spans (back-fills) bump exactly the keys.
    """
    first_day, last_day = span[0] // MICROS_PER_DAY, span[1] // MICROS_PER_DAY
    keys: Iterable[tuple[str, str, int]]
    if last_day - first_day < CROSS_PRODUCT_MAX_DAYS:
        keys = itertools.product(set(map(itemgetter(symbol_index), rows)), set(map(itemgetter(interval_index), rows)),
                                 range(first_day, last_day + 1))
    else:
        keys = {(row[symbol_index], row[interval_index], row[time_index] // MICROS_PER_DAY) for row in rows}
    symbols, intervals, days = zip(*keys, strict=True) if rows else ((), (), ())
    return {"symbols": list(symbols), "intervals": list(intervals), "days": list(days)}
