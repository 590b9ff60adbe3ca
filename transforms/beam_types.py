"""Beam's generic classes with Any element types, for annotating PTransforms.

Beam reads ``expand`` annotations as type hints, and type hints choose coders (a running
streaming job's coders must not change on update). Element types therefore stay where Beam
expects them (``with_output_types``, docstrings), and annotations at the Beam boundary say Any.
"""
from typing import Any, TypeAlias

from apache_beam.pvalue import PCollection
from apache_beam.transforms.ptransform import PTransform

PColl: TypeAlias = PCollection[Any]
Transform: TypeAlias = PTransform[PColl, PColl]
TaggedTransform: TypeAlias = PTransform[PColl, dict[str, PColl]]  # outputs by tag (ticks, dead letters)
