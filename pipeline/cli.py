"""The command line of ``python -m pipeline``: its --help, and its refusals as one line each.

Beam parses flags leniently: an unknown flag is dropped with a warning (``--symbol 5`` would
run the default number of symbols) and a bad value prints Beam's whole usage. So the CLI parses the
same flags strictly first, with the parser Beam would build from every PipelineOptions class,
and turns each problem into a ``UserFacingError``: ``error: ...`` on one line, exit 2.
"""
from __future__ import annotations

import argparse
from typing import Any, NoReturn

from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)

from alphastream.errors import UserFacingError
from pipeline.options import AlphastreamOptions

PROG = "python -m pipeline"
HELP_HINT = f"{PROG} --help lists the flags"
DESCRIPTION = f"""\
alphastream: market ticks -> OHLCV bars (with VWAP and trade counts) in a Parquet lake and
PostgreSQL, in batch or streaming, on any Beam runner. With no flags: a seeded synthetic
trading day on the DirectRunner, written to ./data/lake and the embedded local database.

examples:
  # the synthetic day into the lake and the embedded local database
  {PROG}
  # back-fill files into the lake only
  {PROG} --source files --input 'ticks/*.csv' --no_db
  # live bars from Pub/Sub into your PostgreSQL
  {PROG} --streaming --source pubsub --subscription projects/P/subscriptions/ticks \\
      --db_url postgresql://user:pass@host:5432/alphastream
  # recompute the bars of an hour from the tick archive, stored as final
  {PROG} repair --archive data/lake --start 2024-05-01T14:00 --end 2024-05-01T15:00
  # back-fill Parquet files on Flink (embedded here; --flink_master host:8081 for a cluster)
  {PROG} --runner FlinkRunner --parallelism 2 --source files --input 'ticks/*.parquet' --no_db
  # build a Dataflow job without submitting it
  {PROG} --runner DataflowRunner --project P --region us-central1 \\
      --temp_location gs://B/tmp --setup_file ./setup.py --dry_run True
"""
BEAM_HEADING = "Beam's flags"
BEAM_DESCRIPTION = """\
The flags of any Beam pipeline; the main ones follow, by Beam's option class. Beam accepts
the rest too (Flink, Spark, portable runners, profiling, ...): see
https://beam.apache.org/releases/pydoc/current/apache_beam.options.pipeline_options.html"""
# Beam's option classes shown in --help, each under a heading; the others are accepted silently.
BEAM_HELP_GROUPS = {
    StandardOptions: "runner and mode",
    GoogleCloudOptions: "Google Cloud / Dataflow",
    WorkerOptions: "Dataflow workers",
    SetupOptions: "dependencies staged to workers",
    DebugOptions: "experiments",
    DirectOptions: "DirectRunner",
    TestOptions: "dry runs and tests",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks, and prints a default once: only where the help text
    does not already say it, and not for flags whose default is "not set"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default in (None, False, "", argparse.SUPPRESS) or default == [] or "default" in text.lower()
                or not action.option_strings):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else "%(default)s"
        return f"{text} (default: {shown})"


class StrictParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UserFacingErrors instead of usage text and exit()."""

    def error(self, message: str) -> NoReturn:
        raise UserFacingError(f"{message} ({HELP_HINT})", exit_code=2)


class _HiddenGroup:
    """Takes a Beam options class's flags without listing them in --help."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._parser = parser

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        return self._parser.add_argument(*args, **{**kwargs, "help": argparse.SUPPRESS})


def _beam_option_classes() -> list[type[PipelineOptions]]:
    # As Beam's own parser does (PipelineOptions.get_all_options): every subclass, once by name.
    unique = {str(cls): cls for cls in PipelineOptions.__subclasses__() if cls is not AlphastreamOptions}
    return list(unique.values())


def _add_beam_flags(options_class: type[PipelineOptions], target: Any) -> None:
    """Beam types the target as its own parser; an argument group or a _HiddenGroup takes the
    same add_argument calls."""
    options_class._add_argparse_args(target)


def build_parser() -> StrictParser:
    """alphastream's flags first (with examples), then Beam's under their own heading."""
    parser = StrictParser(prog=PROG, usage=f"{PROG} [alphastream flags] [Beam flags]", description=DESCRIPTION,
                          formatter_class=HelpFormatter, allow_abbrev=False)
    AlphastreamOptions._add_argparse_args(parser)
    parser.add_argument_group(BEAM_HEADING, BEAM_DESCRIPTION)
    for options_class, title in BEAM_HELP_GROUPS.items():
        _add_beam_flags(options_class, parser.add_argument_group(f"Beam: {title} ({options_class.__name__})"))
    for options_class in _beam_option_classes():
        if options_class not in BEAM_HELP_GROUPS:
            _add_beam_flags(options_class, _HiddenGroup(parser))
    return parser


def parse_pipeline_options(argv: list[str]) -> PipelineOptions:
    """Beam's PipelineOptions for ``argv``, after a strict parse: an unknown flag or a bad
    value raises UserFacingError instead of being dropped or printing Beam's usage."""
    _, unknown = build_parser().parse_known_args(argv)
    flags = [arg for arg in unknown if arg.startswith("-")]
    if flags:
        raise UserFacingError(f"unknown flag{'s' if len(flags) > 1 else ''} {' '.join(flags)} ({HELP_HINT})")
    if unknown:
        raise UserFacingError(f"unexpected argument {unknown[0]!r}: every value follows a --flag; quote a glob "
                              f"so the shell does not expand it (--input 'ticks/*.csv')")
    return PipelineOptions(argv)

