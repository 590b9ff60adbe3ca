"""ParseTicks: raw payloads -> Ticks, with every rejected record on a tagged dead-letter output.

Input elements are ``(origin, payload)`` pairs: ``origin`` says where the record came from (a
file and line, a subscription) and ``payload`` is one tick as JSON (bytes, decoded here so an
undecodable record is a dead letter, not a crash) or a ``CsvRow``. A dead letter keeps the raw
payload as escaped text (``transforms.validation.raw_text``).
"""
# Beam's functions carry no annotations; calling them is the point of this module.
from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import TaggedOutput

from alphastream.records import METRICS_NAMESPACE, DeadLetter, Tick
from transforms.beam_types import PColl, TaggedTransform, Transform
from transforms.validation import CsvRow, TickRejected, ValidationPolicy, raw_text, tick_from_fields, tick_from_payload

DEAD_LETTERS = "dead_letters"
TICKS = "ticks"

NowFn = Callable[[], int]
_DEFAULT_POLICY = ValidationPolicy()


def dead_letter(rejection: TickRejected, raw: str, origin: str, read_at_us: int) -> DeadLetter:
    """The rejected record as a DeadLetter, dated by its own event time when it has a valid one
    (so the lake files it under the day it belongs to), else by when it was read."""
    seen_at_us = read_at_us if rejection.event_us is None else rejection.event_us
    return DeadLetter(
        reason=rejection.reason.value, detail=rejection.detail, raw=raw, origin=origin, seen_at_us=seen_at_us
    )


class _ParseTickDoFn(beam.DoFn):
    def __init__(self, now_us: NowFn, default_source: str, policy: ValidationPolicy):
        self._now_us = now_us
        self._default_source = default_source
        self._policy = policy
        self._parsed = Metrics.counter(METRICS_NAMESPACE, "ticks_parsed")
        self._rejected = Metrics.counter(METRICS_NAMESPACE, "ticks_dead_lettered")

    def process(self, element: tuple[str, str | bytes | CsvRow]) -> Iterator[Any]:
        origin, payload = element
        now_us = self._now_us()
        try:
            tick = tick_from_payload(payload, now_us=now_us, default_source=self._default_source, policy=self._policy)
        except TickRejected as rejection:
            self._rejected.inc()
            yield TaggedOutput(DEAD_LETTERS, dead_letter(rejection, raw_text(payload), origin, now_us))
            return
        self._parsed.inc()
        yield tick


class ParseTicks(TaggedTransform):
    """(origin, JSON payload or CsvRow) -> Ticks on the main output, DeadLetters on ``dead_letters``.

    ``now_us`` is the clock the "timestamp too far in the future" rule compares against; the
    pipeline passes the wall clock, tests pass a constant.
    """

    def __init__(self, now_us: NowFn, default_source: str, policy: ValidationPolicy = _DEFAULT_POLICY):
        super().__init__()
        self._fn = _ParseTickDoFn(now_us, default_source, policy)

    def expand(self, pcoll: PColl) -> dict[str, PColl]:
        parsed = pcoll | "Parse" >> beam.ParDo(self._fn).with_output_types(Tick).with_outputs(DEAD_LETTERS, main=TICKS)
        return {TICKS: parsed[TICKS], DEAD_LETTERS: parsed[DEAD_LETTERS] | "TypeDeadLetters" >> TypeDeadLetters()}


def _count_by_reason(letter: DeadLetter) -> DeadLetter:
    # Rejections are rare, so a counter looked up per letter costs nothing that matters.
    Metrics.counter(METRICS_NAMESPACE, f"dead_letters_{letter.reason}").inc()
    return letter


class TypeDeadLetters(Transform):
    """Declares a tagged output as DeadLetters so Beam encodes them with the schema coder
    (tagged outputs of a multi-output ParDo carry no type of their own), counting them by reason
    (``dead_letters_<reason>``)."""

    def expand(self, pcoll: PColl) -> PColl:
        letters: PColl = pcoll | beam.Map(_count_by_reason).with_output_types(DeadLetter)
        return letters


def validate_fields(
    fields: dict[str, Any], origin: str, *, now_us: int, default_source: str, policy: ValidationPolicy
) -> Tick | DeadLetter:
    """Validate one decoded row (from a columnar batch); the rejection becomes a DeadLetter."""
    try:
        return tick_from_fields(fields, now_us=now_us, default_source=default_source, policy=policy)
    except TickRejected as rejection:
        return dead_letter(rejection, json.dumps(fields, default=str), origin, now_us)
