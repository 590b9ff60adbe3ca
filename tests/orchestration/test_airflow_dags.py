"""The Airflow DAGs, run by a real Airflow 3 (its own cached virtualenv, scripts/airflow_venv.sh).

* DagBag: both DAGs import without errors, with the retry, catch-up and concurrency settings
  their docstrings promise.
* ``airflow dags test alphastream_backfill`` for one day, on a real PostgreSQL and a local lake:
  the bars it stores equal a direct ``python -m pipeline`` run's, in the database and in the
  lake; a re-run of the day changes nothing; the data-quality gate fails a bad day by name.
* ``airflow dags test alphastream_maintenance``: the day's streaming lake files are compacted.

Building the virtualenv takes minutes the first time; if it cannot be built the tests fail
(they do not skip): CI must run them.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from alphastream.records import Bar, Tick
from alphastream.tick_archive import TickArchive
from pipeline.lake import records_to_table, write_parquet_replacing
from pipeline.streaming_lake import lake_file_name
from store.revisions import FINAL_REVISION
from tests.fixtures.postgres import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "orchestration" / "dags"
VENV_SCRIPT = ROOT / "scripts" / "airflow_venv.sh"
DAY = "2026-01-24"
DAY_START_US = 1_769_212_800_000_000  # 2026-01-24T00:00:00Z
SYMBOLS = ("AAPL", "MSFT", "BTC-USD")
TICKS_PER_SYMBOL = 300
AIRFLOW_SECONDS = 600
BAR_COLUMNS = "symbol, interval, bucket_start, open, high, low, close, volume, vwap, trades, timing, pane_index"


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    """Airflow's virtualenv (built once, then reused): a failure here fails the tests."""
    done = subprocess.run(["bash", str(VENV_SCRIPT)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        pytest.fail(f"scripts/airflow_venv.sh could not build Airflow's virtualenv ({done.returncode}):\n"
                    f"{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def airflow_env(airflow_venv: Path, tmp_path_factory) -> dict[str, str]:
    """Environment of a throwaway Airflow: its own home and SQLite metadata database, our DAGs only."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAGS), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__UNIT_TEST_MODE="False", PATH=f"{airflow_venv / 'bin'}{os.pathsep}{env['PATH']}")
    _airflow(env, "db", "migrate")
    return env


def _airflow(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, timeout=AIRFLOW_SECONDS,
                          cwd=env["AIRFLOW_HOME"])
    if check and done.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args[:2])} failed ({done.returncode}):\n{done.stdout[-4000:]}"
                             f"\n{done.stderr[-4000:]}")
    return done


def _dags_test(env: dict[str, str], dag_id: str, conf: dict) -> tuple[str, str]:
    """``airflow dags test DAG DAY -c CONF``: (the run's final state, its output).

    A task put up for retry would make ``dags test`` wait out the DAG's retry delay (minutes):
    the run is stopped there and the test fails with the output that shows why."""
    command = ["airflow", "dags", "test", dag_id, DAY, "-c", json.dumps(conf)]
    lines: list[str] = []
    with subprocess.Popen(command, env=env, cwd=env["AIRFLOW_HOME"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            lines.append(line)
            if "new_state=up_for_retry" in line:
                process.terminate()
                pytest.fail(f"a task of {dag_id} failed and was put up for retry:\n{''.join(lines)[-6000:]}")
    output = "".join(lines)
    finished = [line for line in lines if "DagRun Finished" in line]
    assert finished, f"airflow dags test {dag_id} did not finish a run ({process.returncode}):\n{output[-4000:]}"
    return finished[-1].split("state=")[1].split(",")[0], output


def _write_ticks(folder: Path) -> None:
    """One day of three symbols, one duplicate delivery and one invalid tick."""
    folder.mkdir(parents=True)
    with open(folder / "part-0.csv", "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["symbol", "ts_us", "price", "size", "trade_id"])
        for n, symbol in enumerate(SYMBOLS):
            for i in range(TICKS_PER_SYMBOL):
                writer.writerow([symbol, DAY_START_US + i * 20_000_000 + n * 7 + i % 5, 100 + (i * 37 % 101) / 100,
                                 1 + i % 9, f"{symbol}-{i}"])
        writer.writerow(["AAPL", DAY_START_US + 5, 100.5, 1, "AAPL-0"])  # a second delivery of a trade
        writer.writerow(["AAPL", DAY_START_US + 9, -1, 1, "AAPL-bad"])  # dead-lettered: bad_price


def _db_bars(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(f"SELECT {BAR_COLUMNS} FROM bars ORDER BY symbol, interval, bucket_start").fetchall()


def _lake_bars(lake: Path) -> dict[str, list[dict]]:
    return {str(path.relative_to(lake)): pq.read_table(path).to_pylist()
            for path in sorted((lake / "bars").rglob("*.parquet"))}


def _dag_facts(venv: Path, env: dict[str, str]) -> dict:
    """The DAG folder loaded as Airflow loads a bundle (its folder importable, for the shared
    alphastream_defaults): import errors, and each DAG's settings and task graph."""
    script = f"""
import json
from airflow.models.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder={str(DAGS)!r}, bundle_path={str(DAGS)!r})
print(json.dumps({{"errors": {{k: str(v) for k, v in bag.import_errors.items()}}, "dags": {{
    dag_id: {{"catchup": dag.catchup, "max_active_runs": dag.max_active_runs, "schedule": str(dag.schedule),
              "tasks": {{t.task_id: {{"retries": t.retries, "downstream": sorted(t.downstream_task_ids)}}
                        for t in dag.tasks}}}}
    for dag_id, dag in bag.dags.items()}}}}))
"""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], env=env, capture_output=True, text=True,
                          timeout=AIRFLOW_SECONDS, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dags_import_without_errors_with_explicit_retries_and_catchup(airflow_venv, airflow_env):
    facts = _dag_facts(airflow_venv, airflow_env)
    assert facts["errors"] == {}
    assert set(facts["dags"]) == {"alphastream_backfill", "alphastream_maintenance"}
    backfill, maintenance = facts["dags"]["alphastream_backfill"], facts["dags"]["alphastream_maintenance"]
    assert backfill["catchup"] is True and backfill["max_active_runs"] == 1
    assert backfill["tasks"]["run_local"]["retries"] == 2
    assert backfill["tasks"]["data_quality"]["retries"] == 0
    assert backfill["tasks"]["choose_runner"]["downstream"] == ["run_dataflow", "run_local"]
    assert backfill["tasks"]["run_local"]["downstream"] == ["data_quality"]
    assert backfill["tasks"]["run_dataflow"]["downstream"] == ["dataflow_counters"]
    assert maintenance["catchup"] is False
    assert maintenance["tasks"]["repair"]["downstream"] == ["compact_lake"]


def test_a_deployment_sets_the_params_defaults_through_an_airflow_variable(airflow_venv, airflow_env):
    site = {**airflow_env, "AIRFLOW_VAR_ALPHASTREAM_BACKFILL_PARAMS": json.dumps({"runner": "dataflow",
                                                                                  "lake": "gs://b/lake"})}
    script = f"""
from airflow.models.dagbag import BundleDagBag
params = BundleDagBag(dag_folder={str(DAGS)!r}, bundle_path={str(DAGS)!r}).dags["alphastream_backfill"].params
print(params["runner"], params["lake"], params["ticks_glob"])
"""
    done = subprocess.run([str(airflow_venv / "bin" / "python"), "-c", script], env=site, capture_output=True,
                          text=True, timeout=AIRFLOW_SECONDS, check=True)
    assert done.stdout.strip().splitlines()[-1] == "dataflow gs://b/lake data/ticks/{date}/*"


def test_backfill_dag_stores_the_bars_of_a_direct_run_and_a_rerun_changes_nothing(
        airflow_env, pg_cluster, tmp_path):
    _write_ticks(tmp_path / "ticks" / DAY)
    glob = str(tmp_path / "ticks" / "{date}" / "*.csv")
    dag_db, direct_db = pg_cluster.new_database(), pg_cluster.new_database()
    conf = {"ticks_glob": glob, "lake": str(tmp_path / "dag-lake"), "db_url": dag_db,
            "project_dir": str(ROOT), "python": sys.executable}

    state, output = _dags_test(airflow_env, "alphastream_backfill", conf)
    assert state == "success", output[-4000:]
    assert "data quality OK for 2026-01-24" in output

    run_pipeline("--source", "files", "--input", glob.replace("{date}", DAY), "--output", str(tmp_path / "direct-lake"),
                 "--db_url", direct_db)
    stored = _db_bars(dag_db)
    assert len(stored) == len(SYMBOLS) * (TICKS_PER_SYMBOL // 3 + TICKS_PER_SYMBOL // 15 + 2)  # 1m, 5m, 1h
    assert stored == _db_bars(direct_db)
    assert _lake_bars(tmp_path / "dag-lake") == _lake_bars(tmp_path / "direct-lake")

    # The same day again: identical bars. With a dead-letter limit the day's one bad tick
    # (1 of 302) breaks, the gate fails the run and says why.
    lake_before = _lake_bars(tmp_path / "dag-lake")
    state, output = _dags_test(airflow_env, "alphastream_backfill", {**conf, "max_dead_letter_rate": 0.001})
    assert state == "failed"
    assert "data quality FAILED for 2026-01-24" in output
    assert "dead-letter rate 0.11% (1 of 902) is above 0.10%" in output
    assert _db_bars(dag_db) == stored
    assert _lake_bars(tmp_path / "dag-lake") == lake_before


def _pane_file(lake: Path, bar: Bar, pane: int) -> None:
    stem = f"bars/interval={bar.interval}/date={DAY}/bars-{bar.symbol}"
    window_start = bar.bucket_start_us
    write_parquet_replacing(str(lake / lake_file_name(stem, window_start, window_start + 60_000_000, pane)),
                            records_to_table([bar], Bar))


def test_maintenance_dag_repairs_from_the_archive_and_compacts_the_day(airflow_env, pg_cluster, tmp_path):
    archive = TickArchive(str(tmp_path / "archive"), writer_id="test")
    archive.append([Tick("AAPL", DAY_START_US + i * 20_000_000, 100 + i, 1, f"t{i}", "synthetic") for i in range(9)])
    archive.close()
    lake = tmp_path / "lake"
    for i in range(3):  # the streaming lake's files of three minutes of AAPL
        _pane_file(lake, Bar("AAPL", "1m", DAY_START_US + i * 60_000_000, 1, 2, 0.5, 1.5, 10, 1.2, 3, "ON_TIME", 0), 0)
    db_url = pg_cluster.new_database()
    conf = {"archive": str(tmp_path / "archive"), "lake": str(lake), "db_url": db_url,
            "project_dir": str(ROOT), "python": sys.executable}

    state, output = _dags_test(airflow_env, "alphastream_maintenance", conf)
    assert state == "success", output[-4000:]
    with psycopg.connect(db_url) as conn:
        final = conn.execute("SELECT interval, count(*) FROM bars WHERE revision = %s GROUP BY interval "
                             "ORDER BY interval", (FINAL_REVISION,)).fetchall()
    assert final == [("1h", 1), ("1m", 3), ("5m", 1)]
    assert "compacted 3 small files into 1 daily files" in output
    assert sorted(p.name for p in (lake / "bars" / "interval=1m" / f"date={DAY}").iterdir()) == ["bars-AAPL.parquet"]
