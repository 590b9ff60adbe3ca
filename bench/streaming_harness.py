"""What the streaming benchmarks share: run a streaming pipeline and a synthetic feed as separate
processes, then measure from PostgreSQL how many ticks reached bars and how soon after a window
closed its bar row appeared (and was complete).

bench/bench_streaming.py drives it over the Pub/Sub emulator, bench/bench_kafka.py over Kafka.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

import psycopg

from alphastream.intervals import interval_seconds
from alphastream.local_services import stop_process
from live_demo.demo import PIPELINE_READY_LINE

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INTERVAL = "5s"
ALLOWED_LATENESS_SECONDS = 5
POLL_SECONDS = 0.1
DRAIN_POLL_SECONDS = 0.5
# After the feed, bars are complete once no tick arrived for longer than the allowed lateness.
DRAIN_QUIET_SECONDS = ALLOWED_LATENESS_SECONDS + 2
DRAIN_TIMEOUT_SECONDS = 60
STARTUP_TIMEOUT_SECONDS = 120
PIPELINE_LOG_TAIL_LINES = 30
LOG_DRAIN_TIMEOUT_SECONDS = 10
FEED_LOG_TAIL_CHARS = 3000
FEED_LOG_INTERVAL_SECONDS = 5
# The feed may run far slower than asked (a starved machine) before it counts as hung.
FEED_TIMEOUT_FACTOR = 10
FEED_TIMEOUT_SLACK_SECONDS = 60
TARGET_TICKS_PER_SECOND = 10_000
TARGET_P99_SECONDS = 2.0
_FINAL_LINE = re.compile(r"stopped \((?P<reason>[^)]*)\) after (?P<seconds>[\d.]+) s: submitted=(?P<submitted>\d+) "
                         r"published=(?P<published>\d+) failed=(?P<failed>\d+)")


@dataclass
class RunResult:
    published: int
    publish_seconds: float
    ticks_in_bars: int
    timings: dict[str, int]
    delays: list[float]  # window end -> bar row first visible
    final_delays: list[float]  # window end -> bar row complete (its last trade count)
    # The pipeline's tick counters from its run summary (empty if it printed none): when the bars
    # do not hold exactly the ticks published, they tell where the difference arose.
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def publish_rate(self) -> float:
        return self.published / self.publish_seconds

    @property
    def consumed_rate(self) -> float:
        return self.ticks_in_bars / self.publish_seconds

    def percentile(self, q: float, final: bool = False) -> float:
        ordered = sorted(self.final_delays if final else self.delays)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def line(self) -> str:
        """One run, for the benchmark's log."""
        return (f"published {self.published:,} ticks in {self.publish_seconds:.1f} s "
                f"({self.publish_rate:,.0f}/s); in bars {self.ticks_in_bars:,} ({self.consumed_rate:,.0f}/s, "
                f"{self.consumed_rate / self.publish_rate:.2f}x); window end -> row p50 "
                f"{self.percentile(0.5):.2f} s, p99 {self.percentile(0.99):.2f} s over {len(self.delays)} bars "
                f"(complete: p50 {self.percentile(0.5, True):.2f} s, p99 {self.percentile(0.99, True):.2f} s); "
                f"bars by last pane timing {self.timings}{self._mismatch()}")

    def _mismatch(self) -> str:
        if self.ticks_in_bars == self.published:
            return ""
        counted = ", ".join(f"{name.removeprefix('ticks_')} {value:,}" for name, value in self.counters.items())
        return (f"; MISMATCH: bars hold {self.ticks_in_bars - self.published:+,} ticks vs published "
                f"(pipeline counters: {counted or 'none printed'})")


@dataclass(frozen=True)
class Medians:
    """The medians over repeated runs that the targets are checked against."""

    publish_rate: float
    consumed_rate: float
    ratio: float  # consumed / published ticks per second
    p50: float
    p99: float
    p99_final: float

    @classmethod
    def of(cls, results: list[RunResult]) -> Medians:
        return cls(publish_rate=statistics.median(r.publish_rate for r in results),
                   consumed_rate=statistics.median(r.consumed_rate for r in results),
                   ratio=statistics.median(r.consumed_rate / r.publish_rate for r in results),
                   p50=statistics.median(r.percentile(0.5) for r in results),
                   p99=statistics.median(r.percentile(0.99) for r in results),
                   p99_final=statistics.median(r.percentile(0.99, True) for r in results))


