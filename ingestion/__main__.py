"""``python -m ingestion``: run one feed into Pub/Sub or Kafka until stopped. See ``--help``."""
from __future__ import annotations

import asyncio
import logging
import sys

from ingestion.cli import build_connector, build_parser, build_sink, check_args
from ingestion.metrics import IngestionMetrics
from ingestion.service import run_ingestion
from ingestion.settings import IngestionSettings, MissingApiKey

EXIT_OK, EXIT_FATAL, EXIT_LOST = 0, 2, 3
log = logging.getLogger("ingestion")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs request URLs, which may carry keys
    try:
        connector = build_connector(args, IngestionSettings())
    except (MissingApiKey, ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    sink = build_sink(args)
    metrics = IngestionMetrics(connector, sink)
    if args.metrics_port is not None:
        try:
            port = metrics.serve(args.metrics_host, args.metrics_port)
        except OSError as err:
            parser.error(f"--metrics_port {args.metrics_port}: cannot listen on {args.metrics_host} ({err}); "
                         "pick a free port, or 0 for any")
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, port)
    result = asyncio.run(run_ingestion(connector, sink, max_ticks=args.max_ticks, log_interval=args.log_interval,
                                       flush_timeout=args.flush_timeout))
    if result.reason.startswith("fatal"):
        return EXIT_FATAL
    if result.failed or result.submitted != result.published:
        return EXIT_LOST
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
