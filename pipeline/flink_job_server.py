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
"""
from __future__ import annotations

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


class _FlinkJarJobServer(flink_runner.FlinkJarJobServer):  # type: ignore[misc]
    def subprocess_cmd_and_endpoint(self) -> tuple[list[str], str]:
        command, endpoint = super().subprocess_cmd_and_endpoint()
        return with_parent_death_signal(command), endpoint

    def stop(self) -> Any:
        if self._local_temp_root:
            shutil.rmtree(self._local_temp_root, ignore_errors=True)
            self._local_temp_root = None
        return self._server.stop()


class FlinkRunner(flink_runner.FlinkRunner):  # type: ignore[misc]
    def default_job_server(self, options: Any) -> Any:
        server = super().default_job_server(options)
        if isinstance(server, job_server.StopOnExitJobServer):  # the local job server Beam starts (not an uber jar)
            return job_server.StopOnExitJobServer(_FlinkJarJobServer(options))
        return server