class BarWatch:
    """Polls ``bars``; per (symbol, window) remembers when its row first appeared and when its
    trade count last changed (a LATE pane completing it), both measured from the window end."""

    def __init__(self, db_url: str, interval: str):
        self._db_url, self._interval = db_url, interval
        self.first_seen: dict[tuple[str, float], float] = {}  # (symbol, window end epoch s) -> time
        self.completed: dict[tuple[str, float], tuple[int, float]] = {}  # -> (trades, time of that count)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        width = interval_seconds(self._interval)
        with psycopg.connect(self._db_url, autocommit=True) as conn:
            while not self._stop.wait(POLL_SECONDS):
                now = time.time()
                for symbol, start, trades in conn.execute(
                        "SELECT symbol, extract(epoch FROM bucket_start)::float8, trades FROM bars "
                        "WHERE interval = %s", (self._interval,)):
                    key = (symbol, start + width)
                    self.first_seen.setdefault(key, now)
                    if self.completed.get(key, (None,))[0] != trades:
                        self.completed[key] = (trades, now)

    def __enter__(self) -> BarWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def first_delays(self) -> list[float]:
        # list() copies the items in one step, while the polling thread may be adding rows.
        return [seen - window_end for (_, window_end), seen in list(self.first_seen.items())]

    def largest_delay(self) -> float:
        return max(self.first_delays(), default=0.0)

    def final_delays(self) -> list[float]:
        return [seen - window_end for (_, window_end), (_, seen) in self.completed.items()]


def bar_stats(db_url: str, interval: str) -> tuple[int, dict[str, int]]:
    """(ticks in bars, bar count per pane timing of the last write)."""
    with psycopg.connect(db_url) as conn:
        ticks = conn.execute("SELECT coalesce(sum(trades), 0) FROM bars WHERE interval = %s", (interval,)).fetchone()[0]
        timings = dict(conn.execute("SELECT timing, count(*) FROM bars WHERE interval = %s GROUP BY timing",
                                    (interval,)).fetchall())
    return int(ticks), timings


def wait_for_drain(db_url: str, interval: str, published: int, lag: Callable[[], float]) -> None:
    """Until every tick is in a bar, or (once bars arrive) none arrived for longer than the allowed
    lateness, or the drain timeout. Called when the feed ends: its last window closes up to one
    interval later, and its bar comes about as late after that as the others did (``lag``: the
    largest window end -> bar delay so far), so quiet counts from then at the earliest."""
    started = time.monotonic()
    deadline = started + DRAIN_TIMEOUT_SECONDS
    last, still_since = -1, started
    while time.monotonic() < deadline:
        ticks, _ = bar_stats(db_url, interval)
        if ticks != last:
            last, still_since = ticks, time.monotonic()
        quiet_since = max(still_since, started + interval_seconds(interval) + lag())
        # Quiet counts only once bars arrive: a loaded pipeline may still be catching up on the first.
        if ticks >= published or (ticks > 0 and time.monotonic() - quiet_since > DRAIN_QUIET_SECONDS):
            return
        time.sleep(DRAIN_POLL_SECONDS)


def add_run_arguments(parser: argparse.ArgumentParser, default_rate: float) -> None:
    """The flags of one run (the feed and the bars), shared by the streaming benchmarks."""
    parser.add_argument("--rate", type=float, default=default_rate, help="Publisher target ticks per second.")
    parser.add_argument("--seconds", type=float, default=30.0, help="How long the publisher runs.")
    parser.add_argument("--ticks_per_message", type=int, default=1000, help="Pub/Sub: ticks per message.")
    parser.add_argument("--interval", default=DEFAULT_INTERVAL, help="Bar interval of the pipeline.")
    parser.add_argument("--symbols", type=int, default=20, help="Synthetic symbols.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs; medians are reported.")
    parser.add_argument("--diagnose", metavar="DIR", default=None,
                        help="The feed archives its ticks under DIR, and a run whose bars do not hold exactly the "
                             "ticks published writes each bar that differs from the batch bars of the archive to "
                             "DIR/run-<time>.csv (off by default: archiving costs the feed CPU).")


def _pipeline_args(args: argparse.Namespace, db_url: str) -> list[str]:
    """The streaming pipeline's flags both benchmarks use, beside the source's own."""
    return ["--db_url", db_url, "--intervals", args.interval, "--allowed_lateness", str(ALLOWED_LATENESS_SECONDS),
            "--early_firing_seconds", "0", "--output", args.output]


def _feed_args(args: argparse.Namespace) -> list[str]:
    """The synthetic feed's flags both benchmarks use, beside the sink's own."""
    return ["--rate", str(args.rate), "--max_ticks", str(int(args.rate * args.seconds)),
            "--num_symbols", str(args.symbols), "--log_interval", str(FEED_LOG_INTERVAL_SECONDS)]


