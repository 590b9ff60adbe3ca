"""The ingestion loop: connector -> sink, with a rate/lag log line and an ordered shutdown.

Shutdown order (on SIGINT/SIGTERM, --max_ticks, the end of a replay, or a fatal feed error):
stop reading the feed (its connection is closed), then flush the sink -- wait until every
tick handed to it is confirmed or failed -- then release the connector's clients. Nothing
handed to the sink is dropped silently: the final line reports submitted = published + failed.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from dataclasses import dataclass

from ingestion.backoff import Clock
from ingestion.connectors.base import Connector, FeedFatalError
from ingestion.sinks.base import Sink

log = logging.getLogger(__name__)

DEFAULT_LOG_INTERVAL_SECONDS = 5.0
DEFAULT_FLUSH_TIMEOUT_SECONDS = 30.0
# A connector that never awaits (a replay burst) must still let the reporter and signals run.
YIELD_EVERY_TICKS = 500


@dataclass
class RunResult:
    reason: str  # "max_ticks", "input ended", "signal SIGTERM", "fatal: ..."
    submitted: int
    published: int
    failed: int
    malformed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds > 0 else 0.0


class RateLagReporter:
    """Builds the periodic log line: publish rate since the last line, totals, and lag
    (wall clock minus the event time of the last tick handed to the sink)."""

    def __init__(self, connector: Connector, sink: Sink, clock: Clock = time.time):
        self._connector, self._sink, self._clock = connector, sink, clock
        self._last_time = clock()
        self._last_published = 0
        self.last_event_us: int | None = None

    def line(self) -> str:
        now = self._clock()
        published = self._sink.published
        rate = (published - self._last_published) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_published = now, published
        lag = "n/a" if self.last_event_us is None else f"{now - self.last_event_us / 1e6:.3f} s"
        stats = self._connector.stats
        return (f"{self._connector.source}: {rate:,.0f} ticks/s published, lag {lag}; totals: "
                f"published={published} failed={self._sink.failed} pending={self._sink.pending} "
                f"malformed={stats.malformed} reconnects={stats.reconnects}")


async def run_ingestion(connector: Connector, sink: Sink, *, max_ticks: int | None = None,
                        log_interval: float = DEFAULT_LOG_INTERVAL_SECONDS,
                        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT_SECONDS,
                        handle_signals: bool = True) -> RunResult:
    """Run until the input ends, ``max_ticks`` ticks were handed over, or SIGINT/SIGTERM."""
    reporter = RateLagReporter(connector, sink)
    stop = _StopRequest(sink)
    if handle_signals:
        stop.install()
    started = time.monotonic()
    pump_task = asyncio.create_task(_pump(connector, sink, reporter, max_ticks), name="pump")
    stop_task = asyncio.create_task(stop.event.wait(), name="stop")
    report_task = asyncio.create_task(_report(reporter, log_interval), name="report")
    try:
        reason = await _first_end(pump_task, stop_task, stop)
    finally:
        stop_task.cancel()
        report_task.cancel()
        stop.uninstall()
        await asyncio.to_thread(sink.close, flush_timeout)
        await connector.aclose()
    return _final_result(connector, sink, reason, time.monotonic() - started)


class _StopRequest:
    """SIGINT/SIGTERM (while installed) set ``event`` and record which signal asked to stop."""

    def __init__(self, sink: Sink):
        self._sink = sink
        self.event = asyncio.Event()
        self.reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self._installed: list[int] = []

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(signum, self._on_signal, signum)
            self._installed.append(signum)

    def uninstall(self) -> None:
        for signum in self._installed:
            self._loop.remove_signal_handler(signum)
        self._installed.clear()

    def _on_signal(self, signum: int) -> None:
        if not self.event.is_set():
            name = signal.Signals(signum).name
            log.info("%s received: stopping the feed, then flushing %d pending publishes", name, self._sink.pending)
            self.reason = f"signal {name}"
            self.event.set()


async def _pump(connector: Connector, sink: Sink, reporter: RateLagReporter, max_ticks: int | None) -> str:
    """Hand the feed's ticks to the sink; returns why it stopped ("max_ticks" or "input ended")."""
    ticks = connector.stream()
    handed = 0
    try:
        async for tick in ticks:
            sink.publish(tick)
            connector.stats.record_tick(tick.symbol, time.time())
            reporter.last_event_us = tick.ts_us
            handed += 1
            if max_ticks is not None and handed >= max_ticks:
                return "max_ticks"
            if handed % YIELD_EVERY_TICKS == 0:
                await asyncio.sleep(0)
        return "input ended"
    finally:
        await ticks.aclose()


async def _report(reporter: RateLagReporter, log_interval: float) -> None:
    while True:
        await asyncio.sleep(log_interval)
        log.info(reporter.line())


async def _first_end(pump_task: asyncio.Task[str], stop_task: asyncio.Task[bool], stop: _StopRequest) -> str:
    """Wait until the feed ends (or fails) or a stop is requested; returns the reason. On a stop
    request the feed is cancelled, which closes its connection."""
    await asyncio.wait({pump_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if pump_task.done():
        try:
            return pump_task.result()
        except FeedFatalError as err:
            log.error("%s", err)
            return f"fatal: {err}"
    pump_task.cancel()
    try:
        await pump_task
    except asyncio.CancelledError:
        pass
    return stop.reason or "stopped"


def _final_result(connector: Connector, sink: Sink, reason: str, seconds: float) -> RunResult:
    """The run's totals, logged as the final line (submitted = published + failed)."""
    result = RunResult(reason=reason, submitted=sink.submitted, published=sink.published, failed=sink.failed,
                       malformed=connector.stats.malformed, seconds=seconds)
    log.info("%s: stopped (%s) after %.2f s: submitted=%d published=%d failed=%d malformed=%d (%.0f ticks/s)",
             connector.source, result.reason, seconds, result.submitted, result.published, result.failed,
             result.malformed, result.rate)
    return result
