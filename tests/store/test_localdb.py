"""The embedded local database: initdb + start on first use, reuse, stop, restart with the
data kept; a clear error when no server binaries exist; the ``python -m store`` CLI."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from alphastream.settings import ENV_PREFIX
from store.localdb import INSTALL_HINT, LocalDatabase, LocalDatabaseError, PostgresNotInstalled, find_server_binaries

REPO = Path(__file__).resolve().parents[2]
FIRST_START_BUDGET_SECONDS = 5.0  # measured ~0.9 s for initdb + start; leave room for a busy machine


@pytest.fixture
def postgres_home():
    """A home folder the postgres account can enter (pytest's tmp_path is private to root)."""
    home = Path(tempfile.mkdtemp(prefix="alphastream-home-"))
    home.chmod(0o755)
    yield home
    LocalDatabase(home).stop()
    subprocess.run(["rm", "-rf", str(home)], check=True)


def test_start_reuse_stop_and_restart_keeps_data(postgres_home):
    local = LocalDatabase(postgres_home, durable=False)
    assert not local.status().initialised
    started = time.monotonic()
    dsn = local.ensure_running()
    assert time.monotonic() - started < FIRST_START_BUDGET_SECONDS
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"
        identity = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")

    assert local.ensure_running() == dsn  # running: reused as is
    assert local.status().running
    assert local.stop() is True
    assert not local.status().running and local.stop() is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)

    assert LocalDatabase(postgres_home).ensure_running() == dsn  # same cluster, restarted, not re-initialised
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0] == identity
        assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]


def test_wrong_password_is_refused(pg_cluster):
    dsn = pg_cluster.admin_url
    psycopg.connect(dsn, connect_timeout=2).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, password="wrong", connect_timeout=2)


def test_missing_server_binaries_give_the_install_hint(tmp_path):
    with pytest.raises(PostgresNotInstalled, match="apt-get install postgresql"):
        find_server_binaries([tmp_path])
    with pytest.raises(PostgresNotInstalled) as err:
        LocalDatabase(tmp_path / "home", bin_dir=tmp_path / "nowhere").ensure_running()
    assert INSTALL_HINT in str(err.value)
    assert not (tmp_path / "home").exists()  # nothing created before the check


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server through runuser -u postgres")
def test_home_the_postgres_account_cannot_reach_is_a_clear_error(tmp_path):
    private = tmp_path / "private"  # pytest's tmp_path sits under a root-only folder
    with pytest.raises(LocalDatabaseError, match="cannot reach"):
        LocalDatabase(private).ensure_running()


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env[f"{ENV_PREFIX}HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "store", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_start_url_migrate_status_stop(postgres_home):
    assert "migrate" in _cli("--help", home=postgres_home).stdout
    assert _cli("status", home=postgres_home).returncode == 1
    start = _cli("start", home=postgres_home)
    assert start.returncode == 0, start.stderr
    assert ":***@127.0.0.1:" in start.stdout  # the password is masked
    dsn = _cli("url", home=postgres_home).stdout.strip()
    assert dsn.startswith("postgresql://alphastream:") and "***" not in dsn
    first = _cli("migrate", home=postgres_home)
    assert first.returncode == 0 and "applied 0001, 0002" in first.stdout, first.stderr
    assert "already current" in _cli("migrate", "--db_url", dsn, home=postgres_home).stdout
    status = _cli("status", home=postgres_home)
    assert status.returncode == 0 and status.stdout.startswith("running")
    assert _cli("stop", home=postgres_home).stdout.strip() == "stopped"
    assert _cli("status", home=postgres_home).stdout.startswith("stopped")


def test_two_processes_starting_at_once_share_one_cluster(postgres_home):
    """The API and the pipeline may both start the embedded database: one initdb, one server."""
    code = ("import sys; from pathlib import Path; from store.localdb import LocalDatabase; "
            "print(LocalDatabase(Path(sys.argv[1]), durable=False).ensure_running())")
    starts = [subprocess.Popen([sys.executable, "-c", code, str(postgres_home)], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in starts]
    assert [p.returncode for p in starts] == [0, 0], [err for _, err in results]
    assert results[0][0] == results[1][0]  # the same DSN: same port, same password
    with psycopg.connect(results[0][0].strip()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
