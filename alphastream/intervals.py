"""Bar interval names ("1m", "5m", "1h", "1d") and their lengths.

Shared by the pipeline (which windows by them) and the API (which rolls stored bars up to
larger multiples), so both agree on spelling and alignment. Buckets are aligned to the Unix
epoch, which is also what Beam's FixedWindows and PostgreSQL's date_bin (with an epoch
origin) do; the pipeline's ``1d`` bars are the exception: they follow the trading session
(transforms.session_days).
"""
from __future__ import annotations

import re

from alphastream.records import MICROS_PER_SECOND

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL_RE = re.compile(r"^([1-9][0-9]{0,4})([smhd])$")

DEFAULT_INTERVALS: tuple[str, ...] = ("1m", "5m", "1h")


class IntervalError(ValueError):
    """An interval name that cannot be parsed."""


def interval_seconds(name: str) -> int:
    """Length of an interval in seconds: ``interval_seconds("5m") == 300``."""
    match = _INTERVAL_RE.match(name.strip()) if isinstance(name, str) else None
    if not match:
        raise IntervalError(
            f"bad interval {name!r}: expected a number and a unit s, m, h or d, e.g. 1m, 5m, 1h, 1d"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def interval_micros(name: str) -> int:
    return interval_seconds(name) * MICROS_PER_SECOND


def canonical_interval(name: str) -> str:
    """Canonical spelling of an interval: the largest unit that divides it ("60s" -> "1m")."""
    seconds = interval_seconds(name)
    for unit in ("d", "h", "m", "s"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    raise AssertionError("unreachable: 's' divides every interval")


def parse_intervals(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Parse "1m,5m,1h" into canonical names, sorted shortest first, without repeats."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = {canonical_interval(p) for p in parts if p.strip()}
    if not names:
        raise IntervalError("no intervals given: expected e.g. 1m,5m,1h")
    return tuple(sorted(names, key=interval_seconds))


def bucket_start_us(ts_us: int, interval_us: int) -> int:
    """Start of the epoch-aligned bucket holding ts_us (floor division also for negatives)."""
    return ts_us - ts_us % interval_us
