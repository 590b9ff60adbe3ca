"""Beam's FlinkRunner with a job server that never outlives the pipeline that started it.

Two ways Beam's local job server JVM would be left running, holding its memory and ports (and,
for a Kafka stream, still reading the topic and committing the consumer group's offsets):

- Beam's job server ``stop()`` deletes the server's temporary folder first and stops the JVM only
  if that worked; when the job server is removing a cancelled job's artifacts from that folder at
  the same moment, the delete fails (FileNotFoundError). Here the folder is deleted ignoring such
  errors and the JVM is always stopped.
- A pipeline process killed outright (SIGKILL, the OOM killer) runs no exit handler. On Linux the
  JVM is started through util-linux's ``setpriv --pdeathsig TERM``, so the kernel sends it SIGTERM
  when the pipeline process dies, however it dies; the JVM's shutdown hooks then stop Flink.

Its results also say where Flink's REST API answers (``flink_rest_address``): Beam's job service
reports no counters for a stopped streaming job, and the run summary reads them there instead
(``pipeline.summary.flink_rest_counters``).
"""
from __future__ import annotations

import logging
import re
import shutil
from typing import Any

from apache_beam.runners.portability import flink_runner, job_server

# setpriv keeps the process (it execs the JVM), so the JVM stays the pipeline's child. The signal
# follows the death of the thread that started the JVM: Beam starts it from the thread that runs
# the pipeline, which lives as long as the pipeline process.
PARENT_DEATH_SIGNAL = "TERM"


def with_parent_death_signal(command: list[str]) -> list[str]:
    """``command`` run so that it gets SIGTERM when this process dies (unchanged without setpriv)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", PARENT_DEATH_SIGNAL, "--", *command] if setpriv else command


# What Flink's embedded cluster logs once its REST API listens (the port is a free one it picked).
_REST_ENDPOINT_LINE = re.compile(r"Rest endpoint listening at (\S+)")


class _RestEndpointFilter(logging.Filter):
    """Notes where the embedded Flink's REST API listens, from the job server's output (which
    Beam logs line by line at INFO); passes on only warnings and errors, as before."""

    def __init__(self) -> None:
        super().__init__()
        self.address: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        match = _REST_ENDPOINT_LINE.search(record.getMessage())
        if match:
            self.address = f"http://{match[1]}"
        return record.levelno >= logging.WARNING


class _FlinkJarJobServer(flink_runner.FlinkJarJobServer):  # type: ignore[misc]
    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._log_filter = _RestEndpointFilter()

    def rest_address(self) -> str | None:
        return self._log_filter.address

    def subprocess_cmd_and_endpoint(self) -> tuple[list[str], str]:
        command, endpoint = super().subprocess_cmd_and_endpoint()
        return with_parent_death_signal(command), endpoint

    def stop(self) -> Any:
        if self._local_temp_root:
            shutil.rmtree(self._local_temp_root, ignore_errors=True)
            self._local_temp_root = None
        return self._server.stop()


class FlinkRunner(flink_runner.FlinkRunner):  # type: ignore[misc]
    """Its results carry ``flink_rest_address()``: where the Flink cluster's REST API answers (the
    embedded one's once it started, else --flink_master), for the run summary of a stopped
    streaming job, whose counters Beam's job service never reports (pipeline.summary)."""

    def default_job_server(self, options: Any) -> Any:
        server = super().default_job_server(options)
        if isinstance(server, job_server.StopOnExitJobServer):  # the local job server Beam starts (not an uber jar)
            self._local_job_server = _FlinkJarJobServer(options)
            return job_server.StopOnExitJobServer(self._local_job_server)
        return server

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        from apache_beam.options.pipeline_options import FlinkRunnerOptions

        result = super().run_pipeline(pipeline, options)
        master = options.view_as(FlinkRunnerOptions).flink_master  # default_job_server added its http scheme
        local = getattr(self, "_local_job_server", None)
        if master not in flink_runner.MAGIC_HOST_NAMES:
            result.flink_rest_address = lambda: master  # a cluster's JobManager serves the REST API
        elif local is not None:
            result.flink_rest_address = local.rest_address
        return result
