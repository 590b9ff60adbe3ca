"""The tick archive: every tick ingestion hands to the bus, kept durably, so bars can be
recomputed from it (``python -m pipeline repair``) after a crash, an outage or a late fix.

    <root>/ticks/date=2024-01-02/hour=14/<writer>.jsonl          local: appended, fsync'd
    <root>/ticks/date=2024-01-02/hour=14/<writer>-<seq>.jsonl    gs://: one object per flush

One JSON object per line with exactly the fields of ``alphastream.records.Tick`` (the wire
format's tick object), partitioned by the tick's event time. A line torn by a crash mid-write
is skipped by the reader and counted.

Why ingestion writes it and not the pipeline: Beam's local runner acknowledges Pub/Sub messages
when it pulls them, so no step of the pipeline can promise "archived before acknowledged";
ingestion holds every tick before any bus sees it, so it writes the archive first (write-ahead)
and publishes after. Locally each flush is fsync'd before its ticks are published; on gs://
an object is durable once written, and the writer flushes at most ``flush_seconds`` apart.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from alphastream.records import MICROS_PER_SECOND, TICK_FIELDS, Tick

if TYPE_CHECKING:
    from google.cloud.storage import Bucket

log = logging.getLogger(__name__)

TICKS_FOLDER = "ticks"
MICROS_PER_HOUR = 3_600 * MICROS_PER_SECOND
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def hour_partition(ts_us: int) -> str:
    """``date=YYYY-MM-DD/hour=HH`` of an event time (UTC)."""
    moment = _EPOCH + dt.timedelta(microseconds=ts_us - ts_us % MICROS_PER_HOUR)
    return f"date={moment:%Y-%m-%d}/hour={moment:%H}"


def hours_between(start_us: int, end_us: int) -> list[str]:
    """The hour partitions that hold event times in [start_us, end_us)."""
    first = start_us - start_us % MICROS_PER_HOUR
    return [hour_partition(hour) for hour in range(first, end_us, MICROS_PER_HOUR)]


def _split_gs(path: str) -> tuple[str, str]:
    bucket, _, prefix = path.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


def _gcs_bucket(bucket: str) -> Bucket:
    import google.cloud.storage as storage  # only archives on gs:// need the client

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client.create_anonymous_client().bucket(bucket)
    return storage.Client().bucket(bucket)


def _line(tick: Tick) -> str:
    return json.dumps(tick._asdict(), separators=(",", ":"), allow_nan=False) + "\n"


@dataclass
class TickArchive:
    """Appends ticks to the archive under ``root`` (a local folder or ``gs://bucket/path``).

    ``writer_id`` names this writer's files, so several writers never touch the same file.
    Not thread-safe: one caller at a time (``ingestion.sinks.archive`` serialises them).
    """

    root: str
    writer_id: str
    flush_seconds: float = 5.0
    _files: dict[str, IO[str]] = field(default_factory=dict)
    _pending: defaultdict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _last_upload: float = field(default_factory=time.monotonic)
    _sequence: Iterator[int] = field(default_factory=itertools.count)
    archived: int = 0

    @property
    def on_gcs(self) -> bool:
        return self.root.startswith("gs://")

    def append(self, ticks: Sequence[Tick]) -> None:
        """Make ``ticks`` durable (locally: written and fsync'd before this returns)."""
        by_hour: dict[str, list[str]] = defaultdict(list)
        for tick in ticks:
            by_hour[hour_partition(tick.ts_us)].append(_line(tick))
        if self.on_gcs:
            for hour, lines in by_hour.items():
                self._pending[hour].extend(lines)
            if time.monotonic() - self._last_upload >= self.flush_seconds:
                self._upload()
        else:
            for hour, lines in by_hour.items():
                handle = self._local_file(hour)
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
            self._close_old_files(keep=by_hour.keys())
        self.archived += len(ticks)

    def close(self) -> None:
        if self.on_gcs:
            self._upload()
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def _local_file(self, hour: str) -> IO[str]:
        if hour not in self._files:
            folder = Path(self.root) / TICKS_FOLDER / hour
            folder.mkdir(parents=True, exist_ok=True)
            self._files[hour] = open(folder / f"{self.writer_id}.jsonl", "a", encoding="utf-8")
        return self._files[hour]

    def _close_old_files(self, keep: Iterable[str]) -> None:
        # A live feed writes one or two hours at a time; a replay walks through many.
        keep = set(keep)
        if len(self._files) > 4:
            for hour in [h for h in self._files if h not in keep]:
                self._files.pop(hour).close()

    def _upload(self) -> None:
        bucket_name, prefix = _split_gs(self.root)
        bucket = _gcs_bucket(bucket_name)
        for hour, lines in self._pending.items():
            name = f"{prefix}/{TICKS_FOLDER}/{hour}/{self.writer_id}-{next(self._sequence):08d}.jsonl".lstrip("/")
            bucket.blob(name).upload_from_string("".join(lines), content_type="application/x-ndjson")
        self._pending.clear()
        self._last_upload = time.monotonic()


@dataclass
class ArchiveReadStats:
    files: int = 0
    lines: int = 0
    torn_lines: int = 0  # not JSON: a write cut short by a crash


def _local_texts(root: str, hour: str) -> Iterator[str]:
    for path in sorted((Path(root) / TICKS_FOLDER / hour).glob("*.jsonl")):
        yield path.read_text(encoding="utf-8", errors="backslashreplace")


def _gcs_texts(root: str, hour: str) -> Iterator[str]:
    bucket_name, prefix = _split_gs(root)
    bucket = _gcs_bucket(bucket_name)
    folder = f"{prefix}/{TICKS_FOLDER}/{hour}/".lstrip("/")
    for blob in sorted(bucket.client.list_blobs(bucket, prefix=folder), key=lambda b: b.name):
        yield blob.download_as_bytes().decode("utf-8", errors="backslashreplace")


def read_archive(root: str, start_us: int, end_us: int,
                 stats: ArchiveReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Every archived tick object with an event time in [start_us, end_us), as decoded JSON
    (repeats included: the reader of the archive applies the trade identity rule)."""
    stats = stats if stats is not None else ArchiveReadStats()
    texts = _gcs_texts if root.startswith("gs://") else _local_texts
    for hour in hours_between(start_us, end_us):
        for text in texts(root, hour):
            stats.files += 1
            for raw in text.splitlines():
                if not raw.strip():
                    continue
                stats.lines += 1
                try:
                    item = json.loads(raw)
                except ValueError:
                    stats.torn_lines += 1
                    continue
                if not isinstance(item, dict) or set(item) != set(TICK_FIELDS):
                    stats.torn_lines += 1
                    continue
                if isinstance(item["ts_us"], int) and start_us <= item["ts_us"] < end_us:
                    yield item
