"""The batch pipeline on Beam's portable Flink runner, on the job server ``python -m
alphastream.java_jars`` assembles (Flink embedded in it): tick files with duplicates and bad rows
into PostgreSQL and the lake give the same bars and dead letters as the default local runner, the
run's counters add up, and the command leaves no job server behind. Without the job server,
``--runner FlinkRunner`` is an error naming the command that fetches it."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from alphastream import java_jars
from alphastream.errors import UserFacingError
from alphastream.local_services import (
    FLINK_JOB_SERVER_LOG,
    PYTHON_WORKER_POOL_LOG,
    PYTHON_WORKER_STARTED,
    start_flink_job_server,
    start_python_worker_pool,
    stop_process,
)
from alphastream.synthetic import MarketSpec, market_ticks
from pipeline.__main__ import run
from tests.fixtures.lake import lake_bars
from tests.fixtures.paths import REPO
from tests.fixtures.reference import assert_same_bars, pandas_bars

DAY = dt.date(2024, 1, 2)
INTERVALS = ("1m", "5m", "1h")
SYMBOLS, TICKS_PER_SYMBOL = 3, 400
PARALLELISM = 2
FLINK = ["--runner", "FlinkRunner", "--parallelism", str(PARALLELISM)]
RUN_SECONDS = 300
JOB_RUNNING_SECONDS = 3  # after the job server is up: the job is then being submitted or running
STOP_SECONDS = 30
JVM_EXIT_SECONDS = 10
# slf4j-simple, the job server's logger, takes its log file from a system property, which the JVM
# Beam starts reads from JAVA_TOOL_OPTIONS (Beam relays the job server's output at INFO only,
# below what `python -m pipeline` logs).
JOB_SERVER_LOG = "flink-job-server.log"
# What Flink logs as each parallel instance of a task starts: "<task> (<index>/<parallelism>)#<attempt>".
SUBTASK_RUNNING = re.compile(r"\((\d+)/(\d+)\)#\d+ .*switched from \w+ to RUNNING")
# One bad row of each of these reasons is written among the good ones.
BAD_ROW_REASONS = ["bad_json", "bad_json", "bad_price", "bad_size", "bad_symbol", "missing_field"]
# The bars table's columns a run decides (updated_at is the write's clock).
BAR_COLUMNS = ["symbol", "interval", "bucket_start_us", "open", "high", "low", "close", "volume", "vwap",
               "trades", "timing", "pane_index", "revision"]
DEAD_LETTER_COLUMNS = ["reason", "detail", "raw", "origin"]  # seen_at is the read time for unparsable rows


def write_tick_files(folder: Path) -> pd.DataFrame:
    """The synthetic market's ticks split over a Parquet, a JSONL and a CSV file, some delivered
    again in another file (five as a correction at another price), and a bad row of each of
    BAD_ROW_REASONS; returns the good rows, redeliveries included."""
    ticks = market_ticks(MarketSpec(day=DAY, symbols=SYMBOLS, ticks_per_symbol=TICKS_PER_SYMBOL)).to_pandas()
    parquet_part, jsonl_part, csv_part = (ticks.iloc[i::3].reset_index(drop=True) for i in range(3))
    jsonl_part = pd.concat([jsonl_part, parquet_part.head(20)], ignore_index=True)
    csv_part = pd.concat([csv_part, csv_part.head(5).assign(price=csv_part["price"].head(5) + 0.5)],
                         ignore_index=True)

    negative_price = parquet_part.head(1).assign(trade_id="bad-price", price=-5.0)
    pq.write_table(pa.Table.from_pandas(pd.concat([parquet_part, negative_price], ignore_index=True),
                                        preserve_index=False), folder / "a.parquet")
    bad_symbol = dict(jsonl_part.iloc[0].to_dict(), trade_id="bad-symbol", symbol="not a symbol")
    lines = [json.dumps(row) for row in jsonl_part.to_dict("records")]
    lines[len(lines) // 2:len(lines) // 2] = ["{broken", "", json.dumps(bad_symbol)]  # the blank line is no record
    (folder / "b.jsonl").write_text("\n".join(lines) + "\n")
    ts_us = ticks["ts_us"].iloc[0]
    (folder / "c.csv").write_text(csv_part.to_csv(index=False)
                                  + f"AAPL,{ts_us},,2,missing-price,x\n"
                                  + "AAPL,too,many,columns,here,x,y\n"
                                  + f"AAPL,{ts_us},99,-1,bad-size,x\n")
    return pd.concat([parquet_part, jsonl_part, csv_part], ignore_index=True)


def run_pipeline(flags: list[str], env: dict[str, str] | None = None) -> str:
    """``python -m pipeline FLAGS`` as a user runs it; returns its output. The child gets a session
    of its own, so whatever it started and left running (a job server) is found and stopped."""
    command = [sys.executable, "-m", "pipeline", *flags]
    with subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as child:
        try:
            out, err = child.communicate(timeout=RUN_SECONDS)
        finally:
            left = _session_members(child.pid)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    assert child.returncode == 0, f"{' '.join(command)} failed ({child.returncode}):\n{out}\n{err[-3000:]}"
    assert not left, f"{' '.join(command)} left processes running: {left}"
    return out


def _session_members(session: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session:
                members.append(int(entry.name))
        except ProcessLookupError:  # ended while listed
            continue
    return members


def summary_counts(out: str) -> dict[str, int]:
    """The tick counters of a run's summary, by label."""
    counts = {label: int(value.replace(",", "")) for label, value in
              re.findall(r"^\s+(ticks read|unique|duplicates|dead-lettered)\s+([\d,]+)$", out, re.MULTILINE)}
    assert len(counts) == 4, out
    return counts


