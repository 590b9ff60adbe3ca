"""The run summary: what was read, written, dead-lettered and dropped as duplicates.

Counts come from the Beam metrics the transforms increment, so the summary also proves the
accounting rules: every tick read is either unique (turned into bars), a duplicate, or a dead
letter; and every dead letter reached the lake, the ticks' and the rows a database sink could
not store (``sink_failed``, the dead-letter table's own included). A stopped streaming run
cannot prove them (its counters miss what was in flight): the summary says "unknown" there,
and the finaliser (``--archive``) or ``python -m pipeline repair`` makes the bars exact. Beam's
job service has no counters at all for a stopped Flink streaming run: they are read from Flink's
REST API instead (``flink_rest_counters``, where the result names it), and where that fails too
the summary says they are unavailable (``NO_METRICS_OF_STOPPED_RUN``) rather than print zeros.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.runner import PipelineResult

from alphastream.records import METRICS_NAMESPACE

SINK_ROWS_FAILED = "db_rows_dead_lettered"  # pipeline.postgres_sink counts the rows it dead-letters here


@dataclass
class RunSummary:
    counters: dict[str, int] = field(default_factory=dict)
    unavailable: str | None = None  # why the runner could not report its counters
    # False for a stopped (cancelled) streaming run: its counters miss the bundles that were in
    # flight, so the equations can be neither proven nor refuted.
    complete: bool = True

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def ticks_accounted(self) -> bool:
        """ticks read == unique + duplicates + dead-lettered (sink failures are not ticks)."""
        return self.get("ticks_read") == (
            self.get("ticks_unique") + self.get("ticks_duplicate") + self.get("ticks_dead_lettered")
        )

    @property
    def dead_letters_accounted(self) -> bool:
        """dead letters in the lake == ticks dead-lettered + rows the database sinks failed."""
        return self.get("lake_deadletter_rows") == self.get("ticks_dead_lettered") + self.get(SINK_ROWS_FAILED)

    @property
    def accounted(self) -> bool:
        return self.unavailable is None and self.complete and self.ticks_accounted and self.dead_letters_accounted

    def _verdict(self, holds: bool, ok: str, mismatch: str) -> str:
        if not self.complete:
            return "unknown: a stopped streaming run's counters miss the bundles in flight"
        return ok if holds else mismatch

    def lines(self, output: str, db: str | None) -> list[str]:
        if self.unavailable:
            return [f"counters unavailable: {self.unavailable}", _row("lake", output)]
        bars = {k.removeprefix("bars_"): v for k, v in sorted(self.counters.items()) if k.startswith("bars_")}
        dead_letters = (f"{self.get('ticks_dead_lettered'):,} ticks + {self.get(SINK_ROWS_FAILED):,} sink_failed: "
                        + self._verdict(self.dead_letters_accounted, "OK, all in the lake",
                                        f"MISMATCH: the lake holds {self.get('lake_deadletter_rows'):,}"))
        lines = [
            _row("ticks read", f"{self.get('ticks_read'):>12,}"),
            _row("  unique", f"{self.get('ticks_unique'):>12,}"),
            _row("  duplicates", f"{self.get('ticks_duplicate'):>12,}"),
            _row("  dead-lettered", f"{self.get('ticks_dead_lettered'):>12,}"),
            _row("  accounting", self._verdict(self.ticks_accounted, "OK: read = unique + duplicates + dead-lettered",
                                               "MISMATCH: some ticks are not accounted for")),
            _row("bars", ", ".join(f"{k}: {v:,}" for k, v in bars.items()) if bars else "none"),
            _row("lake", f"{output} ({self.get('lake_bar_rows'):,} bar rows, "
                         f"{self.get('lake_deadletter_rows'):,} dead letters)"),
            _row("dead letters", dead_letters),
        ]
        if db:
            lines.append(_row("database", f"{db} ({self.get('db_bar_rows'):,} bar rows upserted, "
                                          f"{self.get('db_dead_letter_rows'):,} dead letters, "
                                          f"{self.get(SINK_ROWS_FAILED):,} rows failed)"))
        return lines


LABEL_WIDTH = 18


def _row(label: str, text: str) -> str:
    return f"{label:<{LABEL_WIDTH}}{text}"

def summarise(result: PipelineResult, complete: bool = True) -> RunSummary:
    """Collect the alphastream counters of a finished (or cancelled) run; ``complete=False``
    for a run stopped before its end (its counters are a lower bound)."""
    from apache_beam.runners.portability.portable_runner import PipelineResult as PortablePipelineResult

    if isinstance(result, PortablePipelineResult):  # Flink, Prism
        summary = portable_summary(_job_metrics(result), complete)
        rest_address = getattr(result, "flink_rest_address", lambda: None)()  # pipeline.flink_job_server
        if summary.unavailable and rest_address:
            counters = flink_rest_counters(rest_address, _flink_job_name(result._job_id))
            if counters:
                return RunSummary(counters, complete=False)
        return summary
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except RecursionError:
        # Beam's FnApiRunner nests one generator per splittable-DoFn round when it merges
        # metrics; a PeriodicImpulse source running for a while exceeds Python's recursion limit.
        return RunSummary(unavailable="the DirectRunner's metrics overflowed after a long "
                                      "PeriodicImpulse run (a Beam limitation); the outputs are complete")
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        # A stopped run's committed values miss bundles that were processed but not committed
        # when it was cancelled; attempted ones include them (and, on a retry, count twice).
        value = counter.committed if complete and counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + (value or 0)
    return RunSummary(counters, complete=complete)


# Beam's job service takes a Flink job's metrics from Flink's execute(), which returns only when
# the job ends by itself; a streaming job stopped by cancel() never does, so the job service has
# no metrics for it at any time, before or after the cancel (Prism reports them while it runs).
NO_METRICS_OF_STOPPED_RUN = ("the runner reported none for this stopped streaming run (Beam's Flink job service "
                             "reports a streaming job's counters only when the job ends by itself, never after a "
                             "stop); what the run wrote is in the lake and the database")


def _job_metrics(result):
    """The job service's GetJobMetricsResponse for a portable runner's job.

    Not ``result.metrics()``: Beam's portable metrics keep one report per (step, counter), and
    a step the runner copies into several stages (a parse after a Flatten of CSV and JSONL
    inputs, on Flink) reports once per copy, so all but one copy's counts would be lost. The
    job service's raw reports are read instead (through the result's job service handle, which
    ``metrics()`` itself uses).
    """
    from apache_beam.portability.api import beam_job_api_pb2

    return result._job_service.GetJobMetrics(beam_job_api_pb2.GetJobMetricsRequest(job_id=result._job_id))


def portable_summary(response, complete: bool) -> RunSummary:
    """The summary from a portable runner's GetJobMetricsResponse: the alphastream counters summed
    over every report, or, for a stopped run whose runner reported nothing at all, unavailable
    (zeros would read as a run that read nothing)."""
    from apache_beam.metrics import monitoring_infos

    if not complete and not response.metrics.attempted and not response.metrics.committed:
        return RunSummary(unavailable=NO_METRICS_OF_STOPPED_RUN, complete=False)
    # As in summarise: committed values for a run that ended by itself, attempted ones for a stopped run.
    reports = response.metrics.committed if complete and response.metrics.committed else response.metrics.attempted
    counters: dict[str, int] = {}
    for info in reports:
        if not (monitoring_infos.is_counter(info) and monitoring_infos.is_user_monitoring_info(info)):
            continue
        namespace, name = monitoring_infos.parse_namespace_and_name(info)
        if namespace == METRICS_NAMESPACE:
            counters[name] = counters.get(name, 0) + monitoring_infos.extract_metric_result_map_value(info)
    return RunSummary(counters, complete=complete)


# Flink's REST API serves each operator's metrics from a store it refreshes in the background (at
# most every 10 s by default): the first ask after a while finds it empty or half filled.
FLINK_REST_TIMEOUT_SECONDS = 5.0
FLINK_METRICS_WAIT_SECONDS = 15.0
_FLINK_METRICS_POLL_SECONDS = 0.5


def _flink_job_name(job_id: str) -> str:
    """The Flink job name of a Beam job service invocation id (``<job name>_<uuid>``)."""
    return job_id.rsplit("_", 1)[0]


def _counter_name(flink_metric_id: str) -> str:
    return flink_metric_id.rsplit(".", 1)[-1]


def _get_json(url: str):
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=FLINK_REST_TIMEOUT_SECONDS) as response:
        return json.loads(response.read())


def flink_rest_counters(rest_address: str, job_name: str) -> dict[str, int]:
    """The alphastream counters of the running Flink job ``job_name``, as Flink's REST API reports
    them (each operator's counters, summed over its subtasks and over operators): a lower bound,
    like any stopped run's. Empty if the job or its counters cannot be read."""
    import time
    import urllib.error
    import urllib.parse

    prefix = f"{METRICS_NAMESPACE}_"
    deadline = time.monotonic() + FLINK_METRICS_WAIT_SECONDS
    try:
        # Whatever its state: Beam's cancel ends the job service's wait, not always the Flink job.
        jobs = [job for job in _get_json(f"{rest_address}/jobs/overview")["jobs"] if job["name"] == job_name]
        if not jobs:
            return {}
        job = max(jobs, key=lambda job: job["start-time"])["jid"]
        vertices = [f"{rest_address}/jobs/{job}/vertices/{vertex['id']}/subtasks/metrics"
                    for vertex in _get_json(f"{rest_address}/jobs/{job}")["vertices"]]
        # Until the store holds every operator: a fetch the first ask started may still be filling it.
        while True:
            listed = {vertex: [metric["id"] for metric in _get_json(vertex)] for vertex in vertices}
            if all(listed.values()) or time.monotonic() > deadline:
                break
            time.sleep(_FLINK_METRICS_POLL_SECONDS)
        counters: dict[str, int] = {}
        for vertex, ids in listed.items():
            # A metric id is "<operator>.<namespace>_<counter>".
            ours = [metric_id for metric_id in ids if _counter_name(metric_id).startswith(prefix)]
            if ours:
                for metric in _get_json(f"{vertex}?get={urllib.parse.quote(','.join(ours), safe=',')}"):
                    name = _counter_name(metric["id"]).removeprefix(prefix)
                    counters[name] = counters.get(name, 0) + int(metric["sum"])
        return counters
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return {}
