"""A database sink's failed rows, written to the lake by the sink itself before it hands them on.

In streaming, a row the database could not take must not wait in the pipeline's memory for a
lake window to close: a stop or a crash loses it, and a window whose watermark is held back
never closes (``pipeline.trigger_hold_fix``). So each sink
writes its ``sink_failed`` dead letters straight to the lake, in the dead-letter layout and
schema of the rest of the lake, and only then yields them; the finaliser replays those files
into ``dead_letters`` once the database is back (``pipeline.dead_letter_replay``; inserts are
idempotent, so a file read twice changes nothing):

    <root>/dead_letters/date=D/dead_letters-<input>-spool-<content hash>.parquet

The name is a hash of the letters, so a bundle the runner retries after its rows failed again
rewrites the same file instead of adding a second copy of them to the lake.

The streaming dead-letter lake leaves ``sink_failed`` letters out when the sinks spool them
(``WriteDeadLettersToLakeStreaming(sinks_spool=True)``), so each letter is in the lake once,
and the spool counts its rows in the lake's own counters: the run summary's ``lake dead
letters = ticks dead-lettered + sink_failed`` holds as before.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from typing import Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from alphastream.records import METRICS_NAMESPACE, DeadLetter
from pipeline.lake import dead_letter_stem, records_to_table, write_parquet_replacing
from pipeline.streaming_lake import DEAD_LETTER_SORT_BY, lake_metric_name

log = logging.getLogger(__name__)

_HASH_CHARS = 24  # 96 bits of SHA-256: distinct sets of letters never share a name in practice


def spool_file_name(stem: str, letters: Sequence[DeadLetter]) -> str:
    """``<stem>-spool-<hash of the letters>.parquet``. The same letters get the same name (a
    retried bundle replaces its earlier file), other letters another name (concurrent sinks
    never overwrite each other). The hash leaves out ``detail``: a retry may fail with other
    words for the same rows."""
    digest = hashlib.sha256()
    for identity in sorted((letter.reason, letter.origin, letter.seen_at_us, letter.raw) for letter in letters):
        digest.update(json.dumps(identity).encode())
    return f"{stem}-spool-{digest.hexdigest()[:_HASH_CHARS]}.parquet"


class DeadLetterSpool:
    """Writes dead letters under ``root`` at once, one Parquet file per lake partition and input."""

    def __init__(self, root: str):
        self._root = root.rstrip("/")
        self._rows = Metrics.counter(METRICS_NAMESPACE, lake_metric_name(DeadLetter, "rows"))
        self._files = Metrics.counter(METRICS_NAMESPACE, lake_metric_name(DeadLetter, "files"))

    def write(self, letters: Sequence[DeadLetter]) -> list[str]:
        """Write ``letters``; returns the paths written. Raises when the lake cannot be written:
        the letters would otherwise exist nowhere but in memory."""
        by_stem: dict[str, list[DeadLetter]] = defaultdict(list)
        for letter in letters:
            by_stem[dead_letter_stem(letter)].append(letter)
        paths = []
        for stem, group in sorted(by_stem.items()):
            rows = sorted(group, key=lambda r: tuple(getattr(r, f) for f in DEAD_LETTER_SORT_BY))
            path = FileSystems.join(self._root, spool_file_name(stem, rows))
            write_parquet_replacing(path, records_to_table(rows, DeadLetter))
            self._rows.inc(len(rows))
            self._files.inc()
            log.info("lake: spooled %s dead letters to %s", f"{len(rows):,}", path)
            paths.append(path)
        return paths
