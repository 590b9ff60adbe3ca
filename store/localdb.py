"""The embedded local database: a private PostgreSQL cluster under the project's home folder.

``python -m pipeline`` with no database configured calls ``ensure_running()``: the first time it
runs ``initdb`` into ``<home>/postgres/data`` (about a second), then starts the server with
``pg_ctl`` and reuses it on later runs. The server listens on 127.0.0.1 only (no unix socket,
so long paths do not matter), and a generated password (``<home>/postgres/password``, mode
600) protects it from other local users. PostgreSQL refuses to run as root, so as root every
server command runs through ``runuser -u postgres`` on a folder owned by postgres.
"""
from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg

from alphastream.errors import UserFacingError
from alphastream.local_services import free_port
from alphastream.settings import AlphastreamSettings, mask_dsn

log = logging.getLogger(__name__)

INSTALL_HINT = ("install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; macOS: "
                "brew install postgresql), or point --db_url / ALPHASTREAM_DB_URL at an existing server")
SERVER_BINARY_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin")
SERVER_USER = "postgres"  # the OS account that runs the server when we are root
DB_USER = "alphastream"
DB_NAME = "alphastream"
START_TIMEOUT_SECONDS = 30
LOG_TAIL_LINES = 20
LOCK_FILE_NAME = "postgres.lock"  # in the home folder: serialises initdb/start across processes
# Test clusters trade crash safety for speed; the demo database keeps PostgreSQL's defaults.
NON_DURABLE_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresNotInstalled(UserFacingError, RuntimeError):
    """No initdb/pg_ctl found: the message says how to install them."""


class LocalDatabaseError(UserFacingError, RuntimeError):
    """The local cluster failed to initialise or start (the message carries the server log tail)."""


