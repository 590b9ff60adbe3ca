"""Anomaly detection benchmark: precision and recall on labelled anomalies, and streaming latency.

Quality: for each seed, ``python -m pipeline --detect_anomalies --inject_anomalies N`` (the real
batch path: synthetic ticks with labelled anomalies -> bars -> detectors -> lake), then every
detection read back from the lake is matched with the labels (``alphastream.synthetic
.injected_anomalies``): a detection is a true positive when a label of the same symbol and kind
covers its bucket. Precision = true positives / detections, recall = labels found / labels,
overall and per kind, at the default thresholds unless flags are passed after ``--``.

Latency (``--latency_seconds S``): ``python -m pipeline --streaming`` on the live synthetic market
for S seconds, detecting on 1-second bars with thresholds low enough to fire often, into a
throwaway PostgreSQL. Latency = when the row was stored (``anomalies.updated_at``, written once
per detection in one run) - the end of the bar it judged: watermark, timer, sink buffering and
commit together. Caveat: on the local DirectRunner the synthetic stream runs stage after stage
(pipeline/__main__.py, check_local_synthetic_stream), so detections arrive when the source stops
and this number is bounded by the run length, not by the detector; a meaningful latency needs
the Pub/Sub path (as bench/bench_streaming.py runs it), which this script does not drive yet.

    .venv/bin/python bench/bench_anomalies.py
    .venv/bin/python bench/bench_anomalies.py --seeds 1 2 3 --latency_seconds 60

Target (issue 17): precision and recall >= 0.9 each at the default thresholds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.records import AnomalyKind  # noqa: E402
from alphastream.synthetic import MarketSpec, injected_anomalies  # noqa: E402

DATE = "2024-03-05"
LATENCY_RATE = 2_000  # ticks/s of the live synthetic market: every 1-second bar of each symbol trades
LATENCY_SYMBOLS = 5


def _pipeline(*args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"python -m pipeline {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def quality(args: argparse.Namespace, work: Path) -> None:
    found_by_kind, hits_by_kind, labels_by_kind, recalled_by_kind = Counter(), Counter(), Counter(), Counter()
    for seed in args.seeds:
        lake = work / f"lake-{seed}"
        seconds = _pipeline("--no_db", "--symbols", str(args.symbols), "--ticks_per_symbol", str(args.ticks_per_symbol),
                            "--date", DATE, "--seed", str(seed), "--inject_anomalies", str(args.per_symbol),
                            "--detect_anomalies", "--output", str(lake), *args.extra)
        found = ds.dataset(lake / "anomalies", partitioning="hive").to_table().to_pylist()
        labels = injected_anomalies(MarketSpec(day=dt.date.fromisoformat(DATE), symbols=args.symbols,
                                               ticks_per_symbol=args.ticks_per_symbol, seed=seed,
                                               anomalies_per_symbol=args.per_symbol))

        def matches(a, label) -> bool:
            start_us = int(a["bucket_start"].timestamp() * 1_000_000)
            return (a["symbol"], a["kind"]) == (label.symbol, label.kind) and \
                label.first_bucket_us <= start_us <= label.last_bucket_us

        hits = [a for a in found if any(matches(a, label) for label in labels)]
        recalled = [label for label in labels if any(matches(a, label) for a in found)]
        found_by_kind.update(a["kind"] for a in found)
        hits_by_kind.update(a["kind"] for a in hits)
        labels_by_kind.update(label.kind for label in labels)
        recalled_by_kind.update(label.kind for label in recalled)
        print(f"seed {seed}: {len(labels)} labels, {len(found)} detections, precision {len(hits) / len(found):.3f}, "
              f"recall {len(recalled) / len(labels):.3f} (pipeline {seconds:.1f} s)")
    print(f"\n{'kind':15s} {'labels':>7s} {'found':>7s} {'precision':>10s} {'recall':>7s}")
    for kind in [k.value for k in AnomalyKind] + ["all"]:
        pick = (lambda c: sum(c.values())) if kind == "all" else (lambda c, k=kind: c[k])
        found, hits, labels, recalled = map(pick, (found_by_kind, hits_by_kind, labels_by_kind, recalled_by_kind))
        precision = hits / found if found else float("nan")
        print(f"{kind:15s} {labels:7d} {found:7d} {precision:10.3f} {recalled / labels:7.3f}")


def latency(args: argparse.Namespace, work: Path) -> None:
    import psycopg

    from store import migrate
    from store.localdb import LocalDatabase

    local = LocalDatabase(work / "pg", durable=False)
    try:
        db_url = local.ensure_running()
        migrate.migrate(db_url)
        _pipeline("--streaming", "--source", "synthetic", "--rate", str(LATENCY_RATE),
                  "--symbols", str(LATENCY_SYMBOLS),
                  "--max_duration", str(args.latency_seconds), "--intervals", "1s,1m", "--detect_anomalies",
                  "--anomaly_return_z", "1.5", "--anomaly_volume_ratio", "1.2", "--db_url", db_url,
                  "--output", str(work / "stream-lake"))
        with psycopg.connect(db_url) as conn:
            delays = [row[0] for row in conn.execute(
                "SELECT extract(epoch FROM updated_at - (bucket_start + interval '1 second')) "
                "FROM anomalies WHERE interval = '1s'").fetchall()]
    finally:
        local.stop()
    if not delays:
        raise SystemExit("no detections in the streaming run: run longer (--latency_seconds)")
    delays = sorted(float(d) for d in delays)
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    print(f"\nstreaming: {len(delays)} detections on 1s bars over {args.latency_seconds:g} s; latency after the bar's "
          f"end p50 {statistics.median(delays):.2f} s, p99 {p99:.2f} s, max {delays[-1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--ticks_per_symbol", type=int, default=10_000)
    parser.add_argument("--per_symbol", type=int, default=8, help="Injected anomalies per symbol.")
    parser.add_argument("--latency_seconds", type=float, default=0, help="Streaming latency run length (0: skip).")
    parser.add_argument("extra", nargs="*", help="More pipeline flags (after --), e.g. -- --anomaly_return_z 5")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-anomalies-") as tmp:
        Path(tmp).chmod(0o755)  # as root, the local cluster runs as postgres, which must enter it
        quality(args, Path(tmp))
        if args.latency_seconds:
            latency(args, Path(tmp))


if __name__ == "__main__":
    main()
