"""``python -m live_demo``: the one-command live path, run for real for a few seconds
on each bus (Pub/Sub emulator or local Kafka) + ingestion + streaming pipeline into a test
PostgreSQL, with the tick archive and the finaliser)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from store.revisions import FINAL_REVISION

REPO = Path(__file__).resolve().parents[2]
DEMO_SECONDS = 12
DEMO_TIMEOUT_SECONDS = 150


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "live_demo", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--bus", "--source", "--rate", "--intervals", "--db_url", "--project", "--max_duration"):
        assert flag in out.stdout


@pytest.mark.parametrize("bus", ["pubsub", "kafka"])
def test_demo_writes_bars_every_interval_finalises_them_and_stops_cleanly(bus, request, pg_cluster, tmp_path):
    if bus == "pubsub":
        request.getfixturevalue("pubsub_emulator")  # the emulator is installed (the demo starts its own)
    db_url = pg_cluster.new_database()
    lake = tmp_path / "lake"
    env = {k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"}
    run = subprocess.run(
        [sys.executable, "-m", "live_demo", "--bus", bus, "--db_url", db_url, "--intervals", "1s",
         "--allowed_lateness", "2", "--rate", "300", "--max_duration", str(DEMO_SECONDS), "--output", str(lake)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS)
    assert run.returncode == 0, run.stderr[-5000:]
    assert "pipeline exit 0" in run.stderr and "ingestion exit 0" in run.stderr
    with psycopg.connect(db_url) as conn:
        buckets, trades, symbols, final = conn.execute(
            "SELECT count(DISTINCT bucket_start), sum(trades), count(DISTINCT symbol), "
            "count(*) FILTER (WHERE revision >= %s) FROM bars WHERE interval = '1s'", (FINAL_REVISION,)).fetchone()
    assert buckets >= 3, f"bars for only {buckets} one-second buckets:\n{run.stderr[-3000:]}"
    assert symbols > 1 and trades > 300
    assert list((lake / "ticks").rglob("*.jsonl")), "ingestion wrote no tick archive in the lake"
    assert final > 0, f"no bar was finalised from the archive:\n{run.stderr[-3000:]}"


def test_kafka_bus_refuses_a_gcp_project():
    out = subprocess.run([sys.executable, "-m", "live_demo", "--bus", "kafka", "--project", "p"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--bus kafka runs a local broker" in out.stderr
