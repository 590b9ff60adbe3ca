"""The pipeline's Beam metrics on a Prometheus endpoint, for local streaming runs.

On Dataflow, Beam counters and distributions appear as the job's custom metrics
(``dataflow.googleapis.com/job/user_counter``) with nothing to run. A local run has no such
service, so ``python -m pipeline --streaming --metrics_port PORT`` serves them itself: at each
scrape the collector asks the running pipeline's result for the metrics of the ``alphastream``
namespace and renders them as Prometheus families:

* a counter ``c`` -> ``alphastream_pipeline_c_total``
* a distribution ``d`` -> ``alphastream_pipeline_d`` as a summary (``_count``, ``_sum``) plus
  ``alphastream_pipeline_d_min`` and ``_max`` gauges

Attempted values are served: a running local pipeline has not committed its bundles yet.
"""
from __future__ import annotations

import logging
import re
from typing import Iterator

from apache_beam.metrics.metric import MetricsFilter

from alphastream.records import METRICS_NAMESPACE

log = logging.getLogger(__name__)

PREFIX = "alphastream_pipeline_"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(beam_name: str) -> str:
    """A Beam metric name as a Prometheus one (letters, digits and underscores only)."""
    return PREFIX + _UNSAFE.sub("_", beam_name)


class BeamMetricsCollector:
    """A prometheus_client collector over a pipeline result's metrics (see the module docstring)."""

    def __init__(self, result, namespace: str = METRICS_NAMESPACE):
        self._result, self._namespace = result, namespace

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        try:
            metrics = self._result.metrics().query(MetricsFilter().with_namespace(self._namespace))
        except Exception as err:  # a scrape must not take the pipeline down; the gap shows as absent series
            log.warning("pipeline metrics unavailable for this scrape: %s", err)
            return
        counters: dict[str, int] = {}
        for result in metrics["counters"]:
            name = metric_name(result.key.metric.name)
            counters[name] = counters.get(name, 0) + (result.attempted or 0)
        for name, value in sorted(counters.items()):
            family = CounterMetricFamily(name, f"Beam counter {name.removeprefix(PREFIX)}")
            family.add_metric([], value)
            yield family
        # A metric is reported per step that updates it: one series each, summed over steps.
        distributions: dict[str, list] = {}
        for result in metrics["distributions"]:
            data = result.attempted
            if data is None or not data.count:
                continue
            merged = distributions.setdefault(metric_name(result.key.metric.name), [0, 0, data.min, data.max])
            merged[0] += data.count
            merged[1] += data.sum
            merged[2], merged[3] = min(merged[2], data.min), max(merged[3], data.max)
        for name, (count, total, low, high) in sorted(distributions.items()):
            summary = SummaryMetricFamily(name, f"Beam distribution {name.removeprefix(PREFIX)}")
            summary.add_metric([], count_value=count, sum_value=total)
            yield summary
            for edge, value in (("min", low), ("max", high)):
                gauge = GaugeMetricFamily(f"{name}_{edge}", f"{edge} of {name.removeprefix(PREFIX)}")
                gauge.add_metric([], value)
                yield gauge


def serve_metrics(result, host: str, port: int) -> int:
    """Serve ``result``'s metrics on http://host:port/metrics (a daemon thread); returns the port."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(BeamMetricsCollector(result))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server.server_port
