"""The tick archive (alphastream.tick_archive) and the write-ahead ArchivingSink."""
from __future__ import annotations

import datetime as dt

import pytest

from alphastream.records import Tick
from alphastream.tick_archive import ArchiveReadStats, TickArchive, hour_partition, hours_between, read_archive
from ingestion.sinks.archive import ArchivingSink
from ingestion.sinks.base import Sink

HOUR_US = 3_600_000_000
T0 = int(dt.datetime(2024, 3, 4, 13, 59, 59, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


def tick(offset_us: int, trade: str, price: float = 10.0) -> Tick:
    return Tick("AAPL", T0 + offset_us, price, 1.0, trade, "synthetic")


def test_partitions_follow_event_time_in_utc():
    assert hour_partition(T0) == "date=2024-03-04/hour=13"
    assert hour_partition(T0 + 1_000_000) == "date=2024-03-04/hour=14"
    assert hours_between(T0, T0 + 1_000_001) == ["date=2024-03-04/hour=13", "date=2024-03-04/hour=14"]
    assert hours_between(T0 + 1_000_000, T0 + 1_000_001) == ["date=2024-03-04/hour=14"]


def test_local_archive_reads_back_a_time_range(tmp_path):
    archive = TickArchive(str(tmp_path), "writer-a")
    ticks = [tick(0, "1"), tick(1_000_000, "2"), tick(2_000_000, "3"), tick(HOUR_US, "4")]
    archive.append(ticks[:2])
    archive.append(ticks[2:] + [ticks[0]])  # a repeat is archived as delivered
    archive.close()
    assert (tmp_path / "ticks" / "date=2024-03-04" / "hour=13" / "writer-a.jsonl").exists()

    everything = [Tick(**item) for item in read_archive(str(tmp_path), T0 - HOUR_US, T0 + 2 * HOUR_US)]
    assert sorted(everything) == sorted(ticks + [ticks[0]])
    middle = [Tick(**item) for item in read_archive(str(tmp_path), T0 + 1_000_000, T0 + 2_000_001)]
    assert sorted(middle) == [ticks[1], ticks[2]]


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    archive = TickArchive(str(tmp_path), "w")
    archive.append([tick(0, "1")])
    archive.close()
    path = tmp_path / "ticks" / "date=2024-03-04" / "hour=13" / "w.jsonl"
    with open(path, "a") as handle:
        handle.write('{"symbol":"AAPL","ts_us":')  # the crash cut this write short
    stats = ArchiveReadStats()
    items = list(read_archive(str(tmp_path), T0, T0 + 1, stats))
    assert [Tick(**i) for i in items] == [tick(0, "1")]
    assert (stats.lines, stats.torn_lines) == (2, 1)


def test_gcs_archive_reads_back(gcs_emulator):
    root = f"gs://{gcs_emulator.new_bucket()}/lake"
    archive = TickArchive(root, "writer-b", flush_seconds=0.0)
    archive.append([tick(0, "1"), tick(HOUR_US, "2")])
    archive.append([tick(5, "3")])
    archive.close()
    items = [Tick(**i) for i in read_archive(root, T0 - HOUR_US, T0 + 2 * HOUR_US)]
    assert sorted(items) == sorted([tick(0, "1"), tick(HOUR_US, "2"), tick(5, "3")])


class _ArchiveCheckingSink(Sink):
    """Records what it is handed, and whether each tick was already in the archive then."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root
        self.seen: list[Tick] = []
        self.archived_first: list[bool] = []

    def publish(self, t: Tick) -> None:
        self.submitted += 1
        archived = {Tick(**i) for i in read_archive(self.root, t.ts_us, t.ts_us + 1)}
        self.archived_first.append(t in archived)
        self.seen.append(t)
        self._confirmed(True)

    def close(self, timeout: float) -> None:
        pass


def test_archiving_sink_archives_before_publishing(tmp_path):
    inner = _ArchiveCheckingSink(str(tmp_path))
    sink = ArchivingSink(inner, TickArchive(str(tmp_path), "w"), max_ticks=3, max_delay_seconds=0.01)
    ticks = [tick(i * 1000, str(i)) for i in range(10)]
    for t in ticks:
        sink.publish(t)
    sink.close(timeout=5)
    assert inner.seen == ticks  # order kept
    assert all(inner.archived_first)
    assert (sink.submitted, sink.published, sink.failed, sink.pending, sink.archived) == (10, 10, 0, 0, 10)


def test_a_failing_archive_stops_publishing_and_counts_the_ticks(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the archive folder should be")
    inner = _ArchiveCheckingSink(str(tmp_path))
    sink = ArchivingSink(inner, TickArchive(str(blocker), "w"), max_ticks=2, max_delay_seconds=60)
    sink.publish(tick(0, "1"))
    with pytest.raises(OSError):
        sink.publish(tick(1, "2"))
    assert inner.seen == []
    assert (sink.submitted, sink.published, sink.failed) == (2, 0, 2)


def test_ingestion_cli_archives_every_tick_it_publishes(tmp_path):
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ingestion", "--source", "synthetic", "--sink", "stdout", "--rate", "5000",
         "--max_ticks", "700", "--archive", str(tmp_path / "archive")],
        capture_output=True, text=True, timeout=120, check=True).stdout
    published = [Tick(**json.loads(line.split("\t")[0])) for line in out.splitlines() if line.strip()]
    assert len(published) == 700
    start, end = min(t.ts_us for t in published), max(t.ts_us for t in published) + 1
    archived = [Tick(**item) for item in read_archive(str(tmp_path / "archive"), start, end)]
    assert sorted(archived) == sorted(published)
