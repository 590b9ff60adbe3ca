"""``run_remote``: a Dataflow launch submits, prints how to manage the job, and returns; it never
cancels the job, not even on Ctrl-C while waiting.

There is no Dataflow here, so Beam's ``DataflowRunner.run_pipeline`` is replaced by one that
builds nothing remote and answers with a running job, as the service does after a submission.
Everything else (the pipeline, the options, Beam's DataflowPipelineResult) is real; cancel and
wait_until_finish are wrapped to record calls.
"""
from __future__ import annotations

import datetime as dt
import io
import signal
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.dataflow import dataflow_runner
from apache_beam.runners.dataflow.dataflow_runner import DataflowPipelineResult, DataflowRunner
from apache_beam.runners.runner import PipelineState
from google.cloud import dataflow as dataflow_api

from pipeline.graph import build_graph
from pipeline.launch import EXIT_JOB_FAILED, EXIT_SUBMITTED, run_remote
from pipeline.options import AlphastreamOptions

# Graphs here read made-up subscriptions: the session's emulator must not be asked about them.
pytestmark = pytest.mark.usefixtures("no_pubsub_emulator")

JOB_ID = "2026-01-02_03_04_05-1234567890"
ARGS = ["--runner", "DataflowRunner", "--project", "test-project", "--region", "europe-west1",
        "--job_name", "alphastream-bars", "--temp_location", "gs://alphastream-test/tmp",
        "--streaming", "--source", "pubsub", "--subscription", "projects/test-project/subscriptions/ticks",
        "--no_db", "--output", "gs://alphastream-test/lake"]
# Beam's option validation asks GCS about the temp bucket unless dry_run is set; the faked
# run_pipeline ignores dry_run, so the launcher still sees a submitted, running job.
OFFLINE = ["--dry_run", "True"]
# A submission returns within this; the real wait would poll the service every 5 s for ever.
PROMPT_SECONDS = 5.0


class Calls:
    def __init__(self):
        self.submitted = 0
        self.cancelled = 0
        self.waited = 0


@pytest.fixture
def calls(monkeypatch) -> Calls:
    calls = Calls()

    def submit(runner, pipeline, options, pipeline_proto=None):
        calls.submitted += 1
        job = dataflow_api.Job(id=JOB_ID, name="alphastream-bars",
                               current_state=dataflow_api.JobState.JOB_STATE_RUNNING)
        return DataflowPipelineResult(job, runner, options)

    def cancel(result):
        calls.cancelled += 1
        raise AssertionError("the launcher cancelled the remote job")

    monkeypatch.setattr(DataflowRunner, "run_pipeline", submit)
    monkeypatch.setattr(DataflowPipelineResult, "cancel", cancel)
    return calls


def _pipeline() -> tuple[beam.Pipeline, PipelineOptions]:
    options = PipelineOptions(ARGS + OFFLINE)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming=True, now_us=lambda: 0,
                day=dt.date(2024, 1, 2), db_url=None)
    return pipeline, options


def test_launch_returns_promptly_with_the_job_id_and_how_to_manage_it(calls: Calls, monkeypatch):
    def never_wait(result, duration=None):
        raise AssertionError("the launcher waited for a streaming job without --wait")

    monkeypatch.setattr(DataflowPipelineResult, "wait_until_finish", never_wait)
    pipeline, options = _pipeline()
    out = io.StringIO()
    started = time.monotonic()
    assert run_remote(pipeline, options, wait=False, out=out) == EXIT_SUBMITTED
    assert time.monotonic() - started < PROMPT_SECONDS
    text = out.getvalue()
    assert calls.submitted == 1 and calls.cancelled == 0
    assert f"https://console.cloud.google.com/dataflow/jobs/europe-west1/{JOB_ID}?project=test-project" in text
    assert f"gcloud dataflow jobs drain {JOB_ID} --region europe-west1 --project test-project" in text
    assert f"gcloud dataflow jobs cancel {JOB_ID} --region europe-west1 --project test-project" in text
    assert "--update --job_name alphastream-bars" in text and "--transform_name_mapping" in text


def test_ctrl_c_while_waiting_stops_waiting_and_leaves_the_job_running(calls: Calls, monkeypatch):
    def interrupted_wait(result, duration=None):
        calls.waited += 1
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers: Python's handler raises KeyboardInterrupt
        raise AssertionError("SIGINT did not interrupt the wait")

    monkeypatch.setattr(DataflowPipelineResult, "wait_until_finish", interrupted_wait)
    pipeline, options = _pipeline()
    out = io.StringIO()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_remote(pipeline, options, wait=True, out=out) == EXIT_SUBMITTED
    finally:
        signal.signal(signal.SIGINT, previous)
    assert calls.waited == 1 and calls.cancelled == 0
    assert f"job {JOB_ID} is still running" in out.getvalue()


@pytest.mark.parametrize("end_state, code", [(PipelineState.DONE, EXIT_SUBMITTED),
                                             (PipelineState.DRAINED, EXIT_SUBMITTED),
                                             (PipelineState.CANCELLED, EXIT_JOB_FAILED)])
def test_wait_reports_how_the_job_ended(calls: Calls, monkeypatch, end_state, code):
    monkeypatch.setattr(DataflowPipelineResult, "wait_until_finish", lambda result, duration=None: end_state)
    pipeline, options = _pipeline()
    assert run_remote(pipeline, options, wait=True, out=io.StringIO()) == code
    assert calls.cancelled == 0


def test_a_failed_job_while_waiting_exits_non_zero(calls: Calls, monkeypatch):
    def failed(result, duration=None):
        raise dataflow_runner.DataflowRuntimeException("Dataflow pipeline failed. State: FAILED", result)

    monkeypatch.setattr(DataflowPipelineResult, "wait_until_finish", failed)
    pipeline, options = _pipeline()
    out = io.StringIO()
    assert run_remote(pipeline, options, wait=True, out=out) == EXIT_JOB_FAILED
    assert "State: FAILED" in out.getvalue()


def test_dry_run_submits_nothing_and_succeeds(monkeypatch):
    monkeypatch.undo()
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)  # undo() brought the emulator's back
    options = PipelineOptions(ARGS + OFFLINE)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming=True, now_us=lambda: 0,
                day=dt.date(2024, 1, 2), db_url=None)
    out = io.StringIO()
    assert run_remote(pipeline, options, wait=True, out=out) == EXIT_SUBMITTED
    assert "no job submitted" in out.getvalue()


@pytest.mark.timeout(120)
def test_python_m_pipeline_on_dataflow_returns_after_submitting(calls: Calls, monkeypatch, capsys):
    from pipeline.__main__ import main

    def never_wait(result, duration=None):
        raise AssertionError("python -m pipeline waited for a streaming job without --wait")

    monkeypatch.setattr(DataflowPipelineResult, "wait_until_finish", never_wait)
    assert main(ARGS + OFFLINE) == EXIT_SUBMITTED
    assert calls.submitted == 1 and calls.cancelled == 0
    assert f"gcloud dataflow jobs drain {JOB_ID}" in capsys.readouterr().out
