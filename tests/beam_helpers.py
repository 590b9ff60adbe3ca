"""Collect a PCollection's contents from a test pipeline run in this process.

Beam pickles the callbacks given to assert_that, so a closure appending to a local list
appends to a copy. The DirectRunner runs in this process, so a module-level registry keyed
by a unique id survives the pickling.
"""
from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.testing.util import assert_that

_RESULTS: dict[str, list] = {}


class _Store:
    def __init__(self, key: str):
        self.key = key

    def __call__(self, elements):
        _RESULTS[self.key] = list(elements)


class Collected:
    """``got = Collected(pcoll)``; after the pipeline ran, ``got.items`` holds the elements."""

    def __init__(self, pcoll, label: str = "Collect"):
        self._key = uuid.uuid4().hex
        assert_that(pcoll | f"{label}GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows()),
                    _Store(self._key), label=label)

    @property
    def items(self) -> list:
        if self._key not in _RESULTS:
            raise AssertionError("the pipeline has not run yet (or the collector never fired)")
        return _RESULTS.pop(self._key)