def work_dir(prefix: str) -> Path:
    """A fresh folder for the run's services and lake, which the postgres account can enter too."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)  # as root, the local cluster runs as postgres
    return work


@contextlib.contextmanager
def database(work: Path, db_url: str | None = None) -> Iterator[str]:
    """db_url, or a throwaway local PostgreSQL with the schema migrated, stopped at the end."""
    if db_url is not None:
        yield db_url
        return
    from store import migrate
    from store.localdb import LocalDatabase

    local = LocalDatabase(work / "pg", durable=False)
    try:
        url = local.ensure_running()
        migrate.migrate(url)
        yield url
    finally:
        local.stop()


def _start_pipeline(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """``python -m pipeline --streaming ARGS``, once it logged that it reads; (process, its output
    so far, the thread collecting it: join it after the process ends to have the whole output)."""
    # One stream: the log (stderr) and the run summary with the counters (stdout).
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "--streaming", *args], cwd=REPO, env=env,
                               stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True)
    log: list[str] = []
    ready = threading.Event()

    def collect() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            log.append(line)
            if PIPELINE_READY_LINE in line:
                ready.set()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    if not ready.wait(STARTUP_TIMEOUT_SECONDS):
        stop_process(process, "pipeline")
        raise RuntimeError("pipeline did not start:\n" + "".join(log[-PIPELINE_LOG_TAIL_LINES:]))
    return process, log, collector


INGESTION = ("-m", "ingestion")


def _run_feed(args: list[str], env: dict[str, str], timeout: float,
              feed: Sequence[str] = INGESTION) -> tuple[int, float]:
    """``python FEED --source synthetic ARGS`` (FEED: ``-m ingestion`` or a script taking its flags)
    to its end: (ticks published, seconds it ran)."""
    feed_run = subprocess.run([sys.executable, *feed, "--source", "synthetic", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    match = _FINAL_LINE.search(feed_run.stderr)
    if feed_run.returncode != 0 or not match:
        raise RuntimeError(f"ingestion failed ({feed_run.returncode}):\n{feed_run.stderr[-FEED_LOG_TAIL_CHARS:]}")
    return int(match["published"]), float(match["seconds"])


def measure_run(args: argparse.Namespace, db_url: str, env: dict[str, str], *, source: list[str], sink: list[str],
                beside_feed: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                feed: Sequence[str] = INGESTION, after_drain: Callable[[], None] = lambda: None) -> RunResult:
    """One run on an emptied database: start the pipeline (``source``: its source flags), then,
    with ``beside_feed()`` entered and the bars watched, run the feed (``sink``: its sink flags;
    ``feed``: what runs it) to its end, wait for the bars to drain, then ``after_drain()``. The
    pipeline stops before the watch does, so every write it made is seen."""
    with psycopg.connect(db_url) as conn:
        conn.execute("TRUNCATE bars, dead_letters, anomalies")
    started_us = time.time_ns() // 1_000
    archive = Path(args.diagnose) / f"archive-{started_us}" if args.diagnose else None
    process, log, collector = _start_pipeline([*source, *_pipeline_args(args, db_url)], env)
    try:
        with beside_feed(), BarWatch(db_url, args.interval) as watch:
            timeout = args.seconds * FEED_TIMEOUT_FACTOR + FEED_TIMEOUT_SLACK_SECONDS
            archiving = ["--archive", str(archive)] if archive else []
            published, publish_seconds = _run_feed([*sink, *_feed_args(args), *archiving], env, timeout, feed)
            wait_for_drain(db_url, args.interval, published, watch.largest_delay)
            after_drain()
            if process.poll() is not None:  # a pipeline that died mid-run would pass for a slow one
                raise RuntimeError(f"pipeline exited ({process.returncode}) during the run:\n"
                                   + "".join(log[-PIPELINE_LOG_TAIL_LINES:]))
            stop_process(process, "pipeline")
    finally:
        stop_process(process, "pipeline")
    collector.join(LOG_DRAIN_TIMEOUT_SECONDS)  # the summary is the output's last lines
    in_bars, timings = bar_stats(db_url, args.interval)
    if archive and in_bars != published:
        differences = write_bar_differences(db_url, args.interval, archive, started_us)
        print(f"bars differing from the archive's batch bars: {differences}", flush=True)
    return RunResult(published, publish_seconds, in_bars, timings, watch.first_delays(), watch.final_delays(),
                     _counters("".join(log)))


def write_bar_differences(db_url: str, interval: str, archive: Path, started_us: int) -> Path:
    """The bars of ``interval`` whose trades or volume differ between the table and the batch bars
    of the archived ticks (``pipeline.repair.recompute``), with the stored pane: a CSV beside the
    archive. Where a count mismatch comes from (one window or many, which panes) starts here."""
    import pandas as pd

    from alphastream.records import BAR_FIELDS
    from pipeline.repair import recompute

    now_us = time.time_ns() // 1_000
    key = ["symbol", "bucket_start_us"]
    truth = pd.DataFrame(recompute(str(archive), started_us, now_us, (interval,), now_us=now_us).bars,
                         columns=list(BAR_FIELDS))
    truth = truth[truth["interval"] == interval][[*key, "trades", "volume"]]
    with psycopg.connect(db_url) as conn:
        stored = pd.DataFrame(conn.execute(
            "SELECT symbol, (extract(epoch FROM bucket_start) * 1000000)::bigint, trades, volume, timing, pane_index, "
            "revision, updated_at FROM bars WHERE interval = %s", (interval,)).fetchall(),
            columns=[*key, "trades", "volume", "timing", "pane_index", "revision", "updated_at"])
    both = truth.merge(stored, on=key, how="outer", suffixes=("_archive", "_table"))
    differing = both[(both["trades_archive"] != both["trades_table"])
                     | (both["volume_archive"] != both["volume_table"])]
    out = archive.parent / f"run-{started_us}.csv"
    differing.sort_values(key).to_csv(out, index=False)
    return out


def _counters(pipeline_output: str) -> dict[str, int]:
    from orchestration.batch_run import counters_from_summary

    try:
        return counters_from_summary(pipeline_output)
    except ValueError:  # stopped before it printed its summary
        return {}
