"""Benchmark: the bar sink against a plain binary COPY of the same rows into the same table.

    .venv/bin/python bench/bench_sink.py [--rows 200000] [--repeats 5] [--db_url DSN] [--beam]

Both write the same Bar rows into ``bars`` in the same run, on the same server, each on its own
fresh database. The plain COPY is the floor: ``COPY bars FROM STDIN (FORMAT BINARY)`` with the
fastest encoding there is (epoch microseconds packed straight into binary timestamptz), no
conflict handling. The sink is ``CopyMergeWriter.write``, what ``WriteBarsToPostgres`` does per
batch: a direct COPY while batches are all new keys, else (or when that hits a stored key)
COPY into its temporary table and one merge statement. Scenarios:

- empty: nothing stored yet;
- full: the table already holds 200k other bars (the previous session's), new keys arrive;
- newer panes: the same 200k keys again with a higher pane_index: every row is updated (the
  streaming late-data case, all at once: the worst case; compared with the full-table COPY);
- replay: those bars once more: nothing changes (the upsert's no-op path).

Without --db_url a throwaway local PostgreSQL with default (durable) settings is started.
--beam also times the whole WriteBarsToPostgres transform on the DirectRunner (Beam's own
per-element cost included), for reference.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

from alphastream.records import Bar, PaneTiming, storage_name
from store import migrate
from store.localdb import LocalDatabase
from store.revisions import StoredBar, streaming_revision
from store.writer import BARS, CopyMergeWriter, EpochMicrosTimestamptzDumper

MINUTE_US = 60_000_000
START_US = 1_704_205_800_000_000  # 2024-01-02 14:30 UTC, a US session open
SYMBOLS = 200
TARGET_RATIO = 0.9


def make_bars(rows: int, pane_index: int = 0, seed: int = 7, offset_minutes: int = 0) -> list[StoredBar]:
    """``rows`` one-minute bars over SYMBOLS symbols, random but valid (low <= open, close <= high),
    as the table stores them (streaming panes: store.revisions)."""
    rng = np.random.default_rng(seed + pane_index)
    per_symbol = -(-rows // SYMBOLS)
    opens = rng.uniform(10, 500, rows)
    closes = opens * rng.uniform(0.99, 1.01, rows)
    highs = np.maximum(opens, closes) * rng.uniform(1.0, 1.01, rows)
    lows = np.minimum(opens, closes) * rng.uniform(0.99, 1.0, rows)
    volumes = rng.uniform(0, 10_000, rows)
    trades = rng.integers(1, 500, rows)
    timing = PaneTiming.ON_TIME.value if pane_index == 0 else PaneTiming.LATE.value
    return [
        StoredBar(f"S{i // per_symbol:04d}", "1m", START_US + (i % per_symbol + offset_minutes) * MINUTE_US,
                  float(opens[i]), float(highs[i]), float(lows[i]), float(closes[i]), float(volumes[i]),
                  float((highs[i] + lows[i]) / 2), int(trades[i]), timing, pane_index,
                  streaming_revision(0, pane_index))
        for i in range(rows)
    ]


def plain_copy(dsn: str, rows: list[StoredBar]) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        types = [conn.execute("SELECT atttypid::int FROM pg_attribute WHERE attrelid = 'bars'::regclass "
                              "AND attname = %s", (storage_name(f),)).fetchone()[0] for f in BARS.fields]
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            cur.adapters.register_dumper(None, EpochMicrosTimestamptzDumper)
            with cur.copy(BARS.direct_copy_sql()) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
        return time.perf_counter() - started


def sink_write(writer: CopyMergeWriter, rows: list[StoredBar]) -> float:
    """One batch through a writer that lives across batches, as a DoFn instance's does."""
    started = time.perf_counter()
    failed = writer.write(rows)
    elapsed = time.perf_counter() - started
    assert not failed, failed[:3]
    return elapsed


def beam_write(dsn: str, rows: list[StoredBar]) -> float:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.postgres_sink import WriteBarsToPostgres
    from pipeline.runners import local_runner

    started = time.perf_counter()
    options = PipelineOptions([])
    with beam.Pipeline(runner=local_runner(options), options=options) as p:  # as python -m pipeline
        _ = p | beam.Create([Bar(*row[:-1]) for row in rows], reshuffle=False) | WriteBarsToPostgres(dsn)
    return time.perf_counter() - started


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


