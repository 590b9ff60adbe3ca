"""Repair: recompute bars from the tick archive with the batch rules and store them as final.

Streaming bars are provisional: a crash, a stop or a database outage can leave a bar short of
ticks the pipeline had already acknowledged, and a conflicting redelivery can arrive after its
bar was emitted. The tick archive (``alphastream.tick_archive``, written by ingestion before
it publishes) holds every tick, so a bar whose window has closed (its end plus the allowed
lateness has passed) can be recomputed exactly: the same validation, the same trade identity
rule and the same bar arithmetic as a batch run (``transforms.batch_bars``). Stored with the
final revision (``store.revisions``), such a bar is never overwritten by a streaming pane.

    python -m pipeline repair --archive ./data/lake --start 2024-05-01T14:00 --end 2024-05-01T15:00

The streaming pipeline runs it by itself (``--archive``): at start-up for the range a previous
run may have left short, then for each stretch of closed windows as time passes.

With sessions (``1d`` bars follow the trading session, ``transforms.session_days``), a range
owns the ``1d`` bars of the sessions *opening* in it: it reads up to a day past its end, where
every such session has closed, and a ``1d`` bar is closed once a whole UTC day has passed after
the range (sessions are shorter than a day).
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import pyarrow as pa

from alphastream.intervals import DEFAULT_INTERVALS, interval_micros, parse_intervals
from alphastream.records import Bar
from alphastream.sessions import DAY_US, HOURS, SessionMap, parse_exchange_map
from alphastream.tick_archive import ArchiveReadStats, read_archive
from transforms.batch_bars import bars_from_ordered_ticks, winning_deliveries
from transforms.gap_fill import DEFAULT_MAX_GAP_SECONDS, FillPolicy, fill_series
from transforms.session_days import follows_sessions
from transforms.tick_tables import ticks_to_table
from transforms.validation import TickRejected, ValidationPolicy, tick_from_fields

log = logging.getLogger(__name__)

NowFn = Callable[[], int]
DEFAULT_POLICY = ValidationPolicy()  # the live pipeline's limits (--max_future_seconds' default)
LOGGED_FAILURES = 5  # refused bars logged one by one; the rest are counted
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class RepairResult:
    start_us: int
    end_us: int
    ticks_read: int = 0
    ticks_invalid: int = 0  # rejected by validation (the live pipeline dead-lettered them)
    ticks_unique: int = 0
    bars: list[Bar] = field(default_factory=list)
    archive: ArchiveReadStats = field(default_factory=ArchiveReadStats)

    def line(self) -> str:
        return (f"repair {iso_time(self.start_us)} .. {iso_time(self.end_us)}: {self.ticks_read:,} archived ticks read "
                f"({self.archive.files} files, {self.archive.torn_lines} torn lines skipped), "
                f"{self.ticks_invalid:,} invalid, {self.ticks_unique:,} unique trades -> {len(self.bars):,} final bars")


def iso_time(micros: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=micros)).isoformat()


def aligned_range(start_us: int, end_us: int, intervals: Sequence[str]) -> tuple[int, int]:
    """[start, end) widened to whole buckets of the largest interval, so every bar it touches is
    recomputed from all of its ticks (the intervals nest: the largest bucket holds whole ones)."""
    largest = max(interval_micros(i) for i in intervals)
    return start_us - start_us % largest, -(-end_us // largest) * largest


def closed_until(now_us: int, allowed_lateness_seconds: int, intervals: Sequence[str],
                 sessions: SessionMap | None = None) -> int:
    """The end of the last largest-interval bucket whose window (plus lateness) has closed by
    ``now_us``: bars before it can no longer change, so they can be final. With session ``1d``
    bars, a day earlier: a session opening before that edge has closed by the next one."""
    largest = max(interval_micros(i) for i in intervals)
    settled = now_us - allowed_lateness_seconds * 1_000_000
    edge = settled - settled % largest
    return edge - DAY_US if _has_session_days(intervals, sessions) else edge


def _has_session_days(intervals: Sequence[str], sessions: SessionMap | None) -> bool:
    return any(follows_sessions(i, sessions) for i in intervals)


def final_bars(items: Iterable[dict], intervals: Sequence[str], *, now_us: int,
               policy: ValidationPolicy = DEFAULT_POLICY, result: RepairResult,
               fill: FillPolicy | None = None, until_us: int | None = None,
               sessions: SessionMap | None = None) -> list[Bar]:
    """Archived tick objects -> the batch path's bars (validated, deduplicated by the trade
    identity rule, one symbol at a time), with ``fill``: plus the live run's gap fills after
    each symbol's first bar in the range, before ``until_us``. Session ``1d`` bars are not filled."""
    ticks = []
    for item in items:
        result.ticks_read += 1
        try:
            ticks.append(tick_from_fields(item, now_us=now_us, default_source=str(item.get("source", "")),
                                          policy=policy))
        except TickRejected:
            result.ticks_invalid += 1
    table = ticks_to_table(ticks)
    bars: list[Bar] = []
    if not table.num_rows:
        return bars
    symbols = table.column("symbol").to_numpy(zero_copy_only=False)
    for symbol in sorted(set(symbols.tolist())):
        rows = table.filter(pa.array(symbols == symbol)).drop_columns(["symbol"])
        unique, _conflicting = winning_deliveries(rows)
        result.ticks_unique += len(unique)
        ts, price, size = (rows.column(name).to_numpy()[unique] for name in ("ts_us", "price", "size"))
        made = list(bars_from_ordered_ticks(symbol, ts, price, size, tuple(intervals), sessions))
        if until_us is not None:  # the ticks read past the range serve only sessions opening in it
            made = [b for b in made if b.bucket_start_us < until_us]
        bars.extend(made)
        if fill is not None:
            for interval in (i for i in intervals if not follows_sessions(i, sessions)):
                bars.extend(fill_series([b for b in made if b.interval == interval], fill, until_us))
    return bars


