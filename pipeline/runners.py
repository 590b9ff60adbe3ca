"""Which runner a run uses, decided in one place.

Beam's DirectRunner first tries Prism, downloading its binary from GitHub on a first run, and
falls back to its FnApiRunner (batch, and streaming without Pub/Sub) or its
BundleBasedDirectRunner (Pub/Sub) when that fails, so one command would run on different runners
on different machines. For ``--runner DirectRunner`` (the default) alphastream picks that fallback
directly: the runners its tests and benchmarks run on. Prism stays one flag away,
``--runner PrismRunner``, and is the runner for ``--source kafka``: Beam's Kafka reader is a Java
transform, and of the local runners only Prism runs it unbounded (in the Java worker pool that
``alphastream.local_services`` starts).

``--runner FlinkRunner`` runs on Beam's portable Flink runner through the job server that
``python -m alphastream.java_jars`` assembles (Maven Central serves no job-server jar for Beam
2.77); with ``--flink_master`` unset, ``[auto]`` or ``[local]`` that job server runs an embedded
Flink on this machine, and with ``--flink_master host:port`` it submits to that cluster. Either
way the command waits for the job and prints its summary.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from pipeline.options import AlphastreamOptions

# What --runner may say for Beam's default runner (Beam accepts the name with or without "Runner").
DIRECT_RUNNER_NAMES = {"", "direct", "directrunner"}
# Substrings of the --runner names (short or fully qualified) that run the job in this process.
LOCAL_RUNNER_MARKERS = ("direct", "prism")
# --flink_master values with which Beam's Flink job server runs Flink itself, in its own process.
FLINK_LOCAL_MASTERS = {"[auto]", "[local]"}
EMBEDDED_BATCH_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")


def _runner_name(options: PipelineOptions) -> str:
    """--runner lower-cased; "" when unset (Beam's default)."""
    runner = options.view_as(StandardOptions).runner
    return str(runner or "").lower()


def is_default_direct_runner(options: PipelineOptions) -> bool:
    """--runner names Beam's default DirectRunner (or is unset): alphastream replaces it by
    ``local_runner``."""
    return _runner_name(options) in DIRECT_RUNNER_NAMES


def runs_on_flink(options: PipelineOptions) -> bool:
    return "flink" in _runner_name(options)


def _flink_master_is_local(options: PipelineOptions) -> bool:
    from apache_beam.options.pipeline_options import FlinkRunnerOptions

    return options.view_as(FlinkRunnerOptions).flink_master.strip() in FLINK_LOCAL_MASTERS


def runs_locally(options: PipelineOptions) -> bool:
    """The job runs on this machine (any DirectRunner, Prism, Flink embedded in its job server):
    it can reach the embedded local database, migrates the schema itself and is waited for."""
    name = _runner_name(options)
    if runs_on_flink(options):
        return _flink_master_is_local(options)
    return not name or any(marker in name for marker in LOCAL_RUNNER_MARKERS)


def is_submitted(options: PipelineOptions) -> bool:
    """The command submits the job and returns (Dataflow); otherwise it waits for the job here
    (local runners, and Flink, whose job server reports the job's progress to this process)."""
    return not runs_locally(options) and not runs_on_flink(options)


def runner_for(options: PipelineOptions) -> PipelineRunner | None:
    """The runner alphastream makes for these flags, or None for the one --runner names."""
    if is_default_direct_runner(options):
        return local_runner(options)
    if runs_on_flink(options):
        return flink_runner(options)
    return None


def runs_on_dataflow(options: PipelineOptions) -> bool:
    return "dataflow" in _runner_name(options)


def reads_kafka(options: PipelineOptions) -> bool:
    """A Kafka stream: locally it needs Prism, on Flink a job server that can run its reader
    (``alphastream.flink_kafka``)."""
    return bool(options.view_as(StandardOptions).streaming) and options.view_as(AlphastreamOptions).source == "kafka"


def local_runner(options: PipelineOptions) -> PipelineRunner:
    """The runner Beam's DirectRunner falls back to without Prism, made the way it makes it; Prism
    for a Kafka stream (the only local runner that runs Beam's Java Kafka reader, unbounded)."""
    if reads_kafka(options):
        return prism_runner(options)
    streaming = options.view_as(StandardOptions).streaming
    # Pub/Sub's Python IO runs on the BundleBasedDirectRunner only.
    if streaming and options.view_as(AlphastreamOptions).source == "pubsub":
        from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

        from pipeline.trigger_hold_fix import release_holds_after_on_time_pane

        release_holds_after_on_time_pane()  # a Beam trigger bug this runner hits when it falls behind
        return BundleBasedDirectRunner()
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=provision)


def prism_runner(options: PipelineOptions) -> PipelineRunner:
    """Beam's Prism runner, on the binary ``python -m alphastream.java_jars`` builds unless
    ``--prism_location`` names one (Beam itself would download it from GitHub)."""
    from apache_beam.options.pipeline_options import PrismRunnerOptions
    from apache_beam.runners.portability.prism_runner import PrismRunner

    from alphastream.errors import UserFacingError
    from alphastream.java_jars import JarsMissingError, prism_binary

    prism = options.view_as(PrismRunnerOptions)
    if not prism.prism_location:
        try:
            prism.prism_location = str(prism_binary())
        except JarsMissingError as err:
            raise UserFacingError(f"--source kafka runs on Beam's Prism runner here: {err}") from None
    return PrismRunner()


def flink_runner(options: PipelineOptions) -> PipelineRunner:
    """Beam's FlinkRunner on the job server ``python -m alphastream.java_jars`` assembles, unless
    ``--flink_job_server_jar`` names one (Beam itself would download a jar Maven Central does not
    serve here; for a Kafka stream, the one with KafkaIO's legacy reader on its classpath). Beam runs
    the Python steps in this process (LOOPBACK) when Flink is embedded."""
    from apache_beam.options.pipeline_options import FlinkRunnerOptions, JobServerOptions

    from alphastream.errors import UserFacingError
    from alphastream.flink_kafka import flink_kafka_job_server_jar
    from alphastream.java_jars import JarsMissingError, flink_job_server_jar
    from pipeline.flink_job_server import FlinkRunner

    flink = options.view_as(FlinkRunnerOptions)
    job_server = options.view_as(JobServerOptions)
    batch = not options.view_as(StandardOptions).streaming
    if batch and _flink_master_is_local(options) and not job_server.job_server_jvm_properties:
        # A batch job on embedded Flink is short and its JVM does little but move elements to the
        # Python workers: start-up dominates, and a JVM that skips C2 compilation and the
        # parallel collector starts faster (docs/benchmarks.md, Flink batch).
        job_server.job_server_jvm_properties = list(EMBEDDED_BATCH_JVM_FLAGS)
    if not flink.flink_job_server_jar:
        try:
            flink.flink_job_server_jar = str(flink_kafka_job_server_jar() if reads_kafka(options)
                                             else flink_job_server_jar())
        except JarsMissingError as err:
            raise UserFacingError(f"--runner FlinkRunner needs Beam's Flink job server: {err}") from None
    return FlinkRunner()
