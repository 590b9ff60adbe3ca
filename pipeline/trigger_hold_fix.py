"""Release a window's watermark hold once its on-time pane has fired (a Beam trigger-driver bug).

Beam's ``GeneralTriggerDriver`` (apache_beam/transforms/trigger.py) adds a watermark hold when an
element reaches a window while the step's output watermark is still before the window's end,
and on a firing keeps that hold "in case there is an empty pane that needs to be fired at the
end of the window". When the on-time pane has already fired (a late element, fired by the late
trigger while the output watermark lags the input), no firing ever clears the hold again: the
step's output watermark stays at that window's end for the rest of the run, and every
event-time window downstream (the streaming lake's bars and dead letters) never fires again.
Beam logs "Watermark moved backwards in time" on exactly those firings and labels their panes
EARLY, so a late correction would look like a live preview (and the lake, which keeps only
settled bars, would leave it out). It happens on the local Pub/Sub runner (the
BundleBasedDirectRunner) whenever the pipeline falls a few seconds behind, e.g. while a
database sink waits out its retries during an outage.
"""
from __future__ import annotations

import functools

from apache_beam.transforms.trigger import GeneralTriggerDriver
from apache_beam.utils.windowed_value import PaneInfo, PaneInfoTiming, WindowedValue

_PATCHED = "_alphastream_releases_holds_after_ontime"


def release_holds_after_on_time_pane() -> None:
    """Make every later firing of a window whose on-time pane has fired clear the window's
    watermark hold and say LATE (idempotent; patches the class for this process)."""
    if getattr(GeneralTriggerDriver, _PATCHED, False):
        return
    fire = GeneralTriggerDriver._output

    @functools.wraps(fire)
    def output(self, window, finished, state, output_watermark, maybe_ontime):
        on_time_fired = bool(state.get_state(window, self.NONSPECULATIVE_INDEX))
        fired = fire(self, window, finished, state, output_watermark, maybe_ontime)
        if not on_time_fired:
            return fired
        state.clear_state(window, self.WATERMARK_HOLD)  # no on-time pane is left to wait for
        pane = fired.pane_info
        if pane.timing != PaneInfoTiming.EARLY:
            return fired
        late = PaneInfo(pane.is_first, pane.is_last, PaneInfoTiming.LATE, pane.index, pane.nonspeculative_index)
        return WindowedValue(fired.value, fired.timestamp, fired.windows, late)

    GeneralTriggerDriver._output = output
    setattr(GeneralTriggerDriver, _PATCHED, True)