def recompute(archive_root: str, start_us: int, end_us: int, intervals: Sequence[str], *,
              now_us: int, policy: ValidationPolicy = DEFAULT_POLICY,
              fill: FillPolicy | None = None, sessions: SessionMap | None = None) -> RepairResult:
    """The final bars of every bucket touching [start_us, end_us), from the archive; with
    ``fill``, the gap fills too (those before a symbol's first trade in the range need the
    close before it, so they stay as the live run stored them). With ``sessions``, the ``1d``
    bars of the sessions opening in the range (see the module docstring)."""
    start_us, end_us = aligned_range(start_us, end_us, intervals)
    result = RepairResult(start_us, end_us)
    read_until = end_us + DAY_US if _has_session_days(intervals, sessions) else end_us
    items = read_archive(archive_root, start_us, read_until, result.archive)
    bars = final_bars(items, intervals, now_us=now_us, policy=policy, result=result, fill=fill,
                      until_us=end_us, sessions=sessions)
    # A session opening before the range may hold ticks in it: its bar belongs to an earlier range.
    result.bars = [b for b in bars if b.bucket_start_us >= start_us]
    return result


def _timestamp(text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time, e.g. 2024-05-01T14:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def repair_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline repair",
        description="Recompute the bars of a time range from the tick archive (the batch rules) and store "
                    "them as final in PostgreSQL; a streaming pane never overwrites a final bar.")
    parser.add_argument("--archive", required=True,
                        help="root of the tick archive (the folder or gs:// path holding ticks/date=.../hour=...)")
    parser.add_argument("--start", type=_timestamp, required=True,
                        help="start of the range, ISO-8601 (UTC if no offset)")
    parser.add_argument("--end", type=_timestamp, required=True, help="end of the range (exclusive), ISO-8601")
    parser.add_argument("--intervals", default=",".join(DEFAULT_INTERVALS),
                        help="bar intervals to recompute, e.g. 1m,5m,1h (default: %(default)s)")
    parser.add_argument("--db_url", default=None,
                        help="PostgreSQL DSN (default: $ALPHASTREAM_DB_URL, else the embedded local database)")
    parser.add_argument("--fill_gaps", action="store_true",
                        help="also store the gap fills the live run makes (python -m pipeline --fill_gaps)")
    parser.add_argument("--fill_gaps_max_seconds", type=int, default=DEFAULT_MAX_GAP_SECONDS,
                        help="with --fill_gaps: as the pipeline's flag of that name (default: %(default)s)")
    parser.add_argument("--exchange_map", default="",
                        help="trading calendars per symbol (1d bars follow the session; gap filling stays in "
                             "it), as the pipeline's flag of that name")
    parser.add_argument("--fill_session_hours", choices=HOURS, default=SessionMap.hours,
                        help="session hours for 1d bars and gap filling, as the pipeline's flag of that name "
                             "(default: %(default)s)")
    parser.add_argument("--dry_run", action="store_true", help="compute and report, write nothing")
    return parser


def store_final(db_url: str, bars: Sequence[Bar]) -> int:
    """Upsert ``bars`` with the final revision; returns how many could not be stored."""
    from store.revisions import FINAL_REVISION, StoredBar
    from store.writer import BARS, CopyMergeWriter

    writer = CopyMergeWriter(db_url, BARS)
    try:
        failed = writer.write([StoredBar(*bar, FINAL_REVISION) for bar in bars])
    finally:
        writer.close()
    for failure in failed[:LOGGED_FAILURES]:
        log.error("repair: bar not stored: %s", failure.reason)
    return len(failed)


def main(argv: Sequence[str] | None = None, now_us: NowFn = lambda: time.time_ns() // 1_000) -> int:
    parser = repair_parser()
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error("--end must be after --start")
    intervals = parse_intervals(args.intervals)
    try:
        sessions = SessionMap(parse_exchange_map(args.exchange_map), args.fill_session_hours)
    except ValueError as err:
        parser.error(str(err))
    fill = FillPolicy(args.fill_gaps_max_seconds, sessions) if args.fill_gaps else None
    result = recompute(args.archive, args.start, args.end, intervals, now_us=now_us(), fill=fill, sessions=sessions)
    print(result.line())
    if args.dry_run:
        return 0
    from alphastream.settings import AlphastreamSettings
    from store import localdb, migrate

    settings = AlphastreamSettings()
    db_url = args.db_url or settings.db_url or localdb.LocalDatabase.from_settings(settings).ensure_running()
    migrate.migrate(db_url)
    failed = store_final(db_url, result.bars)
    print(f"stored {len(result.bars) - failed:,} final bars" + (f", {failed} refused (see the log)" if failed else ""))
    return 1 if failed else 0
