"""ArchivingSink: every tick goes to the tick archive first, then to the real sink.

Write-ahead: ticks are buffered for at most ``max_delay_seconds`` (or ``max_ticks``), the
buffer is appended to the archive (``alphastream.tick_archive``: fsync'd locally), and only
then are its ticks handed to the wrapped sink. So a tick any reader of the bus can see is
already in the archive, and ``python -m pipeline repair`` can rebuild every bar from it. An
archive that cannot be written stops the feed (the error propagates): publishing ticks that
could never be repaired would break that promise silently.
"""
from __future__ import annotations

import threading

from alphastream.records import Tick
from alphastream.tick_archive import TickArchive
from ingestion.sinks.base import Sink

DEFAULT_MAX_DELAY_SECONDS = 0.02
DEFAULT_MAX_TICKS = 1_000


class ArchivingSink(Sink):
    """Wraps ``inner``; its counters are the inner sink's, plus the ticks still buffered here."""

    def __init__(self, inner: Sink, archive: TickArchive, *, max_ticks: int = DEFAULT_MAX_TICKS,
                 max_delay_seconds: float = DEFAULT_MAX_DELAY_SECONDS):
        # No super().__init__(): the counters below are read from the inner sink.
        self._inner, self._archive = inner, archive
        self._max_ticks, self._max_delay = max_ticks, max_delay_seconds
        self._buffer: list[Tick] = []
        self._guard = threading.Lock()  # one flush at a time, in tick order
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._unarchived = 0  # ticks dropped because the archive refused them: counted as failed
        self._flusher = threading.Thread(target=self._flush_periodically, name="archive-flusher", daemon=True)
        self._flusher.start()

    @property
    def submitted(self) -> int:
        with self._guard:
            return self._inner.submitted + len(self._buffer) + self._unarchived

    @property
    def published(self) -> int:
        return self._inner.published

    @property
    def failed(self) -> int:
        return self._inner.failed + self._unarchived

    @property
    def pending(self) -> int:
        with self._guard:
            return self._inner.pending + len(self._buffer)

    @property
    def latency_observer(self):
        return self._inner.latency_observer

    @latency_observer.setter
    def latency_observer(self, observe) -> None:  # the publish latency is the inner sink's
        self._inner.latency_observer = observe

    @property
    def archived(self) -> int:
        return self._archive.archived

    def publish(self, tick: Tick) -> None:
        if self._error is not None:
            raise RuntimeError(f"the tick archive under {self._archive.root} failed: {self._error}") from self._error
        with self._guard:
            self._buffer.append(tick)
            if len(self._buffer) >= self._max_ticks:
                self._flush_locked()

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._flusher.join()
        with self._guard:
            self._flush_locked()
        self._archive.close()
        self._inner.close(timeout)

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        ticks, self._buffer = self._buffer, []
        try:
            self._archive.append(ticks)  # durable first...
        except BaseException:
            self._unarchived += len(ticks)
            raise
        for tick in ticks:  # ...then visible on the bus
            self._inner.publish(tick)

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self._max_delay):
            try:
                with self._guard:
                    self._flush_locked()
            except BaseException as err:  # surfaced by the next publish(), which stops the feed
                self._error = err
                return
