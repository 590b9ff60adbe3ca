"""Anomalies into the Parquet lake, batch or streaming, in the bars' layout (pipeline.lake).

Batch writes ``anomalies/date=D/anomalies-<SYMBOL>.parquet``, one file per (date, symbol) a run
found anomalies in; streaming writes ``anomalies-<SYMBOL>-<window>-pane<N>.parquet`` in the same
folders (pipeline.streaming_lake), windowed by the time the detection was made: the end of the
bar it judged, so each detection lands in its own bar's lake window.
"""
from __future__ import annotations

import apache_beam as beam

from alphastream.records import Anomaly
from pipeline.lake import ANOMALY_SORT_BY, WriteAnomaliesToLake, anomaly_stem


def write_anomalies_to_lake(root: str, *, streaming: bool, window_seconds: int,
                            allowed_lateness_seconds: int) -> beam.PTransform:
    """The lake write for a batch or a streaming run (the streaming flags as the bars' lake uses them)."""
    if not streaming:
        return WriteAnomaliesToLake(root)
    from pipeline.streaming_lake import WriteToLakeStreaming

    return WriteToLakeStreaming(root, Anomaly, anomaly_stem, ANOMALY_SORT_BY, window_seconds=window_seconds,
                                allowed_lateness_seconds=allowed_lateness_seconds)
