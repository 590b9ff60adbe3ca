"""Lake compaction: a closed day's small streaming files folded into the daily batch layout.

The streaming lake (pipeline.streaming_lake) writes one file per symbol, lake window and pane:
``bars/interval=1m/date=D/bars-AAPL-<start>-<end>-pane000.parquet``, ~1,440 files per symbol,
interval and day. Readers pay per file, so once a day is closed (its last window plus the allowed
lateness has passed) this folds them into the batch layout (pipeline.lake):
``bars/interval=1m/date=D/bars-AAPL.parquet`` and ``dead_letters/date=D/dead_letters-<input>.parquet``.

No row is lost and a re-run changes nothing:
* bars keep, per (symbol, interval, bucket_start), the row with the highest pane_index (a LATE
  pane is the whole corrected bar, as streaming_lake's readers already assume); on a tie the row
  already in the daily file wins (a batch back-fill's bar);
* dead letters keep every distinct row (a re-run after a crash between the write and the
  deletes sees the same rows twice, and keeps them once);
* the daily file is written atomically (temp file, rename) and read back before any small file
  is deleted, so a crash leaves either the small files or both, never neither.

    python -m orchestration.compaction --lake data/lake --date 2026-01-24
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from alphastream.records import Bar, DeadLetter
from pipeline.lake import arrow_schema, write_parquet_replacing

log = logging.getLogger(__name__)

# <daily stem>-<window start>-<window end>-pane<N>.parquet, as streaming_lake.lake_file_name writes.
_PANE_FILE = re.compile(r"^(?P<stem>.+)-\d{8}T\d{6}Z-\d{8}T\d{6}Z-pane\d{3,}\.parquet$")
_BAR_KEY = ("symbol", "interval", "bucket_start")


@dataclass
class CompactionResult:
    daily_files: int = 0
    small_files: int = 0
    rows_in: int = 0  # rows read from small and daily files
    rows_out: int = 0  # rows in the daily files written

    def line(self) -> str:
        return (f"compacted {self.small_files:,} small files into {self.daily_files:,} daily files "
                f"({self.rows_in:,} rows read, {self.rows_out:,} kept)")


def _pane_groups(folder: str) -> dict[str, list[str]]:
    """Daily file path -> the small streaming files that fold into it, in one partition folder."""
    groups: dict[str, list[str]] = defaultdict(list)
    pattern = FileSystems.join(folder, "*.parquet")
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        name = metadata.path.rsplit("/", 1)[-1]
        match = _PANE_FILE.match(name)
        if match:
            groups[FileSystems.join(folder, match["stem"] + ".parquet")].append(metadata.path)
    return groups


def _read(path: str, schema: pa.Schema) -> pa.Table:
    with FileSystems.open(path) as source:
        return pq.read_table(source).select(schema.names).cast(schema)


def _latest_bars(daily: pa.Table | None, panes: list[pa.Table]) -> pa.Table:
    """Per bar key, the row with the highest pane_index; on a tie, the daily file's row."""
    tagged = [t.append_column("_from_daily", pa.array([flag] * t.num_rows, pa.int8()))
              for t, flag in ([(daily, 1)] if daily else []) + [(t, 0) for t in panes]]
    ranked = pa.concat_tables(tagged).sort_by(
        [*((k, "ascending") for k in _BAR_KEY), ("pane_index", "descending"), ("_from_daily", "descending")])
    values = [c for c in ranked.column_names if c not in _BAR_KEY and c != "_from_daily"]
    # Without threads, "first" is the first row in the sorted order: the winner of each key.
    winners = ranked.group_by(list(_BAR_KEY), use_threads=False).aggregate([(c, "first") for c in values])
    return winners.select([*(f"{c}_first" for c in values), *_BAR_KEY]).rename_columns([*values, *_BAR_KEY])


def _distinct_rows(daily: pa.Table | None, panes: list[pa.Table]) -> pa.Table:
    rows = pa.concat_tables(([daily] if daily else []) + panes)
    return rows.group_by(rows.column_names, use_threads=False).aggregate([]).select(rows.column_names)


def _compact_group(daily_path: str, pane_paths: list[str], schema: pa.Schema, is_bars: bool,
                   result: CompactionResult) -> None:
    daily = _read(daily_path, schema) if FileSystems.exists(daily_path) else None
    panes = [_read(path, schema) for path in sorted(pane_paths)]
    result.rows_in += (daily.num_rows if daily else 0) + sum(t.num_rows for t in panes)
    merged = _latest_bars(daily, panes) if is_bars else _distinct_rows(daily, panes)
    order = ["symbol", "interval", "bucket_start"] if is_bars else ["seen_at", "origin", "raw"]
    merged = merged.sort_by([(c, "ascending") for c in order]).select(schema.names).cast(schema)
    write_parquet_replacing(daily_path, merged)
    written = _read(daily_path, schema)
    if not written.equals(merged):
        raise RuntimeError(f"compaction: {daily_path} does not read back as written; "
                           f"the {len(pane_paths)} small files it folds were kept")
    FileSystems.delete(sorted(pane_paths))
    result.daily_files += 1
    result.small_files += len(pane_paths)
    result.rows_out += merged.num_rows


def _partition_folders(lake: str, date: dt.date) -> list[tuple[str, bool]]:
    """(folder, holds bars) for every partition of ``date``: one per bar interval, and the dead letters'."""
    folders = [(FileSystems.join(lake, "dead_letters", f"date={date.isoformat()}"), False)]
    for metadata in FileSystems.match([FileSystems.join(lake, "bars", "interval=*", f"date={date.isoformat()}",
                                                        "*.parquet")])[0].metadata_list:
        folder = metadata.path.rsplit("/", 1)[0]
        if (folder, True) not in folders:
            folders.append((folder, True))
    return folders


def compact_day(lake: str, date: dt.date) -> CompactionResult:
    """Fold the streaming files of ``date`` into daily files under ``lake`` (local or gs://)."""
    result = CompactionResult()
    for folder, is_bars in _partition_folders(lake, date):
        schema = arrow_schema(Bar if is_bars else DeadLetter)
        for daily_path, pane_paths in sorted(_pane_groups(folder).items()):
            _compact_group(daily_path, pane_paths, schema, is_bars, result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestration.compaction", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", required=True, help="lake root, a local path or gs://bucket/prefix")
    parser.add_argument("--date", required=True, type=dt.date.fromisoformat,
                        help="UTC day to compact (YYYY-MM-DD); compact only closed days (past the allowed lateness)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(compact_day(args.lake, args.date).line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
