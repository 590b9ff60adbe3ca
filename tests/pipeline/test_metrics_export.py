"""The pipeline's Beam metrics served for Prometheus (pipeline.metrics_export)."""
from __future__ import annotations

import urllib.request

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from prometheus_client.parser import text_string_to_metric_families

from alphastream.records import METRICS_NAMESPACE
from pipeline.metrics_export import metric_name, serve_metrics


class _Count(beam.DoFn):
    def __init__(self):
        self._seen = Metrics.counter(METRICS_NAMESPACE, "ticks_parsed")
        self._lag = Metrics.distribution(METRICS_NAMESPACE, "bar_write_lag_ms")
        self._other = Metrics.counter("someone_else", "not_ours")

    def process(self, element):
        self._seen.inc()
        self._lag.update(element * 10)
        self._other.inc()
        yield element


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples}


def test_counters_and_distributions_of_our_namespace_are_served():
    p = beam.Pipeline(options=PipelineOptions([]))
    _ = p | beam.Create([1, 2, 3, 4]) | "A" >> beam.ParDo(_Count()) | "B" >> beam.ParDo(_Count())
    result = p.run()
    result.wait_until_finish()
    port = serve_metrics(result, "127.0.0.1", 0)
    samples = scrape(port)
    assert samples["alphastream_pipeline_ticks_parsed_total"] == 8  # two steps, summed
    assert samples["alphastream_pipeline_bar_write_lag_ms_count"] == 8
    assert samples["alphastream_pipeline_bar_write_lag_ms_sum"] == 200
    assert samples["alphastream_pipeline_bar_write_lag_ms_min"] == 10
    assert samples["alphastream_pipeline_bar_write_lag_ms_max"] == 40
    assert not any("not_ours" in name for name in samples)


def test_names_are_prometheus_safe():
    assert metric_name("bars_1m") == "alphastream_pipeline_bars_1m"
    assert metric_name("dead_letters.bad-json") == "alphastream_pipeline_dead_letters_bad_json"
