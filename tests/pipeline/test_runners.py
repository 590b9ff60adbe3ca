"""The local runner: what Beam's DirectRunner falls back to without Prism, chosen without the
Prism download (pipeline/runners.py)."""
import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner, SwitchingDirectRunner
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner

from pipeline.graph import build_graph
from pipeline.options import AlphastreamOptions
from pipeline.runners import (
    EMBEDDED_BATCH_JVM_FLAGS,
    flink_runner,
    is_default_direct_runner,
    is_submitted,
    local_runner,
    runs_locally,
    runs_on_dataflow,
    runs_on_flink,
)

# Graphs here read made-up subscriptions: the session's emulator must not be asked about them.
pytestmark = pytest.mark.usefixtures("no_pubsub_emulator")

GRAPHS = {
    "batch synthetic": ["--symbols", "2", "--ticks_per_symbol", "50"],
    "streaming synthetic": ["--streaming", "--symbols", "2", "--max_duration", "1"],
    "streaming pubsub": ["--streaming", "--source", "pubsub",
                         "--subscription", "projects/alphastream-test/subscriptions/ticks"],
}


@pytest.mark.parametrize("runner, default", [(None, True), ("DirectRunner", True), ("direct", True),
                                             ("PrismRunner", False), ("DataflowRunner", False),
                                             ("BundleBasedDirectRunner", False)])
def test_only_beams_default_runner_is_replaced(runner, default):
    flags = [] if runner is None else ["--runner", runner]
    assert is_default_direct_runner(PipelineOptions(flags)) is default


@pytest.mark.parametrize("runner, local, dataflow", [
    (None, True, False), ("DirectRunner", True, False), ("BundleBasedDirectRunner", True, False),
    ("PrismRunner", True, False), ("prism", True, False),
    ("apache_beam.runners.portability.prism_runner.PrismRunner", True, False),
    ("DataflowRunner", False, True), ("dataflow", False, True), ("FlinkRunner", True, False)])
def test_prism_runs_locally_like_the_direct_runner_and_dataflow_is_remote(runner, local, dataflow):
    """Prism is not Beam's default runner (it is not replaced) but runs on this machine: it can
    use the embedded database and is waited for, not submitted. So does Flink embedded in its
    job server (--flink_master's default, [auto])."""
    options = PipelineOptions([] if runner is None else ["--runner", runner])
    assert runs_locally(options) is local
    assert runs_on_dataflow(options) is dataflow
    assert is_submitted(options) is dataflow


@pytest.mark.parametrize("master, local", [("[auto]", True), ("[local]", True), ("flink-jobmanager:8081", False),
                                           ("http://10.0.0.5:8081", False)])
def test_flink_runs_here_when_embedded_and_is_waited_for_on_a_cluster_too(master, local):
    """A Flink cluster cannot reach this machine's embedded database, but the command still
    waits for the job (Beam's job server reports it here) instead of submitting and returning."""
    options = PipelineOptions(["--runner", "FlinkRunner", "--flink_master", master])
    assert runs_on_flink(options)
    assert runs_locally(options) is local
    assert not is_submitted(options)


class _Chosen(Exception):
    """Raised by a runner's run_pipeline to name the runner the DirectRunner picked."""


@pytest.mark.parametrize("case", GRAPHS)
def test_the_choice_is_the_one_beams_direct_runner_makes_when_prism_is_unavailable(case, monkeypatch, tmp_path):
    flags = GRAPHS[case]
    options = PipelineOptions([*flags, "--output", str(tmp_path)])

    def unavailable(self, pipeline, options):
        raise RuntimeError("no Prism binary (as on a machine without network)")

    def chosen(self, pipeline, options):
        raise _Chosen(type(self).__name__)

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", unavailable)
    monkeypatch.setattr(fn_runner.FnApiRunner, "run_pipeline", chosen)
    monkeypatch.setattr(BundleBasedDirectRunner, "run_pipeline", chosen)

    pipeline = beam.Pipeline(runner=SwitchingDirectRunner(), options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming="--streaming" in flags,
                now_us=lambda: 0, day=dt.date(2024, 1, 2), db_url=None)
    with pytest.raises(_Chosen) as beams_choice:
        pipeline.run()
    assert beams_choice.value.args[0] == type(local_runner(options)).__name__


def test_a_default_run_never_tries_prism(monkeypatch, tmp_path, capsys):
    from pipeline.__main__ import main

    def tried(*args, **kwargs):
        raise AssertionError("Prism was tried")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", tried)
    assert main(["--symbols", "2", "--ticks_per_symbol", "200", "--no_db", "--output", str(tmp_path)]) == 0
    assert "accounting      OK" in capsys.readouterr().out


def test_a_run_keeps_the_garbage_collector_off_the_objects_from_before_it(monkeypatch, tmp_path, capsys):
    """Beam's import-time objects are frozen for the run (so full collections do not walk
    them) and handed back to the collector after it."""
    import gc

    from pipeline.__main__ import main

    frozen_during_run = []
    real_run = beam.Pipeline.run

    def run(self, *args, **kwargs):
        frozen_during_run.append(gc.get_freeze_count())
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "run", run)
    frozen_before = gc.get_freeze_count()
    assert main(["--symbols", "2", "--ticks_per_symbol", "200", "--no_db", "--output", str(tmp_path)]) == 0
    assert frozen_during_run and frozen_during_run[0] > frozen_before
    assert gc.get_freeze_count() == frozen_before


@pytest.mark.parametrize("flags, expected", [
    ([], list(EMBEDDED_BATCH_JVM_FLAGS)),
    (["--flink_master", "[local]"], list(EMBEDDED_BATCH_JVM_FLAGS)),
    (["--streaming"], []),  # a long-running job keeps the JVM's defaults
    (["--flink_master", "jobmanager:8081"], []),  # the cluster runs the job, not this JVM
    (["--job_server_jvm_properties=-Xmx2g"], ["-Xmx2g"]),  # the user's own flags win
])
def test_embedded_flink_batch_starts_its_job_server_jvm_for_a_short_job(flags, expected):
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, JobServerOptions

    options = PipelineOptions(["--runner", "FlinkRunner", *flags])
    flink_runner(options)
    assert options.view_as(JobServerOptions).job_server_jvm_properties == expected
    assert options.view_as(FlinkRunnerOptions).flink_job_server_jar.endswith("launcher.jar")
