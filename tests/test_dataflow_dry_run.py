"""The same graph builds a valid Dataflow job offline (DataflowRunner --dry_run needs no
credentials), with setup.py staged for the workers."""
import datetime as dt

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from pipeline.graph import build_graph
from pipeline.options import AlphastreamOptions

DATAFLOW_ARGS = [
    "--runner", "DataflowRunner", "--dry_run", "True", "--project", "test-project", "--region", "us-central1",
    "--temp_location", "gs://alphastream-test/tmp", "--setup_file", "./setup.py",
]


def dry_run(extra: list[str], streaming: bool):
    options = PipelineOptions(DATAFLOW_ARGS + extra)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming=streaming, now_us=lambda: 0,
                day=dt.date(2024, 1, 2), db_url=None)
    return pipeline.run().job


def top_level_steps(job) -> set[str]:
    return {t.unique_name for t in job.proto_pipeline.components.transforms.values() if "/" not in t.unique_name}


def test_batch_job_builds_offline_with_the_expected_graph():
    job = dry_run(["--no_db", "--output", "gs://alphastream-test/lake"], streaming=False)
    assert {"ReadSyntheticMarket", "ValidateTickTables", "Bars", "FlattenDeadLetters", "WriteBarsToLake",
            "WriteDeadLettersToLake"} <= top_level_steps(job)
    assert job.options.view_as(SetupOptions).setup_file == "./setup.py"
    artifacts = [d for env in job.proto_pipeline.components.environments.values() for d in env.dependencies]
    assert artifacts, "setup.py's sdist should be staged as a worker dependency"
    assert job.proto.name  # a job name was generated


def test_streaming_job_builds_offline_from_pubsub_to_postgres():
    job = dry_run(["--streaming", "--source", "pubsub", "--subscription",
                   "projects/test-project/subscriptions/ticks", "--no_db"], streaming=True)
    steps = top_level_steps(job)
    assert {"ReadPubsub", "ParseTicks", "DedupTrades", "Bars", "FlattenDeadLetters"} <= steps, steps
    # On Dataflow, Pub/Sub itself also deduplicates redeliveries by the id attribute.
    read = next(t for t in job.proto_pipeline.components.transforms.values()
                if t.unique_name.startswith("ReadPubsub/") and "ReadFromPubSub" in t.unique_name)
    assert read is not None


def test_streaming_job_writes_to_postgres_when_given_a_database():
    options = PipelineOptions(DATAFLOW_ARGS + ["--streaming", "--source", "pubsub", "--subscription",
                                               "projects/test-project/subscriptions/ticks"])
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming=True, now_us=lambda: 0,
                day=dt.date(2024, 1, 2), db_url="postgresql://alphastream@10.0.0.5:5432/alphastream")
    job = pipeline.run().job
    assert {"WriteBarsToPostgres", "WriteDeadLettersToPostgres"} <= top_level_steps(job)
