"""Pure Beam transforms: parsing and validation, dedup, bars, indicators. No I/O, no clocks."""
from transforms import schemas as _schemas  # noqa: F401  (registers the record coders)
