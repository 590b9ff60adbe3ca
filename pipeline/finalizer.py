"""The streaming run's bar finaliser: repairs closed windows from the tick archive, in order.

A background thread beside a streaming run (``--archive``). It keeps one mark per archive in
the ``bar_finalization`` table: every bar before the mark is final. Each pass moves the mark
to the end of the last closed bucket of the largest interval (window end plus allowed
lateness in the past), recomputing everything in between with ``pipeline.repair``. So:

* at start-up it repairs whatever a previous run left short (a crash, a kill, a stop of any
  length), from the stored mark; with no mark yet it starts at the current closed edge;
* during a database outage its passes fail and the mark stays put; the first pass after the
  database returns repairs the whole outage;
* conflicting redeliveries that reached the live bars in the wrong order end final by the
  batch rule, like every other bar;
* with the lake (``lake``), each pass also replays into ``dead_letters`` the lake's dead-letter
  files changed since the last replay that succeeded (``pipeline.dead_letter_replay``): the
  dead letters of an outage, which only the lake could take, reach the table once it is back.
  At start-up it looks back ``DEAD_LETTER_LOOKBACK_SECONDS``, for a previous run's outage.

Bars of still-open windows stay provisional (the live panes); they become final one pass after
their window closes.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import psycopg

from alphastream.sessions import SessionMap
from alphastream.settings import mask_dsn
from pipeline.dead_letter_replay import MTIME_MARGIN_SECONDS, replay_dead_letters
from pipeline.repair import closed_until, iso_time, recompute, store_final
from transforms.gap_fill import FillPolicy

log = logging.getLogger(__name__)

DEAD_LETTER_LOOKBACK_SECONDS = 3_600

NowFn = Callable[[], int]

_READ_MARK = "SELECT (extract(epoch FROM final_until) * 1000000)::bigint FROM bar_finalization WHERE archive = %s"
_WRITE_MARK = (
    "INSERT INTO bar_finalization (archive, final_until) "
    "VALUES (%s, timestamptz 'epoch' + %s * interval '1 microsecond') "
    "ON CONFLICT (archive) DO UPDATE SET final_until = excluded.final_until, updated_at = now() "
    "WHERE bar_finalization.final_until < excluded.final_until"
)


def read_mark(db_url: str, archive: str) -> int | None:
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        row = conn.execute(_READ_MARK, (archive,)).fetchone()
    return None if row is None else int(row[0])


def write_mark(db_url: str, archive: str, until_us: int) -> None:
    with psycopg.connect(db_url, connect_timeout=10) as conn:
        conn.execute(_WRITE_MARK, (archive, until_us))


@dataclass
class PassResult:
    start_us: int
    end_us: int
    bars: int
    failed: int


@dataclass
class BarFinalizer:
    """Finalises the bars of ``archive`` in ``db_url`` (see the module docstring)."""

    archive: str
    db_url: str
    intervals: Sequence[str]
    allowed_lateness_seconds: int
    every_seconds: float = 10.0
    now_us: NowFn = field(default=lambda: time.time_ns() // 1_000)
    fill: FillPolicy | None = None  # the live run's gap filling, so final bars keep its fills
    sessions: SessionMap | None = None  # the live run's sessions, which its 1d bars follow
    lake: str | None = None
    passes: list[PassResult] = field(default_factory=list)
    mark_us: int | None = None  # the stored mark as last read or written: bars before it are final
    replayed_since: float | None = None  # epoch seconds: dead-letter files older than this are replayed
    _replayed_files: set = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run_once(self) -> PassResult | None:
        """One pass: finalise everything between the stored mark and the closed edge. Returns
        None when there is nothing new to finalise; raises when the database is unreachable."""
        edge = closed_until(self.now_us(), self.allowed_lateness_seconds, self.intervals, self.sessions)
        mark = read_mark(self.db_url, self.archive)
        if mark is None:  # a new archive: nothing before now was ever provisional here
            write_mark(self.db_url, self.archive, edge)
            self.mark_us = edge
            return None
        self.mark_us = mark
        if edge <= mark:
            return None
        result = recompute(self.archive, mark, edge, self.intervals, now_us=self.now_us(), fill=self.fill,
                           sessions=self.sessions)
        failed = store_final(self.db_url, result.bars)
        outcome = PassResult(mark, edge, len(result.bars), failed)
        if failed:  # leave the mark: the next pass repeats the range (stores are idempotent)
            log.warning("finaliser: %d of %d bars not stored; will retry", failed, len(result.bars))
        else:
            write_mark(self.db_url, self.archive, edge)
            self.mark_us = edge
            log.info("finaliser: %s", result.line())
        self.passes.append(outcome)
        return outcome

    def replay_once(self) -> None:
        """Replay the lake's dead-letter files changed since the last replay that succeeded."""
        if self.lake is None:
            return
        now = self.now_us() / 1e6
        since = now - DEAD_LETTER_LOOKBACK_SECONDS if self.replayed_since is None else self.replayed_since
        result, files = replay_dead_letters(self.lake, self.db_url, since, now, frozenset(self._replayed_files))
        if result.failed:
            log.warning("finaliser: %d of %d dead letters from the lake not stored; will retry",
                        result.failed, result.letters)
            return
        if result.letters:
            log.info("finaliser: %d dead letters from %d lake files are in the table", result.letters, result.files)
        self.replayed_since = now
        # Files inside the re-read margin are skipped while unchanged; older ones are not listed.
        self._replayed_files = {f for f in self._replayed_files | set(files) if f[1] >= now - 2 * MTIME_MARGIN_SECONDS}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="bar-finalizer", daemon=True)
        self._thread.start()

    def stop(self, final_pass: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if final_pass:
            self._attempt()
            # A stop does not wait for open windows: their bars stay provisional (the live panes,
            # maybe short) until the next run's finaliser, starting from this mark, or a repair.
            log.info("finaliser: final pass done; bars from %s on stay provisional until the next run's "
                     "finaliser (same --archive and database) or python -m pipeline repair makes them final",
                     "?" if self.mark_us is None else iso_time(self.mark_us))

    def _loop(self) -> None:
        while True:
            self._attempt()
            if self._stop.wait(self.every_seconds):
                return

    def _attempt(self) -> None:
        try:
            self.run_once()
            self.replay_once()
        except psycopg.Error as err:  # the database is away: the mark waits for it
            log.warning("finaliser: database %s unavailable (%s); retrying in %.0f s",
                        mask_dsn(self.db_url), str(err).strip(), self.every_seconds)
