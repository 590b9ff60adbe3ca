"""pipeline.trigger_hold_fix on Beam's own trigger driver: a late element fired while the step's
output watermark still lags the window's end must neither hold that watermark for ever nor be
labelled EARLY."""
from __future__ import annotations

from apache_beam.transforms import trigger, window
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.trigger import GeneralTriggerDriver, InMemoryUnmergedState
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming, WindowedValue

from pipeline.trigger_hold_fix import release_holds_after_on_time_pane

WINDOW = window.IntervalWindow(0, 10)


class FrozenClock:
    def time(self) -> float:
        return 0.0


def element(value: str, at_seconds: int) -> WindowedValue:
    return WindowedValue(value, Timestamp(at_seconds), [WINDOW])


def test_a_late_firing_after_the_on_time_pane_releases_the_hold_and_says_late():
    release_holds_after_on_time_pane()
    release_holds_after_on_time_pane()  # a second call changes nothing
    windowing = Windowing(window.FixedWindows(10), triggerfn=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                          accumulation_mode=trigger.AccumulationMode.DISCARDING, allowed_lateness=100)
    driver, state = GeneralTriggerDriver(windowing, FrozenClock()), InMemoryUnmergedState()

    assert list(driver.process_elements(state, [element("a", 5)], Timestamp(0), Timestamp(0))) == []
    assert state.get_earliest_hold() < WINDOW.end  # held for the on-time pane
    (window_id,) = {w for w, _ in state.get_timers(watermark=Timestamp(11))[0]}
    (on_time,) = driver.process_timer(window_id, "trigger", TimeDomain.WATERMARK, WINDOW.end, state, Timestamp(11))
    assert on_time.pane_info.timing == PaneInfoTiming.ON_TIME and state.get_earliest_hold() == MAX_TIMESTAMP

    # Late data, fired while the step's output watermark (5) is still before the window's end.
    (late,) = driver.process_elements(state, [element("b", 6)], Timestamp(5), Timestamp(20))
    assert late.value == ["b"]
    assert late.pane_info.timing == PaneInfoTiming.LATE and late.pane_info.index == 1
    assert state.get_earliest_hold() == MAX_TIMESTAMP  # Beam alone leaves it at the window's end for ever
