"""``python -m dash_app``: serve the dashboard (it reads the REST API, never the database).

Flags override the environment (ALPHASTREAM_API_URL, ALPHASTREAM_DASH_HOST, ...).
"""
from __future__ import annotations

import argparse
import logging
import sys

from dash_app.app import create_app
from dash_app.settings import DashSettings

DESCRIPTION = ("alphastream dashboard: live candlesticks, indicators, a watchlist and pipeline "
               "health, read from the alphastream REST API.")


def parse_args(argv: list[str], defaults: DashSettings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dash_app", description=DESCRIPTION,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default=defaults.dash_host,
                        help="Interface to listen on (0.0.0.0 to serve other machines).")
    parser.add_argument("--port", type=int, default=defaults.dash_port, help="Port to listen on.")
    parser.add_argument("--api-url", default=defaults.api_url,
                        help="Base URL of the alphastream REST API (env ALPHASTREAM_API_URL).")
    parser.add_argument("--poll-seconds", type=float, default=defaults.dash_poll_seconds,
                        help="Live mode: seconds between polls of the API for new bars.")
    parser.add_argument("--debug", action="store_true",
                        help="Dash debug mode: hot reload and the in-page error overlay.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    defaults = DashSettings()
    args = parse_args(sys.argv[1:] if argv is None else argv, defaults)
    if args.poll_seconds <= 0:
        raise SystemExit(f"--poll-seconds must be positive, got {args.poll_seconds}")
    settings = defaults.model_copy(update={"dash_host": args.host, "dash_port": args.port,
                                           "api_url": args.api_url,
                                           "dash_poll_seconds": args.poll_seconds})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("dash_app").info("dashboard on http://%s:%d reading %s",
                                       settings.dash_host, settings.dash_port, settings.api_url)
    create_app(settings).run(host=settings.dash_host, port=settings.dash_port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
