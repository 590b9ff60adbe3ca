"""Local stand-ins for cloud services: Google's Pub/Sub emulator on a loopback port, and
stopping the child processes that run them.

Shared by the live demo (``alphastream.live_demo``), the benchmarks and the test fixtures, so
there is one way to start the emulator and wait until it answers, and one way to stop a child.
"""
from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
PUBSUB_EMULATOR_LOG = "pubsub-emulator.log"
EMULATOR_START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
_POLL_SECONDS = 0.1
_LOG_TAIL_CHARS = 3000


log = logging.getLogger(__name__)


class EmulatorError(RuntimeError):
    """The emulator is not installed, or did not start."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pubsub_emulator_installed() -> bool:
    return PUBSUB_EMULATOR.exists() and shutil.which("java") is not None


def _answers_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
            return response.read().strip() == b"Ok"
    except (urllib.error.URLError, OSError):
        return False


def start_pubsub_emulator(work_dir: Path, timeout: float = EMULATOR_START_TIMEOUT_SECONDS,
                          new_session: bool = False) -> tuple[subprocess.Popen, str]:
    """Start the emulator on a free loopback port, logging to ``work_dir``; wait until
    ``GET /`` answers ``Ok``. Returns (process, "127.0.0.1:port"). The launcher script execs
    java, so the process's pid is the server's: terminating it stops the emulator."""
    if not pubsub_emulator_installed():
        raise EmulatorError(f"the Pub/Sub emulator needs {PUBSUB_EMULATOR} and java "
                            "(Debian: apt-get install google-cloud-cli-pubsub-emulator)")
    port = free_port()
    log_path = work_dir / PUBSUB_EMULATOR_LOG
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"], stdout=log,
                                   stderr=subprocess.STDOUT, cwd=work_dir, start_new_session=new_session)
    deadline = time.monotonic() + timeout
    while not _answers_ok(port):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise EmulatorError(f"the Pub/Sub emulator did not answer on port {port} within {timeout:.0f} s "
                                f"(exit code {process.returncode}); log {log_path}:\n"
                                f"{log_path.read_text(errors='replace')[-_LOG_TAIL_CHARS:]}")
        time.sleep(_POLL_SECONDS)
    return process, f"127.0.0.1:{port}"


def stop_process(process: subprocess.Popen, name: str, sig: int = signal.SIGINT,
                 timeout: float = STOP_TIMEOUT_SECONDS) -> int:
    """Signal one child we started and wait for it (kill it if it ignores the signal)."""
    if process.poll() is None:
        log.info("stopping %s (pid %d)...", name, process.pid)
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s: killing it", name, timeout)
            process.kill()
            process.wait()
    return process.returncode
