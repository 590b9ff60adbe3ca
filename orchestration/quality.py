"""The back-fill's data-quality gate: a day's run is accepted only if its numbers hold up.

Checks, each failing with what is wrong and where to look:
* accounting: ticks read = unique + duplicates + dead-lettered (the run's own counters);
* something was read at all (an empty day usually means a wrong input glob);
* dead-letter rate: dead-lettered / read at most ``max_dead_letter_rate``;
* bar counts per symbol against the previous days in the lake: a symbol with bars on earlier
  days has bars today, at least ``min_bar_ratio`` x its median count of those days.

    python -m orchestration.quality --counters '{"ticks_read": ...}' --lake data/lake --date 2026-01-24
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import pyarrow.parquet as pq

DEFAULT_MAX_DEAD_LETTER_RATE = 0.01
DEFAULT_MIN_BAR_RATIO = 0.5
DEFAULT_HISTORY_DAYS = 7
DEFAULT_INTERVAL = "1m"


@dataclass(frozen=True)
class Thresholds:
    max_dead_letter_rate: float = DEFAULT_MAX_DEAD_LETTER_RATE
    min_bar_ratio: float = DEFAULT_MIN_BAR_RATIO


def check_counters(counters: Mapping[str, int], thresholds: Thresholds) -> list[str]:
    """Problems with a run's tick counters (empty: none)."""
    read, unique = counters["ticks_read"], counters["ticks_unique"]
    duplicates, dead = counters["ticks_duplicate"], counters["ticks_dead_lettered"]
    problems = []
    if read != unique + duplicates + dead:
        problems.append(f"accounting: {read:,} ticks read but {unique:,} unique + {duplicates:,} duplicates + "
                        f"{dead:,} dead-lettered = {unique + duplicates + dead:,}")
    if read == 0:
        problems.append("no ticks read: check the input glob for this day")
    elif dead / read > thresholds.max_dead_letter_rate:
        problems.append(f"dead-letter rate {dead / read:.2%} ({dead:,} of {read:,}) is above "
                        f"{thresholds.max_dead_letter_rate:.2%}: see the day's dead_letters/ in the lake "
                        f"(or GET /v1/dead-letters) for the reasons")
    return problems


def check_bar_counts(today: Mapping[str, int], history: Sequence[Mapping[str, int]], thresholds: Thresholds,
                     interval: str) -> list[str]:
    """Problems with today's bars per symbol against earlier days' (days without bars are not history)."""
    days = [counts for counts in history if counts]
    problems = []
    for symbol in sorted({s for counts in days for s in counts}):
        typical = statistics.median(counts[symbol] for counts in days if symbol in counts)
        got = today.get(symbol, 0)
        if got < thresholds.min_bar_ratio * typical:
            problems.append(f"{symbol}: {got:,} {interval} bars, below {thresholds.min_bar_ratio:.0%} of its median "
                            f"{typical:,.0f} over the {len(days)} previous days with bars")
    return problems


def _parquet_tables(pattern: str, columns: list[str]):
    """The tables of the files matching ``pattern``: a local glob directly; gs:// through Beam's
    FileSystems, imported only then (its gRPC threads can abort a short-lived process at exit)."""
    if not pattern.startswith("gs://"):
        for path in sorted(glob.glob(pattern)):
            yield pq.read_table(path, columns=columns)
        return
    from apache_beam.io.filesystems import FileSystems

    for metadata in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(metadata.path) as source:
            yield pq.read_table(source, columns=columns)


def lake_bar_counts(lake: str, interval: str, date: dt.date) -> dict[str, int]:
    """Distinct bars per symbol in the lake's ``bars/interval=I/date=D`` (batch or streaming files)."""
    pattern = "/".join((lake.rstrip("/"), "bars", f"interval={interval}", f"date={date.isoformat()}", "*.parquet"))
    keys: set[tuple[str, object]] = set()
    for table in _parquet_tables(pattern, ["symbol", "bucket_start"]):
        keys.update(zip(table["symbol"].to_pylist(), table["bucket_start"].to_pylist(), strict=True))
    return dict(Counter(symbol for symbol, _ in keys))


def check_day(counters: Mapping[str, int], lake: str, date: dt.date, *, interval: str = DEFAULT_INTERVAL,
              history_days: int = DEFAULT_HISTORY_DAYS, thresholds: Thresholds = Thresholds()) -> list[str]:
    """Every problem with ``date``'s back-fill: its counters and its bars against the previous days."""
    history = [lake_bar_counts(lake, interval, date - dt.timedelta(days=back)) for back in range(1, history_days + 1)]
    today = lake_bar_counts(lake, interval, date)
    return check_counters(counters, thresholds) + check_bar_counts(today, history, thresholds, interval)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counters", required=True,
                        help="the run's counters as JSON (ticks_read, ticks_unique, ticks_duplicate, "
                             "ticks_dead_lettered), as orchestration.batch_run prints them")
    parser.add_argument("--lake", required=True, help="lake root the run wrote, a local path or gs://bucket/prefix")
    parser.add_argument("--date", required=True, type=dt.date.fromisoformat, help="the run's UTC day, YYYY-MM-DD")
    parser.add_argument("--interval", default=DEFAULT_INTERVAL, help="bar interval whose counts are compared")
    parser.add_argument("--history_days", type=int, default=DEFAULT_HISTORY_DAYS,
                        help="previous days whose bar counts are the reference")
    parser.add_argument("--max_dead_letter_rate", type=float, default=DEFAULT_MAX_DEAD_LETTER_RATE,
                        help="largest accepted share of dead-lettered ticks (0.01 = 1%%)")
    parser.add_argument("--min_bar_ratio", type=float, default=DEFAULT_MIN_BAR_RATIO,
                        help="smallest accepted bar count per symbol, as a share of its median over the history")
    args = parser.parse_args(argv)
    try:
        counters = json.loads(args.counters)
    except json.JSONDecodeError as err:
        parser.error(f"--counters is not JSON ({err}): {args.counters[:200]!r}")
    problems = check_day(counters, args.lake, args.date, interval=args.interval, history_days=args.history_days,
                         thresholds=Thresholds(args.max_dead_letter_rate, args.min_bar_ratio))
    if problems:
        print(f"data quality FAILED for {args.date} ({len(problems)} problems):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"data quality OK for {args.date}: {counters['ticks_read']:,} ticks accounted for, "
          f"{counters['ticks_dead_lettered']:,} dead-lettered, bar counts in line with the previous days")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
