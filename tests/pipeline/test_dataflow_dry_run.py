"""The same graph builds a valid Dataflow job offline (DataflowRunner --dry_run needs no
credentials), with setup.py staged for the workers; with --db_url_secret the job carries the
secret's name, and the workers read the DSN."""
import datetime as dt

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.utils.secret import GcpSecret

from pipeline.graph import build_graph
from pipeline.options import AlphastreamOptions, db_url_secret
from pipeline.postgres_sink import _WriteRowsDoFn

# Graphs here read made-up subscriptions: the session's emulator must not be asked about them.
pytestmark = pytest.mark.usefixtures("no_pubsub_emulator")

DATAFLOW_ARGS = [
    "--runner", "DataflowRunner", "--dry_run", "True", "--project", "test-project", "--region", "us-central1",
    "--temp_location", "gs://alphastream-test/tmp", "--setup_file", "./setup.py",
]


def build_and_dry_run(extra: list[str], streaming: bool, db_url=None):
    """(the pipeline, the Dataflow job it builds offline)."""
    options = PipelineOptions(DATAFLOW_ARGS + extra)
    pipeline = beam.Pipeline(options=options)
    build_graph(pipeline, options.view_as(AlphastreamOptions), streaming=streaming, now_us=lambda: 0,
                day=dt.date(2024, 1, 2), db_url=db_url)
    return pipeline, pipeline.run().job


def dry_run(extra: list[str], streaming: bool, db_url=None):
    return build_and_dry_run(extra, streaming, db_url)[1]


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
    job = dry_run(["--streaming", "--source", "pubsub", "--subscription", "projects/test-project/subscriptions/ticks"],
                  streaming=True, db_url="postgresql://alphastream@10.0.0.5:5432/alphastream")
    assert {"WriteBarsToPostgres", "WriteDeadLettersToPostgres"} <= top_level_steps(job)


SECRET_VERSION = "projects/test-project/secrets/alphastream-pipeline-db-url/versions/latest"


class _SinkFinder(PipelineVisitor):
    def __init__(self):
        self.dofns = []

    def visit_transform(self, node):
        dofn = getattr(node.transform, "dofn", None)
        if isinstance(dofn, _WriteRowsDoFn):
            self.dofns.append(dofn)


def test_streaming_job_with_db_url_secret_carries_the_secret_name_not_a_dsn():
    args = ["--streaming", "--source", "pubsub", "--subscription", "projects/test-project/subscriptions/ticks",
            "--db_url_secret", SECRET_VERSION]
    opts = PipelineOptions(DATAFLOW_ARGS + args).view_as(AlphastreamOptions)
    pipeline, job = build_and_dry_run(args, streaming=True, db_url=db_url_secret(opts))
    assert {"WriteBarsToPostgres", "WriteDeadLettersToPostgres"} <= top_level_steps(job)
    assert opts.db_url is None and opts.db_url_secret == SECRET_VERSION
    finder = _SinkFinder()
    pipeline.visit(finder)
    # Each sink ships the secret (resolved in setup on the worker), never a DSN string.
    assert len(finder.dofns) == 2 and all(isinstance(d._db_url, GcpSecret) for d in finder.dofns)


@pytest.mark.parametrize("args, problem", [
    (["--db_url", "postgresql://x", "--db_url_secret", SECRET_VERSION], "not both"),
    (["--db_url_secret", "alphastream-pipeline-db-url"], "not a secret version name"),
    (["--db_url_secret", "projects/p/secrets/s"], "not a secret version name"),
])
def test_db_url_secret_is_refused_with_a_reason(args, problem):
    with pytest.raises(ValueError, match=problem):
        db_url_secret(PipelineOptions(args).view_as(AlphastreamOptions))


def test_no_db_wins_over_a_db_url_secret():
    options = PipelineOptions(["--no_db", "--db_url_secret", SECRET_VERSION]).view_as(AlphastreamOptions)
    assert db_url_secret(options) is None


# Top-level step labels of the streaming job. Dataflow matches a running job's steps to the new
# graph's by these names when the job is updated (--update): renaming one needs
# --transform_name_mapping '{"OldName": "NewName"}' (docs/deploy.md), so a change here is a
# deliberate one, made together with that mapping.
STREAMING_STEP_LABELS = {
    "ReadPubsub", "ParseTicks", "DedupTrades", "Bars", "FillGaps", "FlattenDeadLetters",
    "WriteBarsToLake", "WriteDeadLettersToLake", "WriteUnstoredDeadLettersToLake",
    "WriteBarsToPostgres", "WriteDeadLettersToPostgres",
}


def _step_labels(job) -> set[str]:
    """The labels of the steps directly under the pipeline's root (Beam's runner-made root is
    named by an id, not a label)."""
    transforms = job.proto_pipeline.components.transforms
    return {transforms[step].unique_name for root in job.proto_pipeline.root_transform_ids
            for step in transforms[root].subtransforms}


def test_streaming_step_labels_are_stable_for_updates():
    job = dry_run(["--streaming", "--source", "pubsub", "--subscription", "projects/test-project/subscriptions/ticks"],
                  streaming=True, db_url="postgresql://alphastream@10.0.0.5:5432/alphastream")
    assert _step_labels(job) == STREAMING_STEP_LABELS, (
        "the streaming job's step labels changed: a running job can only be updated with "
        "--transform_name_mapping from the old names to the new (docs/deploy.md), then update this set")
