"""``python -m ingestion --source synthetic`` with labelled anomalies injected into the live feed.

Takes every ``python -m ingestion`` flag, plus ``--anomaly_bar_seconds N``: inject
``alphastream.synthetic.LiveAnomalyPlan(N, --seed)`` (bars N seconds wide, counted from the
first tick's bucket), so the labels follow from the seed and the first archived tick. The
ingestion CLI has no flag for the plan yet; bench/bench_anomalies.py runs the feed through this.

    .venv/bin/python bench/live_anomaly_feed.py --anomaly_bar_seconds 1 --source synthetic --sink stdout
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alphastream.synthetic import LiveAnomalyPlan  # noqa: E402
from ingestion.cli import build_parser, build_sink, check_args  # noqa: E402
from ingestion.connectors.synthetic import SyntheticMarket  # noqa: E402
from ingestion.service import run_ingestion  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--anomaly_bar_seconds", type=int, required=True,
                     help="Width of the bars the injected anomalies are planned and sized for.")
    known, rest = own.parse_known_args(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    check_args(parser, args)
    if args.source != "synthetic":
        parser.error("this feed injects into the synthetic market: --source synthetic")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    plan = LiveAnomalyPlan(bar_seconds=known.anomaly_bar_seconds, seed=args.seed)
    connector = SyntheticMarket(rate=args.rate, symbols=args.num_symbols, seed=args.seed, anomalies=plan)
    result = asyncio.run(run_ingestion(connector, build_sink(args), max_ticks=args.max_ticks,
                                       log_interval=args.log_interval, flush_timeout=args.flush_timeout))
    return 0 if result.submitted == result.published and not result.failed else 1


if __name__ == "__main__":
    sys.exit(main())
