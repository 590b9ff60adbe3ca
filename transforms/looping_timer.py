"""A per-key looping event-time timer whose due time is remembered in state.

A stateful DoFn that walks a key's buckets in event time (decide a bucket when the watermark
passes it, then set the timer for the next) must know, when the timer fires, which moment the
firing stands for. Runners differ in what ``TimestampParam`` gives a timer callback, and
Beam's FnApiRunner does not give the firing time at all; a wrong one would re-arm the loop
forever. So the due time is written to state beside the timer, and read back in the callback.
"""
from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.coders.coders import FastPrimitivesCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec
from apache_beam.utils.timestamp import Timestamp


def bucket_due_us(bucket_start_us: int, width_us: int) -> int:
    """The last microsecond of a bucket's window: the timestamp its bars carry (Beam's window
    ``max_timestamp``), so a timer set for it fires once the watermark has passed them."""
    return bucket_start_us + width_us - 1


class LoopingTimer:
    """The state and timer specs of one looping timer, declared once per DoFn class.

    Beam finds a DoFn's state and timers through its methods' parameter defaults: give
    ``timer_param`` and ``due_param`` as the defaults of every method that uses the loop,
    ``spec`` to ``on_timer``, and wrap the two parameters in a ``BoundLoop`` inside the method.
    """

    def __init__(self, timer_name: str, due_state_name: str = "due"):
        self.spec = TimerSpec(timer_name, TimeDomain.WATERMARK)
        self.due_spec = ReadModifyWriteStateSpec(due_state_name, FastPrimitivesCoder())
        self.timer_param: Any = beam.DoFn.TimerParam(self.spec)
        self.due_param: Any = beam.DoFn.StateParam(self.due_spec)


class BoundLoop:
    """One key's looping timer inside a DoFn call: its due time, arming and stopping."""

    def __init__(self, timer: Any, due_state: Any):
        self._timer, self._due_state = timer, due_state

    @property
    def due_us(self) -> int | None:
        """When the timer is set for (in the callback: the firing being handled); None if stopped."""
        due: int | None = self._due_state.read()
        return due

    def firing_us(self) -> int | None:
        """In the timer callback: the due time of the firing being handled; None for a firing of a
        loop already stopped (the DirectRunner can deliver one), for which nothing is due."""
        return self.due_us

    @property
    def armed(self) -> bool:
        return self.due_us is not None

    def arm(self, due_us: int) -> None:
        """Set (or move) the timer to ``due_us``, remembering it."""
        self._due_state.write(due_us)
        self._timer.set(Timestamp(micros=due_us))

    def stop(self) -> None:
        """End the loop after the firing being handled: nothing is due until the next ``arm``."""
        self._due_state.clear()
