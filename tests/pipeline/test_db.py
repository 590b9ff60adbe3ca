"""`python -m pipeline` end to end into PostgreSQL: the bars in the database equal the Parquet
lake and an independent pandas computation; a re-run changes nothing; with no database flag
the embedded local database is started and used."""
import datetime as dt
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psycopg

from alphastream.records import BAR_FIELDS, storage_columns
from alphastream.settings import ENV_PREFIX
from alphastream.synthetic import MarketSpec, market_ticks
from pipeline.__main__ import main
from store.localdb import LocalDatabase
from tests.fixtures.lake import lake_bars
from tests.fixtures.reference import assert_same_bars, pandas_bars

DAY = dt.date(2024, 1, 2)
INTERVALS = ("1m", "5m", "1h")
SYMBOLS, TICKS_PER_SYMBOL = 3, 2000
REPO = Path(__file__).resolve().parents[2]
# The database keeps bucket_start as timestamptz; extract(epoch ...) is exact (numeric) since PG 14.
_MICROS = "(extract(epoch FROM {col}) * 1000000)::bigint AS {col}_us"


def db_bars(dsn: str) -> pd.DataFrame:
    columns = [_MICROS.format(col=c) if f.endswith("_us") else c
               for f, c in zip(BAR_FIELDS, storage_columns(BAR_FIELDS), strict=True)]
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT {', '.join(columns)}, xmin::text AS version FROM bars")
        df = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    return df.sort_values(["interval", "symbol", "bucket_start_us"]).reset_index(drop=True)


def test_synthetic_run_into_the_database_equals_lake_and_pandas(db_url, tmp_path, capsys):
    argv = ["--db_url", db_url, "--output", str(tmp_path), "--symbols", str(SYMBOLS),
            "--ticks_per_symbol", str(TICKS_PER_SYMBOL), "--date", DAY.isoformat(),
            "--intervals", ",".join(INTERVALS), "--write_ticks"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    ticks = market_ticks(MarketSpec(day=DAY, symbols=SYMBOLS, ticks_per_symbol=TICKS_PER_SYMBOL)).to_pandas()
    expected = pandas_bars(ticks, INTERVALS)

    stored = db_bars(db_url)
    assert_same_bars(stored, expected)
    lake = lake_bars(tmp_path)
    pd.testing.assert_frame_equal(stored[list(BAR_FIELDS)], lake[list(BAR_FIELDS)], check_dtype=False)
    assert f"({len(expected):,} bar rows upserted, 0 dead letters, 0 rows failed)" in out
    assert ":***@" in out and db_url.split("@")[0].split(":")[-1] not in out  # password masked

    with psycopg.connect(db_url) as conn:
        unique = ticks.drop_duplicates(["source", "trade_id"])
        assert conn.execute("SELECT count(*) FROM ticks").fetchone()[0] == len(unique)
        # the plain path's date_bin roll-up agrees with the pipeline's own 1h bars
        rollup = conn.execute(
            "SELECT symbol, (extract(epoch FROM bucket_start) * 1000000)::bigint, open, high, low, close, trades "
            "FROM bars_1h_from_1m ORDER BY 1, 2").fetchall()
    hourly = expected[expected["interval"] == "1h"]
    assert rollup == [(r.symbol, r.bucket_start_us, r.open, r.high, r.low, r.close, r.trades)
                      for r in hourly.itertuples()]

    assert main(argv) == 0  # a re-run (a replay) leaves every row as it was, row versions included
    pd.testing.assert_frame_equal(db_bars(db_url), stored)


def test_no_db_flag_means_the_embedded_database(tmp_path):
    home = Path(tempfile.mkdtemp(prefix="alphastream-home-"))
    home.chmod(0o755)  # the postgres account must reach it (pytest's tmp_path is root-only)
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env[f"{ENV_PREFIX}HOME"] = str(home)
    try:
        run = subprocess.run([sys.executable, "-m", "pipeline", "--symbols", "2", "--ticks_per_symbol", "200",
                              "--date", DAY.isoformat(), "--output", str(tmp_path)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "database          postgresql://alphastream:***@127.0.0.1:" in run.stdout
        local = LocalDatabase(home)
        assert local.status().running
        stored = db_bars(local.url())
        assert len(stored) > 0
        assert_same_bars(stored, lake_bars(tmp_path))
    finally:
        LocalDatabase(home).stop()
        subprocess.run(["rm", "-rf", str(home)], check=True)


def test_db_url_from_the_environment(db_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env[f"{ENV_PREFIX}DB_URL"] = db_url
    run = subprocess.run([sys.executable, "-m", "pipeline", "--symbols", "1", "--ticks_per_symbol", "100",
                          "--date", DAY.isoformat(), "--output", str(tmp_path), "--intervals", "1h"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(db_bars(db_url)) == len(lake_bars(tmp_path)) > 0


def test_no_db_writes_nothing(db_url, tmp_path, capsys):
    assert main(["--no_db", "--db_url", db_url, "--output", str(tmp_path), "--symbols", "1", "--ticks_per_symbol", "50",
                 "--date", DAY.isoformat()]) == 0
    assert "database" not in capsys.readouterr().out
    assert len(db_bars(db_url)) == 0
