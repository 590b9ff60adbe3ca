"""Which runner ``--runner DirectRunner`` (Beam's default) means for alphastream.

Beam's DirectRunner first tries Prism: it downloads the Prism binary from GitHub on a first
run and, if that works, runs the job there; without network it logs the failure and falls
back to its FnApiRunner (batch, and streaming without Pub/Sub) or its BundleBasedDirectRunner
(Pub/Sub). So the same command ran on different runners on different machines, and every run
here paid ~50 ms for a failed download. alphastream picks the fallback directly: the runners
its tests, benchmarks and documented latencies are measured on. Prism stays one flag away:
``--runner PrismRunner``, and is the runner for ``--source kafka``: Beam's Kafka reader is a
Java transform, and of the local runners only Prism runs it unbounded (in the Java worker pool
that ``alphastream.local_services`` starts).
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineRunner

from pipeline.options import AlphastreamOptions

# What --runner may say for the default (Beam accepts the name with or without "Runner").
DIRECT_RUNNER_NAMES = {None, "direct", "directrunner"}


def is_default_direct_runner(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    return (runner.lower() if isinstance(runner, str) else runner) in DIRECT_RUNNER_NAMES


def local_runner(options: PipelineOptions) -> PipelineRunner:
    """The runner Beam's DirectRunner falls back to without Prism, made the way it makes it; Prism
    for a Kafka stream (the only local runner that runs Beam's Java Kafka reader, unbounded)."""
    streaming = options.view_as(StandardOptions).streaming
    source = options.view_as(AlphastreamOptions).source
    if streaming and source == "kafka":
        return prism_runner(options)
    if streaming and source == "pubsub":  # Pub/Sub's Python IO runs on the BundleBasedDirectRunner only
        from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

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
