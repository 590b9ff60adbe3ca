"""The run summary of a stopped streaming run: counters that miss the bundles in flight prove
nothing, so the verdicts say "unknown" rather than "OK" or "MISMATCH"; and a runner that reported
no counters at all for it (Flink) is not summarised as a run that read nothing."""
from apache_beam.metrics import monitoring_infos
from apache_beam.portability.api import beam_job_api_pb2

from alphastream.local_services import free_port
from alphastream.records import METRICS_NAMESPACE
from pipeline.summary import SINK_ROWS_FAILED, RunSummary, flink_rest_counters, portable_summary

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


def _counter(name: str, value: int):
    return monitoring_infos.int64_user_counter(METRICS_NAMESPACE, name, value, ptransform="ParseTicks")


def test_a_stopped_portable_run_sums_the_counters_it_attempted():
    response = beam_job_api_pb2.GetJobMetricsResponse()
    response.metrics.attempted.extend([_counter("ticks_read", 60), _counter("ticks_read", 40)])
    summary = portable_summary(response, complete=False)
    assert summary.unavailable is None and summary.get("ticks_read") == 100


def test_a_stopped_run_whose_runner_reported_no_metrics_says_so_rather_than_print_zeros():
    """What Flink's job service answers for a stopped streaming job (tests/pipeline/test_flink_kafka_streaming.py)."""
    lines = portable_summary(beam_job_api_pb2.GetJobMetricsResponse(), complete=False).lines("lake", None)
    assert lines[0].startswith("counters unavailable: the runner reported none"), lines
    assert not any(line.startswith("ticks read") for line in lines), lines


def test_a_finished_run_without_reports_still_counts_zero():
    summary = portable_summary(beam_job_api_pb2.GetJobMetricsResponse(), complete=True)
    assert summary.unavailable is None and summary.accounted


def test_no_counters_when_flinks_rest_api_does_not_answer():
    assert flink_rest_counters(f"http://127.0.0.1:{free_port()}", "BeamApp-x") == {}
