"""``python -m alphastream.live_demo``: the one-command live path, run for real for a few seconds
(emulator + ingestion + streaming pipeline into a test PostgreSQL)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
DEMO_SECONDS = 12
DEMO_TIMEOUT_SECONDS = 150


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "alphastream.live_demo", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in ("--source", "--rate", "--intervals", "--db_url", "--project", "--max_duration"):
        assert flag in out.stdout


def test_demo_writes_bars_every_interval_and_stops_cleanly(pubsub_emulator, db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"}  # the demo starts its own
    run = subprocess.run(
        [sys.executable, "-m", "alphastream.live_demo", "--db_url", db_url, "--intervals", "1s",
         "--allowed_lateness", "2", "--rate", "300", "--max_duration", str(DEMO_SECONDS),
         "--output", str(tmp_path / "lake")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT_SECONDS)
    assert run.returncode == 0, run.stderr[-5000:]
    assert "pipeline exit 0" in run.stderr and "ingestion exit 0" in run.stderr
    with psycopg.connect(db_url) as conn:
        buckets, trades, symbols = conn.execute(
            "SELECT count(DISTINCT bucket_start), sum(trades), count(DISTINCT symbol) FROM bars "
            "WHERE interval = '1s'").fetchone()
    assert buckets >= 3, f"bars for only {buckets} one-second buckets:\n{run.stderr[-3000:]}"
    assert symbols > 1 and trades > 300
