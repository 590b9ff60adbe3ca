"""Replay a historical tick file in real time x --speed, shifted so the first tick is now.

Formats (by extension, or --input_format): CSV, JSON lines, Parquet, with the Tick columns
(``symbol, ts_us, price, size, trade_id[, source]``) or ``ts`` as ISO-8601 text instead of
``ts_us`` -- the same tick format the batch pipeline reads. Rows are replayed in file order:
a tick ``d`` seconds after the first is emitted ``d / speed`` seconds after the start with
event time ``start + d / speed``, so event time tracks the wall clock at any speed and
out-of-order rows stay out of order. Rows that cannot be read are counted as malformed.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import AsyncIterator

import pyarrow.parquet as pq

from alphastream.records import MICROS_PER_SECOND, Tick
from ingestion.backoff import Clock, Sleep
from ingestion.connectors.base import Connector, MalformedFrame
from ingestion.connectors.normalize import canonical_symbol, make_tick, rfc3339_to_us

REPLAY_SOURCE = "replay"
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
# Sleep only when at least this far ahead of schedule; smaller gaps are emitted in a burst.
MIN_SLEEP_SECONDS = 0.001


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the format of {path} from its extension: pass --input_format csv|jsonl|parquet")
    return fmt


def read_rows(path: Path, declared: str = "auto") -> list[dict | str]:
    """The file's rows as dicts (a JSON line that does not parse stays a string). CSV cells stay
    text: the row parser does the typing, so one bad cell costs a row (counted), not the file."""
    fmt = detect_format(path, declared)
    if fmt == "parquet":
        return pq.read_table(path).to_pylist()
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as handle:
            return [_json_or_text(line) for line in handle if line.strip()]
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k.strip(): v for k, v in row.items() if k} for row in csv.DictReader(handle)]


def _json_or_text(line: str) -> dict | str:
    try:
        return json.loads(line)
    except ValueError:
        return line


def row_to_tick(row: dict | str, default_source: str) -> Tick:
    """One file row -> Tick with its original event time (MalformedFrame if unreadable)."""
    if not isinstance(row, dict):
        raise MalformedFrame("row is not a JSON object")
    if row.get("ts_us") not in (None, ""):
        try:
            ts_us = int(row["ts_us"])
        except (TypeError, ValueError):
            raise MalformedFrame(f"ts_us={row['ts_us']!r} is not integer microseconds") from None
    elif isinstance(row.get("ts"), dt.datetime):  # Parquet timestamp column
        moment = row["ts"] if row["ts"].tzinfo else row["ts"].replace(tzinfo=dt.timezone.utc)
        ts_us = int(moment.timestamp()) * MICROS_PER_SECOND + moment.microsecond
    elif row.get("ts") not in (None, ""):
        ts_us = rfc3339_to_us(str(row["ts"]))  # no offset: UTC
    else:
        raise MalformedFrame("row has neither ts_us nor ts")
    source = str(row.get("source") or default_source)
    return make_tick(symbol=canonical_symbol(row.get("symbol")), ts_us=ts_us, price=row.get("price"),
                     size=row.get("size"), trade_id=row.get("trade_id"), source=source)


class ReplayFile(Connector):
    source = REPLAY_SOURCE

    def __init__(self, path: str | Path, speed: float = 1.0, input_format: str = "auto", *,
                 clock: Clock = time.time, sleep: Sleep = asyncio.sleep):
        super().__init__()
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive finite factor, got {speed}")
        self.path, self.speed, self.input_format = Path(path), speed, input_format
        self._clock, self._sleep = clock, sleep

    def load(self) -> list[Tick]:
        """Every readable row as a Tick with its original timestamp, in file order."""
        if not self.path.exists():
            raise FileNotFoundError(f"--input {self.path} does not exist")
        ticks = []
        for row in read_rows(self.path, self.input_format):
            self.stats.frames += 1
            try:
                ticks.append(row_to_tick(row, self.source))
            except MalformedFrame as err:
                self.count_malformed(row, err)
        return ticks

    async def stream(self) -> AsyncIterator[Tick]:
        ticks = await asyncio.to_thread(self.load)
        if not ticks:
            return
        self.stats.connects += 1
        first_us = ticks[0].ts_us
        start = self._clock()
        start_us = int(start * MICROS_PER_SECOND)
        for tick in ticks:
            offset_s = (tick.ts_us - first_us) / MICROS_PER_SECOND / self.speed
            ahead = start + offset_s - self._clock()
            if ahead >= MIN_SLEEP_SECONDS:
                await self._sleep(ahead)
            self.stats.ticks += 1
            yield tick._replace(ts_us=start_us + int(round(offset_s * MICROS_PER_SECOND)))
