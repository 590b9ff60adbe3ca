"""The Flex Template's metadata.json, written from AlphastreamOptions so the two cannot drift.

Every alphastream flag is a template parameter (label, the flag's own help text, and a regex
Dataflow checks before launching) except the ones in ``NOT_TEMPLATE_PARAMETERS``. Beam's own
flags (region, workers, service account...) are Dataflow launch options, not parameters.
``python -m pipeline.template_metadata > terraform/gcp/flex_template/metadata.json`` rewrites
the file; tests/pipeline/test_flex_template.py checks the committed file is what this writes.
"""
from __future__ import annotations

import argparse
import json
import sys

from alphastream.sessions import HOURS
from pipeline.options import FILE_FORMATS, SECRET_VERSION_PATTERN, SOURCES, AlphastreamOptions

TEMPLATE_NAME = "alphastream bars"
TEMPLATE_DESCRIPTION = ("Market ticks to OHLCV bars (VWAP, trade counts) in PostgreSQL and a Parquet lake: "
                        "streaming from Pub/Sub or Kafka, or a batch back-fill from files.")
NOT_TEMPLATE_PARAMETERS = {
    "db_url": "a DSN with its password would be visible in the job's parameters: use db_url_secret",
    "max_duration": "local runs only: a Dataflow job is stopped by drain or cancel",
    "wait": "a template launch returns once submitted; the launcher never waits",
    "metrics_port": "local runs only: Dataflow shows the Beam metrics as the job's custom metrics",
    "metrics_host": "local runs only, with metrics_port",
    "archive": "the finaliser runs beside a local launch; a template launch has none: schedule repair",
    "finalize_every_seconds": "local runs only, with archive",
}
_INTEGER = r"^[0-9]+$"
_NUMBER = r"^[0-9]*\.?[0-9]+$"
_SWITCH = r"^(true|false)$"
_INTERVAL = r"[1-9][0-9]{0,4}[smhd]"
REGEXES = {
    "source": rf"^({'|'.join(SOURCES)})$",
    "input": r"^(gs://|/).+$",
    "archive": r"^(gs://|/).+$",
    "input_format": rf"^({'|'.join(FILE_FORMATS)})$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "seed": r"^-?[0-9]+$",
    "subscription": r"^projects/[^/]+/subscriptions/[^/]+$",
    "topic": r"^projects/[^/]+/topics/[^/]+$",
    "kafka_bootstrap_servers": r"^[^,:]+:[0-9]+(,[^,:]+:[0-9]+)*$",
    "kafka_topic": r"^[A-Za-z0-9._-]+$",
    "kafka_consumer_group": r"^[A-Za-z0-9._-]+$",
    "expansion_service": r"^[^:]+:[0-9]+$",
    "intervals": rf"^{_INTERVAL}(,{_INTERVAL})*$",
    "output": r"^gs://[^/]+(/.*)?$",
    "db_url_secret": SECRET_VERSION_PATTERN.pattern,
    "exchange_map": r"^([^,=]+=[^,=]+(,[^,=]+=[^,=]+)*)?$",
    "fill_session_hours": rf"^({'|'.join(HOURS)})$",
}


def _actions() -> list[argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    AlphastreamOptions._add_argparse_args(parser)
    return [action for action in parser._actions if action.dest not in NOT_TEMPLATE_PARAMETERS]


def _regex(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        return _SWITCH
    if action.dest in REGEXES:
        return REGEXES[action.dest]
    numeric = _numeric_regex(action.type)
    if numeric:
        return numeric
    raise ValueError(f"--{action.dest}: no regex for its template parameter; add one to REGEXES")


def _numeric_regex(parse) -> str | None:
    """_NUMBER or _INTEGER if the flag's type parses such text, else None (ask it, not its name)."""
    for text, regex in (("0.5", _NUMBER), ("1", _INTEGER)):
        try:
            if parse is not None:
                parse(text)
                return regex
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
    return None


def metadata() -> dict:
    """The Flex Template metadata (Dataflow's template spec ``metadata`` object)."""
    return {
        "name": TEMPLATE_NAME,
        "description": TEMPLATE_DESCRIPTION,
        "parameters": [
            {
                "name": action.dest,
                "label": action.dest.replace("_", " ").capitalize(),
                "helpText": " ".join(action.help.split()),
                "isOptional": True,
                "regexes": [_regex(action)],
            }
            for action in _actions()
        ],
    }


if __name__ == "__main__":
    json.dump(metadata(), sys.stdout, indent=2)
    sys.stdout.write("\n")
