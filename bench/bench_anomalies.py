"""Anomaly detection benchmark: precision and recall on labelled anomalies, batch and streaming,
and how soon a streaming detection is in PostgreSQL.

Batch (default): for each seed, ``python -m pipeline --detect_anomalies --inject_anomalies N``
(the real batch path: synthetic ticks with labelled anomalies -> bars -> detectors -> lake), then
every detection read back from the lake is matched with the labels (``alphastream.synthetic
.injected_anomalies``): a detection is a true positive when a label of the same symbol and kind
covers its bucket. Precision = true positives / detections, recall = labels found / labels,
overall and per kind, at the default thresholds unless flags are passed after ``--``.

Streaming (``--streaming``): the live path as deployed, as bench/bench_streaming.py runs it
(bench/streaming_harness.py): the Pub/Sub emulator, ``python -m pipeline --streaming --source
pubsub --detect_anomalies`` into a throwaway PostgreSQL, and the live synthetic market with
labelled anomalies injected (bench/live_anomaly_feed.py: ``alphastream.synthetic
.LiveAnomalyPlan`` on ``--interval`` bars) for ``--seconds``, archiving what it published
(``--archive``). The labels follow from the seed and the first archived tick. Reported:

* streaming precision and recall: the rows of the ``anomalies`` table against the labels;
* the batch baseline: ``python -m pipeline --source files --detect_anomalies`` over the
  archived ticks (the same ticks), scored the same way, and how many detections the two share;
* detection latency: when a row first appeared in ``anomalies`` (polled every
  ``POLL_SECONDS``) - the end of the bar it judged (event time = wall clock in a live feed),
  median and p95 over every streaming detection: watermark, the detector's timer, sink and
  commit together, plus at most one heartbeat and one poll.

Streaming detection judges each bucket once (transforms/anomalies.py): its on-time pane, or its
first LATE pane when all its ticks reached the pipeline after the watermark passed its end. A
first pane that arrives after a later bucket was already judged is dropped, so a pipeline that
lags its feed unevenly still loses some recall; the defaults keep the feed small and the bars
wide enough for a shared machine.

    .venv/bin/python bench/bench_anomalies.py
    .venv/bin/python bench/bench_anomalies.py --seeds 1 2 3 -- --anomaly_return_z 5
    .venv/bin/python bench/bench_anomalies.py --streaming --seconds 120 --rate 200 --interval 2s

Target (issue 17): precision and recall >= 0.9 each at the default thresholds.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.intervals import interval_micros  # noqa: E402
from alphastream.records import MICROS_PER_SECOND, AnomalyKind  # noqa: E402
from alphastream.synthetic import InjectedAnomaly, LiveAnomalyPlan, MarketSpec, injected_anomalies, symbol_names  # noqa: E402

DATE = "2024-03-05"
POLL_SECONDS = 0.1
# After the bars drained, the last on-time bars' detections are through once none came for this long.
SETTLE_QUIET_SECONDS = 5.0
SETTLE_TIMEOUT_SECONDS = 30.0
ARCHIVE_HOURS_AROUND_NOW = 2
LATENCY_QUANTILE = 0.95


class Detection(NamedTuple):
    symbol: str
    kind: str
    bucket_start_us: int


def _pipeline(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"python -m pipeline {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def _lake_detections(lake: Path) -> list[Detection]:
    rows = ds.dataset(lake / "anomalies", partitioning="hive").to_table().to_pylist()
    return [Detection(a["symbol"], a["kind"], int(a["bucket_start"].timestamp() * MICROS_PER_SECOND)) for a in rows]


def _covers(label: InjectedAnomaly, found: Detection) -> bool:
    return (found.symbol, found.kind) == (label.symbol, label.kind) and \
        label.first_bucket_us <= found.bucket_start_us <= label.last_bucket_us


@dataclass
class Tally:
    """Detections, true positives, labels and labels found, per kind, over one or more runs."""

    found: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    recalled: Counter[str] = field(default_factory=Counter)

    def add(self, found: Iterable[Detection], labels: list[InjectedAnomaly]) -> Tally:
        found = list(found)
        self.found.update(a.kind for a in found)
        self.hits.update(a.kind for a in found if any(_covers(label, a) for label in labels))
        self.labels.update(label.kind for label in labels)
        self.recalled.update(label.kind for label in labels if any(_covers(label, a) for a in found))
        return self

    def precision(self, kind: str | None = None) -> float:
        found, hits = self._pick(self.found, kind), self._pick(self.hits, kind)
        return hits / found if found else float("nan")

    def recall(self, kind: str | None = None) -> float:
        labels = self._pick(self.labels, kind)
        return self._pick(self.recalled, kind) / labels if labels else float("nan")

    @staticmethod
    def _pick(counts: Counter[str], kind: str | None) -> int:
        return sum(counts.values()) if kind is None else counts[kind]

    def line(self) -> str:
        return (f"{self._pick(self.labels, None)} labels, {self._pick(self.found, None)} detections, "
                f"precision {self.precision():.3f}, recall {self.recall():.3f}")

    def table(self) -> str:
        lines = [f"{'kind':15s} {'labels':>7s} {'found':>7s} {'precision':>10s} {'recall':>7s}"]
        for kind in [k.value for k in AnomalyKind] + [None]:
            lines.append(f"{kind or 'all':15s} {self._pick(self.labels, kind):7d} {self._pick(self.found, kind):7d} "
                         f"{self.precision(kind):10.3f} {self.recall(kind):7.3f}")
        return "\n".join(lines)


def quality(args: argparse.Namespace, work: Path) -> None:
    total = Tally()
    for seed in args.seeds:
        lake = work / f"lake-{seed}"
        seconds = _pipeline("--no_db", "--symbols", str(args.symbols), "--ticks_per_symbol", str(args.ticks_per_symbol),
                            "--date", DATE, "--seed", str(seed), "--inject_anomalies", str(args.per_symbol),
                            "--detect_anomalies", "--output", str(lake), *args.extra)
        labels = injected_anomalies(MarketSpec(day=dt.date.fromisoformat(DATE), symbols=args.symbols,
                                               ticks_per_symbol=args.ticks_per_symbol, seed=seed,
                                               anomalies_per_symbol=args.per_symbol))
        found = _lake_detections(lake)
        total.add(found, labels)
        print(f"seed {seed}: {Tally().add(found, labels).line()} (pipeline {seconds:.1f} s)")
    print(f"\n{total.table()}")


class AnomalyWatch:
    """Polls ``anomalies``; remembers when each detection's row first appeared (wall clock)."""

    def __init__(self, db_url: str):
        self._db_url = db_url
        self.first_seen: dict[Detection, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self._db_url, autocommit=True) as conn:
            while not self._stop.wait(POLL_SECONDS):
                now = time.time()
                for symbol, kind, start_us in conn.execute(
                        "SELECT symbol, kind, (extract(epoch FROM bucket_start) * 1000000)::bigint FROM anomalies"):
                    self.first_seen.setdefault(Detection(symbol, kind, int(start_us)), now)

    def wait_quiet(self) -> None:
        """Until no new detection appeared for SETTLE_QUIET_SECONDS (at most SETTLE_TIMEOUT_SECONDS)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        count, still_since = -1, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - still_since < SETTLE_QUIET_SECONDS:
            if len(self.first_seen) != count:
                count, still_since = len(self.first_seen), time.monotonic()
            time.sleep(POLL_SECONDS)

    def __enter__(self) -> AnomalyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _archive_span(archive: Path) -> tuple[int, int]:
    """(first, last) event time of the ticks the feed archived."""
    from alphastream.tick_archive import read_archive

    now_us = time.time_ns() // 1_000
    around = ARCHIVE_HOURS_AROUND_NOW * 3_600 * MICROS_PER_SECOND
    times = [tick["ts_us"] for tick in read_archive(str(archive), now_us - around, now_us + around)]
    if not times:
        raise SystemExit(f"the feed archived no ticks under {archive}")
    return min(times), max(times)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def streaming(args: argparse.Namespace, work: Path) -> None:
    from bench.bench_streaming import heartbeats
    from bench.streaming_harness import database, measure_run
    from live_demo.demo import EMULATOR_PROJECT, create_topic_and_subscription, start_emulator

    archive, seed = work / "archive", args.seeds[0]
    bar_us = interval_micros(args.interval)
    run = argparse.Namespace(rate=args.rate, seconds=args.seconds, symbols=args.stream_symbols,
                             interval=args.interval, output=str(work / "stream-lake"))
    emulator, host = start_emulator(work)
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, PYTHONUNBUFFERED="1")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    try:
        with database(work) as db_url:
            topic, subscription = create_topic_and_subscription(EMULATOR_PROJECT)
            watch = AnomalyWatch(db_url)

            def beside_feed() -> contextlib.ExitStack:
                stack = contextlib.ExitStack()
                stack.enter_context(heartbeats(topic))
                stack.enter_context(watch)
                return stack

            result = measure_run(
                run, db_url, env,
                source=["--source", "pubsub", "--subscription", subscription, "--detect_anomalies", *args.extra],
                sink=["--topic", topic, "--ticks_per_message", str(args.ticks_per_message), "--archive", str(archive),
                      "--seed", str(seed), "--anomaly_bar_seconds", str(bar_us // MICROS_PER_SECOND)],
                beside_feed=beside_feed, feed=(str(REPO / "bench" / "live_anomaly_feed.py"),),
                after_drain=watch.wait_quiet)
    finally:
        from alphastream.local_services import stop_process

        stop_process(emulator, "pubsub emulator", signal.SIGTERM)
    first_us, last_us = _archive_span(archive)
    plan = LiveAnomalyPlan(bar_seconds=bar_us // MICROS_PER_SECOND, seed=seed)
    labels = plan.labels(symbol_names(args.stream_symbols), first_us - first_us % bar_us, last_us)
    batch_seconds = _pipeline("--source", "files", "--input", f"{archive}/ticks/*/*/*.jsonl", "--input_format", "jsonl",
                              "--intervals", args.interval, "--detect_anomalies", "--no_db",
                              "--output", str(work / "batch-lake"), *args.extra)
    batch = set(_lake_detections(work / "batch-lake"))
    live = set(watch.first_seen)
    delays = [seen - (found.bucket_start_us + bar_us) / MICROS_PER_SECOND for found, seen in watch.first_seen.items()]
    live_tally, batch_tally = Tally().add(live, labels), Tally().add(batch, labels)

    print(f"streaming run: {result.line()}")
    print(f"\n{args.interval} bars, {args.stream_symbols} symbols, seed {seed}, {len(labels)} labels injected live")
    print(f"streaming (anomalies table): {live_tally.line()}")
    print(f"batch over the archived ticks ({batch_seconds:.1f} s): {batch_tally.line()}")
    print(f"shared by both: {len(live & batch)}; streaming only: {sorted(live - batch)}; "
          f"batch only: {sorted(batch - live)}")
    print(f"detection latency, bar end -> row in anomalies: p50 {statistics.median(delays):.2f} s, "
          f"p{LATENCY_QUANTILE * 100:.0f} {_percentile(delays, LATENCY_QUANTILE):.2f} s, max {max(delays):.2f} s "
          f"over {len(delays)} detections" if delays else "no streaming detections: nothing to time")
    print(f"\nstreaming per kind:\n{live_tally.table()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2],
                        help="Batch: one run per seed. Streaming: the first seeds the live market.")
    parser.add_argument("--symbols", type=int, default=20, help="Batch: symbols.")
    parser.add_argument("--ticks_per_symbol", type=int, default=10_000, help="Batch: ticks per symbol.")
    parser.add_argument("--per_symbol", type=int, default=8, help="Batch: injected anomalies per symbol.")
    parser.add_argument("--streaming", action="store_true",
                        help="Run the streaming benchmark (Pub/Sub emulator, live feed) instead of the batch one.")
    parser.add_argument("--seconds", type=float, default=120.0, help="Streaming: how long the live feed runs.")
    parser.add_argument("--rate", type=float, default=200.0, help="Streaming: ticks per second of the live feed.")
    parser.add_argument("--stream_symbols", type=int, default=5, help="Streaming: symbols of the live feed.")
    parser.add_argument("--interval", default="2s", help="Streaming: the bars detection reads (and anomalies fit).")
    parser.add_argument("--ticks_per_message", type=int, default=100, help="Streaming: ticks per Pub/Sub message.")
    parser.add_argument("extra", nargs="*", help="More pipeline flags (after --), e.g. -- --anomaly_return_z 5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-anomalies-") as tmp:
        Path(tmp).chmod(0o755)  # as root, the local cluster runs as postgres, which must enter it
        if args.streaming:
            streaming(args, Path(tmp))
        else:
            quality(args, Path(tmp))


if __name__ == "__main__":
    main()