_BUCKET_START_US = "(extract(epoch FROM bucket_start) * 1000000)::bigint"


def db_bars(dsn: str) -> pd.DataFrame:
    columns = ", ".join(_BUCKET_START_US if c == "bucket_start_us" else c for c in BAR_COLUMNS)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {columns} FROM bars ORDER BY interval, symbol, bucket_start").fetchall()
    return pd.DataFrame(rows, columns=BAR_COLUMNS)


def db_dead_letters(dsn: str) -> pd.DataFrame:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM dead_letters").fetchall()
    return pd.DataFrame(rows, columns=DEAD_LETTER_COLUMNS).sort_values(DEAD_LETTER_COLUMNS).reset_index(drop=True)


def lake_dead_letters(lake: Path) -> pd.DataFrame:
    table = ds.dataset(str(lake / "dead_letters"), format="parquet", partitioning="hive").to_table()
    return table.to_pandas()[DEAD_LETTER_COLUMNS].sort_values(DEAD_LETTER_COLUMNS).reset_index(drop=True)


class LocalRun(NamedTuple):
    """The tick files and what the default runner made of them."""

    flags: list[str]  # --source files and the rest, without --db_url and --output
    good: pd.DataFrame  # the good rows written, redeliveries included
    db_url: str
    lake: Path
    out: str


@pytest.fixture(scope="module")
def local_run(pg_cluster, tmp_path_factory) -> LocalRun:
    folder = tmp_path_factory.mktemp("flink-vs-local")
    inputs = folder / "in"
    inputs.mkdir()
    good = write_tick_files(inputs)
    flags = ["--source", "files", "--input", str(inputs / "*"), "--intervals", ",".join(INTERVALS)]
    db_url = pg_cluster.new_database()
    out = run_pipeline([*flags, "--db_url", db_url, "--output", str(folder / "lake")])
    return LocalRun(flags, good, db_url, folder / "lake", out)


class WorkerPool(NamedTuple):
    port: int
    log: Path


@pytest.fixture
def python_worker_pool(tmp_path) -> Iterator[WorkerPool]:
    """Beam's Python worker pool, which starts an SDK worker process for each Flink task slot
    (``--environment_type EXTERNAL``); stopped, with its workers, at the end."""
    pool, port = start_python_worker_pool(tmp_path, new_session=True)
    try:
        yield WorkerPool(port, tmp_path / PYTHON_WORKER_POOL_LOG)
    finally:
        stop_process(pool, "the Python worker pool", signal.SIGTERM)
        for pid in _session_members(pool.pid):  # SDK workers the pool did not reap
            os.kill(pid, signal.SIGKILL)


class StartedJobServer(NamedTuple):
    endpoint: str
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def started_job_server(tmp_path) -> Iterator[StartedJobServer]:
    """The assembled job server started before the run and kept running (``--job_endpoint``)."""
    process, endpoint = start_flink_job_server(tmp_path, new_session=True)
    try:
        yield StartedJobServer(endpoint, tmp_path / FLINK_JOB_SERVER_LOG, process)
    finally:
        stop_process(process, "the Flink job server", signal.SIGTERM)