def find_server_binaries(search_dirs: list[Path] | None = None) -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: PATH first, then the usual install places
    (newest version first). Raises PostgresNotInstalled with the install hint."""
    if search_dirs is None:
        on_path = shutil.which("pg_ctl")
        if on_path and (Path(on_path).parent / "initdb").exists():
            return Path(on_path).parent
        search_dirs = [Path(d) for pattern in SERVER_BINARY_GLOBS
                       for d in sorted(glob.glob(pattern), key=_version_key, reverse=True)]
    for directory in search_dirs:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    searched = ", ".join(str(d) for d in search_dirs) or "PATH and " + ", ".join(SERVER_BINARY_GLOBS)
    raise PostgresNotInstalled(f"no PostgreSQL server binaries (initdb, pg_ctl) found in {searched}: {INSTALL_HINT}")


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in Path(path).parent.name.split(".") if part.isdigit())


@dataclass(frozen=True)
class ClusterStatus:
    initialised: bool
    running: bool
    data_dir: Path
    port: int | None

    def describe(self) -> str:
        if not self.initialised:
            return f"not initialised ({self.data_dir} does not exist yet)"
        state = "running" if self.running else "stopped"
        return f"{state}: data {self.data_dir}, 127.0.0.1:{self.port}"


class LocalDatabase:
    """A private PostgreSQL cluster in ``<home>/postgres``: initdb once, start, reuse, stop."""

    def __init__(self, home: Path, port: int | None = None, *, durable: bool = True,
                 bin_dir: Path | None = None):
        self.root = Path(home).absolute() / "postgres"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._state_file = self.root / "instance.json"
        self._password_file = self.root / "password"
        self._requested_port = port
        self._durable = durable
        self._bin_dir = bin_dir

    @classmethod
    def from_settings(cls, settings: AlphastreamSettings) -> "LocalDatabase":
        return cls(settings.home)

    # -- public API -------------------------------------------------------------------------

    def ensure_running(self) -> str:
        """Initialise on first use, start if stopped; returns the DSN of the ``alphastream`` db.

        Safe to call from several processes at once (the API and the pipeline, say): a file
        lock makes the second wait for the first instead of running initdb twice."""
        bin_dir = self._server_binaries()
        with self._exclusive():
            fresh = not self.initialised
            if fresh:
                self._initdb(bin_dir)
            if not self._pg_ctl_running(bin_dir):
                self._start(bin_dir)
                self._create_database()  # idempotent; also completes a first run that stopped early
        dsn = self.url()
        log.info("local PostgreSQL %s at %s", "initialised and started" if fresh else "running", mask_dsn(dsn))
        return dsn

    def stop(self) -> bool:
        """Stop the server (fast shutdown); returns False if it was not running."""
        if not self.initialised:
            return False
        bin_dir = self._server_binaries()
        if not self._pg_ctl_running(bin_dir):
            return False
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        return True

    def status(self) -> ClusterStatus:
        running = self.initialised and self._pg_ctl_running(self._server_binaries())
        return ClusterStatus(self.initialised, running, self.data_dir, self.port if self.initialised else None)

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists() and self._state_file.exists()

    @property
    def port(self) -> int:
        return int(json.loads(self._state_file.read_text())["port"])

    def url(self, database: str = DB_NAME) -> str:
        """The DSN of ``database`` on this cluster (contains the password: mask it in logs)."""
        password = self._password_file.read_text().strip()
        return f"postgresql://{DB_USER}:{password}@127.0.0.1:{self.port}/{database}"

    # -- internals --------------------------------------------------------------------------

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with open(self.root.parent / LOCK_FILE_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _server_binaries(self) -> Path:
        return find_server_binaries([self._bin_dir] if self._bin_dir else None)

    @property
    def _as_root(self) -> bool:
        return hasattr(os, "geteuid") and os.geteuid() == 0

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a server command, as the postgres account when we are root; raise with context."""
        if self._as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise LocalDatabaseError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr.strip()}"
                                     f"{self._log_tail()}")
        return result

    def _pg_ctl_running(self, bin_dir: Path) -> bool:
        argv = [str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"]
        if self._as_root:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def _log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return f"\nserver log {self.log_file} (last lines):\n" + "\n".join(lines)

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        if self._as_root:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
            # The server account must be able to walk down to its folder.
            probe = subprocess.run(["runuser", "-u", SERVER_USER, "--", "test", "-w", str(self.root)])
            if probe.returncode != 0:
                raise LocalDatabaseError(
                    f"the {SERVER_USER} account cannot reach {self.root}: a parent folder is not "
                    f"traversable (chmod o+x it) or choose another ALPHASTREAM_HOME")

    def _initdb(self, bin_dir: Path) -> None:
        if self.data_dir.exists():  # a half-finished initdb: start over
            shutil.rmtree(self.data_dir)
        self._prepare_root()
        self._password_file.write_text(secrets.token_urlsafe(24))
        self._password_file.chmod(0o600)
        if self._as_root:
            shutil.chown(self._password_file, SERVER_USER, SERVER_USER)
        self._run([str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", DB_USER,
                   f"--pwfile={self._password_file}", "--auth=scram-sha-256", "-E", "UTF8",
                   "--locale=C.UTF-8", "--no-sync", "--no-instructions"])
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(self._requested_port or free_port()),
                    "unix_socket_directories": "''"}
        if not self._durable:
            settings.update(NON_DURABLE_SETTINGS)
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# alphastream embedded database\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._state_file.write_text(json.dumps({"port": int(settings["port"]), "durable": self._durable}))

    def _start(self, bin_dir: Path) -> None:
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                   "-w", "-t", str(START_TIMEOUT_SECONDS), "start"])
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:  # pg_ctl -w waits for "ready"; this guards against a port taken meanwhile
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as err:
                if time.monotonic() > deadline:
                    raise LocalDatabaseError(f"local PostgreSQL did not accept connections: {err}"
                                             f"{self._log_tail()}") from err
                time.sleep(0.05)

    def _create_database(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
