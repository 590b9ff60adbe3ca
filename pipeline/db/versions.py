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

from typing import Iterable, Sequence

BAR_VERSIONS_TABLE = "bar_versions"
MICROS_PER_DAY = 86_400 * 1_000_000

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


def touched_days(rows: Iterable[Sequence], symbol_index: int, interval_index: int, time_index: int) -> dict:
    """``BUMP_SQL`` parameters for bar rows (epoch-microsecond bucket starts): each distinct
    (symbol, interval, day) once."""
    keys = {(row[symbol_index], row[interval_index], row[time_index] // MICROS_PER_DAY) for row in rows}
    return {"symbols": [k[0] for k in keys], "intervals": [k[1] for k in keys], "days": [k[2] for k in keys]}
