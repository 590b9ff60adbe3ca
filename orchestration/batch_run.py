"""``python -m orchestration.batch_run -- PIPELINE ARGS``: a batch run whose counters a task can read.

Runs ``python -m pipeline ARGS`` with this interpreter, passes its output through (to stderr, so
Airflow's task log shows it), reads the run summary it prints (pipeline.summary) and prints the
tick counters as one JSON line on stdout: Airflow's BashOperator pushes that last line to XCom,
where the data-quality task (orchestration.quality) takes it. The exit code is the pipeline's.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Sequence

# The summary's lines (pipeline.summary.RunSummary.lines) -> counter names.
_SUMMARY_LINES = {
    "ticks_read": re.compile(r"^\s*ticks read\s+([\d,]+)\s*$"),
    "ticks_unique": re.compile(r"^\s*unique\s+([\d,]+)\s*$"),
    "ticks_duplicate": re.compile(r"^\s*duplicates\s+([\d,]+)\s*$"),
    "ticks_dead_lettered": re.compile(r"^\s*dead-lettered\s+([\d,]+)\s*$"),
}


def counters_from_summary(output: str) -> dict[str, int]:
    """The tick counters in a ``python -m pipeline`` run summary; raises if one is missing."""
    counters: dict[str, int] = {}
    for line in output.splitlines():
        for name, pattern in _SUMMARY_LINES.items():
            match = pattern.match(line)
            if match and name not in counters:
                counters[name] = int(match[1].replace(",", ""))
    missing = sorted(set(_SUMMARY_LINES) - set(counters))
    if missing:
        raise ValueError(f"the pipeline's run summary has no {', '.join(missing)} line: did the run finish? "
                         f"(its last output lines: {output.strip().splitlines()[-5:]})")
    return counters


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], stdout=subprocess.PIPE, text=True)
    sys.stderr.write(done.stdout)
    if done.returncode != 0:
        return done.returncode
    print(json.dumps(counters_from_summary(done.stdout), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
