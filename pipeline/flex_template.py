"""Entry point of the Flex Template: the launcher runs this file with the template's parameters.

Dataflow passes every parameter as ``--name=value``, switches included (``--no_db=true``), while
Beam's and alphastream's switches are argparse ``store_true`` flags that refuse a value. And a
template has no ``--streaming`` switch to pass: this module turns ``--flag=true`` into
``--flag``, drops ``--flag=false``, and turns streaming on for the unbounded sources, then runs
``python -m pipeline`` with the result.
"""
from __future__ import annotations

import argparse
import sys

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline.options import STREAMING_SOURCES, AlphastreamOptions

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no", ""})


def _switch_actions() -> list[argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    for options_class in PipelineOptions.__subclasses__():
        options_class._add_argparse_args(parser)
    return [action for action in parser._actions
            if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction))]


def switch_flags() -> frozenset[str]:
    """Every switch of Beam's option classes and AlphastreamOptions (``--name``): ``store_true``
    flags, and the positive form of ``--name/--no-name`` pairs."""
    return frozenset(option for action in _switch_actions() for option in action.option_strings
                     if not option.startswith("--no-"))


def negatable_flags() -> frozenset[str]:
    """Switches whose default may be on (``--name/--no-name``): false must say ``--no-name``."""
    return frozenset(action.option_strings[0] for action in _switch_actions()
                     if isinstance(action, argparse.BooleanOptionalAction))


def template_argv(argv: list[str]) -> list[str]:
    """The template's ``--name=value`` parameters as ``python -m pipeline`` arguments."""
    switches, negatable = switch_flags(), negatable_flags()
    result = []
    for arg in argv:
        name, has_value, value = arg.partition("=")
        if not (has_value and name in switches):
            result.append(arg)
        elif value.lower() in TRUE_WORDS:
            result.append(name)
        elif value.lower() in FALSE_WORDS:
            if name in negatable:
                result.append("--no-" + name.removeprefix("--"))
        else:
            raise SystemExit(f"error: template parameter {name}={value!r}: expected true or false")
    options = PipelineOptions(result)
    streaming = options.view_as(StandardOptions).streaming
    if options.view_as(AlphastreamOptions).source in STREAMING_SOURCES and not streaming:
        result.append("--streaming")
    return result


if __name__ == "__main__":
    from pipeline.__main__ import main

    sys.exit(main(template_argv(sys.argv[1:])))
