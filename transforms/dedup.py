"""DedupTrades: drop repeated deliveries of the same trade in a stream.

Pub/Sub and websocket feeds deliver at least once, so the same trade (same source, symbol and
trade id: transforms.trade_identity) can arrive twice. A stateful DoFn keyed by the trade remembers each trade for
``horizon_seconds`` of event time after the trade, then forgets it (an event-time timer clears
the state), so memory stays bounded. The horizon should cover the allowed lateness: a
duplicate arriving after it would be counted twice.

The batch path deduplicates inside its (symbol, day) groups instead (transforms.batch_bars).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration

from alphastream.records import METRICS_NAMESPACE, Tick
from transforms.trade_identity import trade_identity


class _FirstDeliveryOnlyDoFn(beam.DoFn):
    SEEN = ReadModifyWriteStateSpec("seen", BooleanCoder())
    FORGET = TimerSpec("forget", TimeDomain.WATERMARK)

    def __init__(self, horizon_seconds: int):
        self._horizon = Duration(seconds=horizon_seconds)
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, "ticks_duplicate")
        self._unique = Metrics.counter(METRICS_NAMESPACE, "ticks_unique")

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        seen=beam.DoFn.StateParam(SEEN),
        forget=beam.DoFn.TimerParam(FORGET),
    ):
        _, tick = element
        if seen.read():
            self._duplicates.inc()
            return
        seen.write(True)
        forget.set(timestamp + self._horizon)
        self._unique.inc()
        yield tick

    @on_timer(FORGET)
    def _forget(self, seen=beam.DoFn.StateParam(SEEN)):
        seen.clear()


class DedupTrades(beam.PTransform):
    """Timestamped Ticks -> the first delivery of each trade, timestamps kept."""

    def __init__(self, horizon_seconds: int):
        super().__init__()
        self._horizon_seconds = horizon_seconds

    def expand(self, ticks):
        return (
            ticks
            | "KeyByTrade" >> beam.Map(lambda t: (trade_identity(t), t)).with_output_types(
                tuple[tuple[str, str, str], Tick])
            | "FirstDeliveryOnly" >> beam.ParDo(_FirstDeliveryOnlyDoFn(self._horizon_seconds)).with_output_types(Tick)
        )