class Databases:
    """Fresh migrated databases from a template, on the given server or a throwaway one."""

    def __init__(self, db_url: str | None):
        self._home = None
        if db_url is None:
            self._home = Path(tempfile.mkdtemp(prefix="alphastream-bench-"))
            self._home.chmod(0o755)
            self._local = LocalDatabase(self._home)
            self._local.ensure_running()
            self._admin = self._local.url("postgres")
        else:
            self._local, self._admin = None, db_url
        self._n = 0
        self._template = self._create(None)
        migrate.migrate(self._dsn(self._template))
        with psycopg.connect(self._dsn(self._template), autocommit=True) as conn:
            # the bars' month exists, as it does for a running sink after its first batch
            conn.execute("SELECT alphastream_ensure_partitions('bars', timestamptz 'epoch' + %s * interval "
                         "'1 microsecond', timestamptz 'epoch' + %s * interval '1 microsecond')",
                         (START_US, START_US + 1))

    def _dsn(self, name: str) -> str:
        return psycopg.conninfo.make_conninfo(self._admin, dbname=name)

    def _create(self, template: str | None) -> str:
        name = f"bench_sink_{int(time.time())}_{self._n}"
        self._n += 1
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def fresh(self) -> str:
        return self._dsn(self._create(self._template))

    def close(self) -> None:
        with psycopg.connect(self._admin, autocommit=True) as conn:
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench_sink_%'").fetchall():
                conn.execute(f'DROP DATABASE "{name}"')
        if self._local is not None:
            self._local.stop()
            shutil.rmtree(self._home, ignore_errors=True)


def median_rate(samples: list[float], rows: int) -> float:
    return rows / statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Bars per write.")
    parser.add_argument("--repeats", type=int, default=5, help="Repeats per scenario (the median is reported).")
    parser.add_argument("--db_url", default=None, help="A server to use (a database is created per repeat).")
    parser.add_argument("--beam", action="store_true", help="Also time WriteBarsToPostgres on the DirectRunner.")
    args = parser.parse_args(argv)

    bars, newer = make_bars(args.rows), make_bars(args.rows, pane_index=1)
    others = make_bars(args.rows, seed=11, offset_minutes=-(-args.rows // SYMBOLS))  # later minutes: other keys
    dbs = Databases(args.db_url)
    results: dict[str, list[float]] = {k: [] for k in ("copy_empty", "sink_empty", "copy_full", "sink_full",
                                                       "sink_update", "sink_replay", "beam_empty")}
    try:
        for repeat in range(args.repeats):
            plain_dsn, sink_dsn = dbs.fresh(), dbs.fresh()
            writer = CopyMergeWriter(sink_dsn, BARS)
            writer.connect()  # a DoFn connects once, in setup(): not part of a batch's cost
            # Alternate who goes first: on a shared machine the second of a pair often runs on
            # a warmer (or busier) server.
            for dsn_rows, label in ((bars, "empty"), (others, "full")):
                pair = [(f"copy_{label}", lambda r=dsn_rows, dsn=plain_dsn: plain_copy(dsn, r)),
                        (f"sink_{label}", lambda r=dsn_rows, w=writer: sink_write(w, r))]
                for key, measure in (pair if repeat % 2 == 0 else pair[::-1]):
                    results[key].append(measure())
            results["sink_update"].append(sink_write(writer, newer))
            results["sink_replay"].append(sink_write(writer, newer))
            writer.close()
            assert count(plain_dsn, "bars") == count(sink_dsn, "bars") == 2 * args.rows
            if args.beam:
                results["beam_empty"].append(beam_write(dbs.fresh(), bars))
    finally:
        dbs.close()

    rates = {k: median_rate(v, args.rows) for k, v in results.items() if v}
    print(f"{args.rows:,} bars per write, median of {args.repeats} (rows/s):")
    print(f"  plain binary COPY, empty table      {rates['copy_empty']:>10,.0f}")
    print(f"  plain binary COPY, full table       {rates['copy_full']:>10,.0f}")
    print(f"  sink, empty table                   {rates['sink_empty']:>10,.0f}   "
          f"{rates['sink_empty'] / rates['copy_empty']:.2f}x plain COPY (empty)")
    print(f"  sink, full table (new keys)         {rates['sink_full']:>10,.0f}   "
          f"{rates['sink_full'] / rates['copy_full']:.2f}x plain COPY (full)")
    print(f"  sink, every row a newer pane        {rates['sink_update']:>10,.0f}   "
          f"{rates['sink_update'] / rates['copy_full']:.2f}x plain COPY (full)")
    print(f"  sink, full table, replay (no-op)    {rates['sink_replay']:>10,.0f}   "
          f"{rates['sink_replay'] / rates['copy_full']:.2f}x plain COPY (full)")
    if "beam_empty" in rates:
        print(f"  WriteBarsToPostgres on DirectRunner {rates['beam_empty']:>10,.0f}   (Beam per-element cost included)")
    worst = min(rates["sink_empty"] / rates["copy_empty"], rates["sink_full"] / rates["copy_full"])
    print(f"target >= {TARGET_RATIO}x plain COPY (empty and full): {'met' if worst >= TARGET_RATIO else 'MISSED'} "
          f"(worst {worst:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
