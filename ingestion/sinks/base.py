"""The sink interface the service drives, and its counters."""
from __future__ import annotations

import abc
import json
import threading
from typing import Callable

from alphastream.records import Tick

# With nothing sent for this long, a sink sends a heartbeat (an empty batch stamped now), so the
# pipeline's watermark moves on while the feed is quiet (--heartbeat_seconds).
DEFAULT_HEARTBEAT_SECONDS = 1.0


class Sink(abc.ABC):
    """Publishes ticks asynchronously; counts what the broker confirmed and what failed.

    ``publish`` hands a tick over (it may block briefly under flow control); ``close`` waits
    until every tick handed over is confirmed or failed, then releases the client. Counters are
    updated from client threads, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.submitted = 0
        self.published = 0
        self.failed = 0
        # Told the seconds each confirmed publish took (ingestion.metrics sets a histogram here).
        self.latency_observer: Callable[[float], None] | None = None

    def _observe_latency(self, seconds: float) -> None:
        if self.latency_observer is not None:
            self.latency_observer(seconds)

    def _confirmed(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.published += 1
            else:
                self.failed += 1

    @property
    def pending(self) -> int:
        with self._lock:
            return self.submitted - self.published - self.failed

    @abc.abstractmethod
    def publish(self, tick: Tick) -> None:
        """Hand one tick to the client (non-blocking apart from flow control)."""

    @abc.abstractmethod
    def close(self, timeout: float) -> None:
        """Flush: wait up to ``timeout`` s for every submitted tick, then stop the client."""


class StdoutSink(Sink):
    """Writes each message body as one JSON line with its attributes (debugging aid)."""

    def __init__(self, stream=None) -> None:
        super().__init__()
        import sys

        self._stream = stream or sys.stdout

    def publish(self, tick: Tick) -> None:
        from alphastream.wire import encode_tick

        body, attributes = encode_tick(tick)
        self.submitted += 1
        self._stream.write(f"{body.decode()}\t{json.dumps(attributes)}\n")
        self._confirmed(True)

    def close(self, timeout: float) -> None:
        self._stream.flush()
