"""Beam's FlinkRunner with a job server that always stops its JVM.

Beam's job server ``stop()`` deletes the server's temporary folder first and stops the JVM only
if that worked; when the job server is removing a cancelled job's artifacts from that folder at
the same moment, the delete fails (FileNotFoundError) and the job server's JVM outlives the
pipeline, holding its memory and ports. Here the folder is deleted ignoring such errors and the
JVM is always stopped.
"""
from __future__ import annotations

import shutil
from typing import Any

from apache_beam.runners.portability import flink_runner, job_server


class _FlinkJarJobServer(flink_runner.FlinkJarJobServer):  # type: ignore[misc]
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
