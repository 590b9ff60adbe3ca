"""The run summary of a stopped streaming run: counters that miss the bundles in flight prove
nothing, so the verdicts say "unknown" rather than "OK" or "MISMATCH"."""
from pipeline.summary import SINK_ROWS_FAILED, RunSummary

BALANCED = {"ticks_read": 100, "ticks_unique": 90, "ticks_duplicate": 5, "ticks_dead_lettered": 5,
            "lake_deadletter_rows": 5, SINK_ROWS_FAILED: 0}


def test_a_finished_run_proves_its_equations():
    summary = RunSummary(dict(BALANCED))
    assert summary.accounted
    assert sum("OK" in line for line in summary.lines("lake", None)) == 2


def test_a_stopped_streaming_run_says_unknown_even_when_the_counters_balance():
    summary = RunSummary(dict(BALANCED), complete=False)
    lines = summary.lines("lake", None)
    assert not summary.accounted
    assert not any("OK" in line or "MISMATCH" in line for line in lines), lines
    assert sum("unknown" in line for line in lines) == 2


def test_a_stopped_streaming_run_that_lost_counts_is_not_called_a_mismatch():
    summary = RunSummary({**BALANCED, "ticks_read": 7}, complete=False)
    assert not any("MISMATCH" in line for line in summary.lines("lake", None))
