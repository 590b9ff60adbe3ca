"""Prometheus metrics of ``python -m ingestion`` (served on ``--metrics_port``).

Connectors and sinks keep plain counters (``ConnectorStats``, ``Sink``); ``FeedCollector``
reads them when Prometheus scrapes, so the per-tick hot path pays for a dict increment, not a
metrics library call. Only publish latency is a real histogram, observed as publishes are
confirmed. Every series carries ``feed`` (the connector's source name); per-symbol series also
carry ``symbol``. ``docs/alerts.md`` lists the alerts built on them.
"""
from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingestion.connectors.base import Connector
from ingestion.sinks.base import Sink

PREFIX = "alphastream_ingest"
# Publish round trips span a local emulator's milliseconds to the seconds of a publish being retried.
PUBLISH_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _counter(name: str, doc: str, feed: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["feed"])
    family.add_metric([feed], value)
    return family


def _per_symbol(family: Metric, feed: str, values: dict) -> Metric:
    for symbol, value in sorted(values.items()):
        family.add_metric([feed, symbol], float(value))
    return family


class FeedCollector(Collector):
    """Exports a connector's ``ConnectorStats`` and a sink's counters at scrape time."""

    def __init__(self, connector: Connector, sink: Sink) -> None:
        self.connector, self.sink = connector, sink

    def collect(self) -> Iterator[Metric]:
        feed, stats, sink = self.connector.source, self.connector.stats, self.sink
        yield _counter("messages_received", "Frames, responses or file rows received (heartbeats included).",
                       feed, stats.frames)
        yield _counter("malformed_messages", "Frames or trades that could not be read (skipped).", feed,
                       stats.malformed)
        yield _counter("reconnects", "Reconnects (or failed polls retried) after a drop or error.", feed,
                       stats.reconnects)
        yield _counter("rate_limit_waits", "Requests that waited for a request quota (ours or the provider's).",
                       feed, stats.rate_limit_waits)
        yield _counter("rate_limit_wait_seconds", "Seconds spent waiting for request quotas.", feed,
                       stats.rate_limit_wait_seconds)
        last = GaugeMetricFamily(f"{PREFIX}_last_message_timestamp_seconds",
                                 "Unix time of the last frame, response or tick from the feed.", labels=["feed"])
        if stats.last_message_at is not None:
            last.add_metric([feed], stats.last_message_at)
        yield last
        labels = ["feed", "symbol"]
        yield _per_symbol(CounterMetricFamily(f"{PREFIX}_ticks_received", "Ticks handed to the sink, by symbol.",
                                              labels=labels), feed, stats.ticks_by_symbol)
        yield _per_symbol(GaugeMetricFamily(f"{PREFIX}_last_tick_timestamp_seconds",
                                            "Unix time the symbol's last tick was received.", labels=labels),
                          feed, stats.last_tick_at)
        yield _per_symbol(CounterMetricFamily(f"{PREFIX}_sequence_gaps",
                                              "Jumps in the feed's per-symbol trade numbering.", labels=labels),
                          feed, stats.sequence.gaps)
        yield _per_symbol(CounterMetricFamily(f"{PREFIX}_sequence_missing_trades",
                                              "Trades skipped by those jumps (the size of the gaps).", labels=labels),
                          feed, stats.sequence.missing)
        yield _counter("ticks_submitted", "Ticks handed to the publisher.", feed, sink.submitted)
        yield _counter("ticks_published", "Ticks the broker confirmed.", feed, sink.published)
        yield _counter("publish_errors", "Ticks that could not be published after every retry (lost).", feed,
                       sink.failed)
        pending = GaugeMetricFamily(f"{PREFIX}_publish_pending", "Ticks handed over, not yet confirmed or failed.",
                                    labels=["feed"])
        pending.add_metric([feed], sink.pending)
        yield pending


class IngestionMetrics:
    """The ingestion process's registry: the feed collector plus the publish latency histogram."""

    def __init__(self, connector: Connector, sink: Sink) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(FeedCollector(connector, sink))
        latency = Histogram(f"{PREFIX}_publish_latency_seconds",
                            "Seconds from handing a message to the publisher to the broker's confirmation.",
                            ["feed"], buckets=PUBLISH_LATENCY_BUCKETS, registry=self.registry)
        sink.latency_observer = latency.labels(connector.source).observe

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on host:port (0: any free port) in a daemon thread; returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server.server_address[1]
