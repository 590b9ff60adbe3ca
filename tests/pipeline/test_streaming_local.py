"""`python -m pipeline --streaming` with the live synthetic market on the DirectRunner.

The DirectRunner runs this graph (no Pub/Sub, no TestStream) on its batch engine, so the run
is bounded by --max_duration, early firings are turned off, and the bars come out when the
source stops. Live bars locally go through Pub/Sub (tests/test_live_*.py)."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq

RUN_SECONDS = 6


def test_live_synthetic_stream_writes_windowed_bars(tmp_path):
    out = tmp_path / "lake"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "--streaming", "--no_db", "--max_duration", str(RUN_SECONDS),
         "--rate", "200", "--symbols", "3", "--intervals", "5s", "--allowed_lateness", "5",
         "--lake_window_seconds", "5", "--output", str(out)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "early panes" in proc.stderr  # the user is told early firings are off here
    files = sorted((out / "bars" / "interval=5s").rglob("*.parquet"))
    assert files, f"no bar files under {out}: {proc.stderr[-2000:]}"
    frame = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    assert set(frame["symbol"]) == {"AAPL", "MSFT", "NVDA"}  # the first three synthetic symbols
    assert (frame["high"] >= frame["low"]).all() and (frame["trades"] > 0).all()
    assert frame["bucket_start"].dt.second.isin([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]).all()
    # --lake_window_seconds 5: one file per 5 s window, so each file holds one bucket per symbol.
    for path in files:
        assert pq.read_table(path).to_pandas()["bucket_start"].nunique() == 1, path


def test_live_synthetic_stream_needs_a_duration_on_the_direct_runner(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline", "--streaming", "--no_db", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "--max_duration" in proc.stderr and "live_demo" in proc.stderr
