"""Submitting the pipeline to a remote runner (Dataflow): submit, say how to manage it, return.

A streaming job on Dataflow runs until someone drains or cancels it, so the command that starts
it must not wait for it (a CI step would time out) and must never stop it: Beam's own streaming
habit of ``cancel()`` on Ctrl-C is right for a local run and wrong for a production job. Waiting
is opt-in (``--wait``), and a Ctrl-C while waiting only stops the waiting.
"""
from __future__ import annotations

import logging
import shlex
import sys
from typing import TextIO

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.runners.dataflow.dataflow_runner import DataflowRuntimeException
from apache_beam.runners.runner import PipelineResult, PipelineState

log = logging.getLogger(__name__)

CONSOLE_JOB_URL = "https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"
# Exit codes: the job was submitted (and, with --wait, finished well), or it ended badly.
EXIT_SUBMITTED = 0
EXIT_JOB_FAILED = 1
SUCCESSFUL_END_STATES = {PipelineState.DONE, PipelineState.DRAINED, PipelineState.UPDATED}


def management_lines(options: PipelineOptions, job_id: str) -> list[str]:
    """What to print after a submission: the job, where to watch it, how to stop or update it."""
    cloud = options.view_as(GoogleCloudOptions)
    where = f"--region {shlex.quote(cloud.region or 'REGION')} --project {shlex.quote(cloud.project or 'PROJECT')}"
    return [
        f"submitted Dataflow job {job_id} ({cloud.job_name or 'generated name'})",
        "  console  " + CONSOLE_JOB_URL.format(region=cloud.region, job_id=job_id, project=cloud.project),
        f"  drain    gcloud dataflow jobs drain {job_id} {where}    # finish in-flight work, then stop",
        f"  cancel   gcloud dataflow jobs cancel {job_id} {where}   # stop now, in-flight work is lost",
        f"  update   the same launch command with --update --job_name {cloud.job_name or 'NAME'} "
        "(renamed steps: --transform_name_mapping '{\"Old\": \"New\"}')",
        "  the job keeps running after this command exits",
    ]


def run_remote(pipeline: beam.Pipeline, options: PipelineOptions, *, wait: bool, out: TextIO | None = None) -> int:
    """Submit ``pipeline`` to its remote runner and return an exit code.

    Without ``wait``: print the job id, console URL and management commands, and return 0 as
    soon as the service accepted the job. With ``wait``: then block until the job ends (0 if it
    ended well); Ctrl-C stops the waiting and leaves the job running. Never cancels the job.
    """
    out = out or sys.stdout  # looked up now: sys.stdout may have been replaced since import
    result = pipeline.run()
    job_id = _job_id(result)
    if job_id is None:  # nothing was submitted: --dry_run, or --template_location staged a template
        template = options.view_as(GoogleCloudOptions).template_location
        print(f"template staged at {template}" if template else "no job submitted (dry run)", file=out)
        return EXIT_SUBMITTED
    for line in management_lines(options, job_id):
        print(line, file=out)
    if not wait:
        return EXIT_SUBMITTED
    print(f"waiting for job {job_id} to finish (Ctrl-C stops waiting, not the job)...", file=out, flush=True)
    try:
        state = result.wait_until_finish()
    except KeyboardInterrupt:
        print(f"\nstopped waiting; job {job_id} is still running", file=out)
        return EXIT_SUBMITTED
    except DataflowRuntimeException as err:  # the job failed or was cancelled by someone else
        print(f"job {job_id} did not finish well: {err}", file=out)
        return EXIT_JOB_FAILED
    print(f"job {job_id} ended: {state}", file=out)
    return EXIT_SUBMITTED if state in SUCCESSFUL_END_STATES else EXIT_JOB_FAILED


def _job_id(result: PipelineResult) -> str | None:
    has_job = getattr(result, "has_job", False)
    job_id = getattr(result, "job_id", None)
    return job_id() if has_job and callable(job_id) else None