@pytest.mark.parametrize("environment", ["loopback", "worker pool", "started job server"])
def test_flink_runs_the_files_pipeline_into_postgres_like_the_local_runner(environment, local_run, pg_cluster,
                                                                           tmp_path, request):
    """Flink embedded in the job server on two task slots, the Python steps either in the
    launching process (LOOPBACK, what `--runner FlinkRunner` does by default) or in one SDK
    worker process per slot, writing to PostgreSQL side by side; or the job submitted to a job
    server started beforehand, which outlives the run for the next one."""
    flags = [*local_run.flags, *FLINK]
    db_url, lake, job_server_log = pg_cluster.new_database(), tmp_path / "lake", tmp_path / JOB_SERVER_LOG
    env = {**os.environ, "JAVA_TOOL_OPTIONS": f"-Dorg.slf4j.simpleLogger.logFile={job_server_log}"}
    if environment == "worker pool":
        pool = request.getfixturevalue("python_worker_pool")
        flags += ["--environment_type", "EXTERNAL", "--environment_config", f"localhost:{pool.port}",
                  "--sdk_worker_parallelism", str(PARALLELISM)]
    if environment == "started job server":
        server = request.getfixturevalue("started_job_server")
        flags += ["--job_endpoint", server.endpoint]
        job_server_log, env = server.log, None
    out = run_pipeline([*flags, "--db_url", db_url, "--output", str(lake)], env)
    if environment == "started job server":
        assert server.process.poll() is None, "the started job server stopped with the run"

    good = local_run.good
    unique = good.drop_duplicates(["source", "trade_id"])
    expected_counts = {"ticks read": len(good) + len(BAD_ROW_REASONS), "unique": len(unique),
                       "duplicates": len(good) - len(unique), "dead-lettered": len(BAD_ROW_REASONS)}
    for summary in (local_run.out, out):
        assert summary_counts(summary) == expected_counts, summary
        assert "accounting      OK" in summary
        assert "OK, all in the lake" in summary

    local_bars = db_bars(local_run.db_url)
    assert_same_bars(local_bars, pandas_bars(good, INTERVALS))
    pd.testing.assert_frame_equal(db_bars(db_url), local_bars)
    pd.testing.assert_frame_equal(lake_bars(lake), lake_bars(local_run.lake))

    local_dead = lake_dead_letters(local_run.lake)
    assert sorted(local_dead["reason"]) == BAD_ROW_REASONS
    for dead in (lake_dead_letters(lake), db_dead_letters(db_url), db_dead_letters(local_run.db_url)):
        pd.testing.assert_frame_equal(dead, local_dead)

    running = {(int(index), int(of)) for index, of in SUBTASK_RUNNING.findall(job_server_log.read_text())}
    assert {(index, PARALLELISM) for index in range(1, PARALLELISM + 1)} <= running, \
        f"Flink ran no task on {PARALLELISM} slots: {sorted(running)}"
    if environment == "worker pool":
        started = pool.log.read_text(errors="replace").count(PYTHON_WORKER_STARTED)
        assert started >= PARALLELISM, f"the pool started {started} SDK worker processes"


def test_flink_without_its_job_server_names_the_fetch_command(monkeypatch, tmp_path):
    """Beam would try to download a job server jar Maven Central does not serve; the run stops
    before anything is written, saying which command assembles it."""
    monkeypatch.setattr(java_jars, "CACHE_DIR", tmp_path / "empty-cache")
    with pytest.raises(UserFacingError, match=re.escape(java_jars.FETCH_COMMAND)) as refused:
        run(["--runner", "FlinkRunner", "--no_db", "--output", str(tmp_path / "lake"),
             "--symbols", "1", "--ticks_per_symbol", "10"])
    assert "Flink job server" in str(refused.value)
    assert not (tmp_path / "lake").exists()


# How the pipeline command exits on each signal: SIGTERM through Python's exit handlers (which
# stop the job server), SIGKILL at once (the kernel then sends the job server SIGTERM,
# pipeline.flink_job_server).
EXIT_CODES = {signal.SIGTERM: 128 + signal.SIGTERM, signal.SIGKILL: -signal.SIGKILL}


@pytest.mark.parametrize("sig", list(EXIT_CODES), ids=lambda sig: signal.Signals(sig).name)
def test_a_stopped_or_killed_flink_run_leaves_no_job_server(sig, tmp_path):
    """SIGTERM (a scheduler's stop, `kill`) or SIGKILL (`kill -9`, the OOM killer) while the job
    runs: the command exits and the job server JVM Beam started for it goes too."""
    command = [sys.executable, "-m", "pipeline", "--runner", "FlinkRunner", "--no_db", "--output",
               str(tmp_path / "lake"), "--symbols", "20", "--ticks_per_symbol", "200000"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True) as child:
        try:
            assert child.stdout is not None
            for line in child.stdout:  # the job server is up once Beam says so
                if "Really starting service" in line:
                    break
            time.sleep(JOB_RUNNING_SECONDS)
            assert child.poll() is None, "the run ended before it could be stopped"
            assert len(_session_members(child.pid)) > 1, "no job server JVM beside the pipeline"
            child.send_signal(sig)
            code = child.wait(STOP_SECONDS)
            left = _wait_for_session_to_end(child.pid, JVM_EXIT_SECONDS)
        finally:
            for pid in _session_members(child.pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"left running after {signal.Signals(sig).name} (exit code {code}): {left}"
    assert code == EXIT_CODES[sig]


def _wait_for_session_to_end(session: int, timeout: float) -> list[int]:
    """The session's processes still running after up to ``timeout`` seconds (Beam's stop: SIGINT,
    then up to 5 s before a kill; a JVM's shutdown hooks take a moment)."""
    deadline = time.monotonic() + timeout
    while (left := _session_members(session)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
