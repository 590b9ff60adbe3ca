"""The looping timer's callbacks when the runner delivers a firing of a loop already stopped
(the DirectRunner can): nothing is due, so nothing is emitted and nothing raises."""
from __future__ import annotations

from typing import Any

from transforms.anomalies import DetectorParams, _StreamingDetectorDoFn
from transforms.gap_fill import FillPolicy, _LoopingFillDoFn


class _State:
    """A state cell as Beam hands one to a DoFn call (read / write / add / clear)."""

    def __init__(self, value: Any = None):
        self.value = value

    def read(self) -> Any:
        return self.value

    def write(self, value: Any) -> None:
        self.value = value

    def add(self, value: Any) -> None:
        self.value = [*(self.value or []), value]

    def clear(self) -> None:
        self.value = None


class _Timer:
    def __init__(self) -> None:
        self.set_to: list[Any] = []

    def set(self, when: Any) -> None:
        self.set_to.append(when)


def test_a_stale_firing_of_the_anomaly_detector_is_ignored():
    detector = _StreamingDetectorDoFn(DetectorParams(), "1m")
    timer = _Timer()
    out = list(detector._judge(series=_State(), pending=_State([]), due=_State(None), judge=timer))
    assert out == [] and timer.set_to == []


def test_a_stale_firing_of_gap_filling_is_ignored():
    filler = _LoopingFillDoFn(FillPolicy())
    timer = _Timer()
    out = list(filler._decide(key=("AAPL", "1m"), cursor_state=_State(None), ahead=_State([]), due=_State(None),
                              decide=timer))
    assert out == [] and timer.set_to == []
