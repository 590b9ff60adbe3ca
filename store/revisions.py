"""Bar revisions: which stored version of a bar wins, across panes, restarts and repairs.

Beam numbers a bar's panes 0, 1, 2... within one run, so after a restart a new run's pane 0
would lose to the old run's pane 5 for ever. The store therefore orders bars by a revision:

* a streaming pane: ``run epoch (seconds) << PANE_BITS | pane_index``, so a later run's panes
  replace an earlier run's, and within a run a later pane replaces an earlier one;
* a final bar (a batch run, or ``python -m pipeline repair`` from the tick archive):
  ``FINAL_REVISION``, above every streaming revision, so no streaming pane replaces it; a
  final bar replaces another only if its values differ (a re-run over corrected input).
"""
from __future__ import annotations

import typing
from typing import NamedTuple

from alphastream.records import Bar, PaneTiming

PANE_BITS = 20  # a million panes per bar and run
FINAL_REVISION = 1 << 62


# A bar as the ``bars`` table holds it: the record's fields (named in alphastream.records
# only) plus its revision.
# mypy accepts only literal fields here; the record's own fields are the point (one place names them).
StoredBar = NamedTuple("StoredBar", [*typing.get_type_hints(Bar).items(), ("revision", int)])  # type: ignore[misc]


def streaming_revision(run_epoch_seconds: int, pane_index: int) -> int:
    if not 0 <= pane_index < 1 << PANE_BITS:
        raise ValueError(f"pane_index {pane_index} out of range")
    return run_epoch_seconds << PANE_BITS | pane_index


def is_final(revision: int) -> bool:
    return revision >= FINAL_REVISION


def bar_state(timing: str, revision: int) -> str:
    """What a client may expect of a stored bar: ``final`` (it will not change again),
    ``revised`` (a late tick changed it after its window closed; a repair will finalise it) or
    ``provisional`` (its window is open, or closed and awaiting finalisation)."""
    if is_final(revision):
        return "final"
    return "revised" if timing == PaneTiming.LATE.value else "provisional"
