"""Registers the project's records (alphastream.records) as Beam schemas.

Beam infers a schema from a typed NamedTuple; registering RowCoder makes every PCollection of
these records use the compact, portable schema coder instead of pickling, which is what
Dataflow and cross-language transforms expect.
"""
from apache_beam.coders.row_coder import RowCoder
from apache_beam.coders.typecoders import registry

from alphastream.records import Bar, DeadLetter, Tick

for _record in (Tick, Bar, DeadLetter):
    registry.register_coder(_record, RowCoder)
