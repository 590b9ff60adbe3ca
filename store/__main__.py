"""``python -m store {migrate,start,stop,status,url}``: manage the store from a shell.

    python -m store start      # the embedded local PostgreSQL (initdb on first use)
    python -m store migrate    # apply pending migrations (--db_url, else $ALPHASTREAM_DB_URL,
                                     # else the embedded database)
    python -m store url        # print the embedded database's DSN (with its password)
    python -m store status | stop
"""
from __future__ import annotations

import argparse
import logging
import sys

from alphastream.errors import UserFacingError
from alphastream.settings import AlphastreamSettings, mask_dsn
from store import migrate
from store.localdb import LocalDatabase


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m store",
                                     description="alphastream's PostgreSQL store: migrations and the embedded "
                                                 "local database (kept in $ALPHASTREAM_HOME/postgres, "
                                                 "default ./.alphastream/postgres).")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate_cmd = commands.add_parser("migrate", help="Apply pending schema migrations (idempotent).")
    migrate_cmd.add_argument("--db_url", default=None,
                             help="PostgreSQL DSN (default: $ALPHASTREAM_DB_URL, else the embedded local "
                                  "database, started if needed).")
    commands.add_parser("start", help="Start the embedded local PostgreSQL (initialise it on first use).")
    commands.add_parser("stop", help="Stop the embedded local PostgreSQL.")
    commands.add_parser("status", help="Say whether the embedded local PostgreSQL is running, and where.")
    commands.add_parser("url", help="Print the embedded database's DSN, password included "
                                    "(e.g. export ALPHASTREAM_DB_URL=$(python -m store url)).")
    return parser


def run(args: argparse.Namespace, settings: AlphastreamSettings) -> int:
    local = LocalDatabase.from_settings(settings)
    if args.command == "migrate":
        dsn = args.db_url or settings.db_url or local.ensure_running()
        applied = migrate.migrate(dsn)
        print(f"{mask_dsn(dsn)}: " + (f"applied {', '.join(applied)}" if applied else "already current")
              + f" (version {migrate.current_version(dsn)})")
    elif args.command == "start":
        print(f"running at {mask_dsn(local.ensure_running())} (python -m store url prints the DSN)")
    elif args.command == "stop":
        print("stopped" if local.stop() else "was not running")
    elif args.command == "status":
        status = local.status()
        print(status.describe())
        return 0 if status.running else 1
    elif args.command == "url":
        if not local.status().running:
            print("the embedded database is not running: python -m store start", file=sys.stderr)
            return 1
        print(local.url())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args, AlphastreamSettings())
    except UserFacingError as err:  # the embedded database, an unreachable server: one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except migrate.MigrationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
