"""``python -m serving``: run the REST API with uvicorn (flags override ALPHASTREAM_API_*)."""
from __future__ import annotations

import argparse

import uvicorn

from serving.settings import ApiSettings


def main(argv: list[str] | None = None) -> None:
    settings = ApiSettings()
    parser = argparse.ArgumentParser(prog="python -m serving", description="alphastream REST API (FastAPI + uvicorn).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default=settings.api_host, help="Interface to bind.")
    parser.add_argument("--port", type=int, default=settings.api_port, help="Port to listen on.")
    parser.add_argument("--workers", type=int, default=settings.api_workers, help="Worker processes.")
    parser.add_argument("--log-level", default="info", help="uvicorn log level.")
    args = parser.parse_args(argv)
    # Access lines are INFO: above that level, skip formatting them at all (formatting slows every request).
    uvicorn.run("serving.main:app", host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, access_log=args.log_level in ("trace", "debug", "info"))


if __name__ == "__main__":
    main()
