"""``python -m pipeline``: run the alphastream pipeline.

With no arguments: one trading day of the synthetic market, in batch on the DirectRunner,
bars into ./data/lake and into the embedded local PostgreSQL. ``--help`` lists every flag;
the same flags work with ``--runner DataflowRunner``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import signal
import sys
import threading
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.utils.secret import Secret

from alphastream.errors import UserFacingError
from alphastream.settings import AlphastreamSettings, mask_dsn
from pipeline.cli import build_parser, parse_pipeline_options
from pipeline.graph import build_graph, session_map
from pipeline.options import (
    AlphastreamOptions,
    check_source_flags,
    db_url_secret,
    fill_policy,
    resolved_date,
    resolved_db_url,
)
from pipeline.runners import is_submitted, runner_for, runs_locally
from pipeline.streaming_sources import KafkaExpansionError
from pipeline.summary import summarise

log = logging.getLogger("pipeline")


def _now_us() -> int:
    return time.time_ns() // 1_000


def resolve_database(options: PipelineOptions, opts: AlphastreamOptions) -> str | Secret | None:
    """The DSN to write to: --db_url / $ALPHASTREAM_DB_URL, else the embedded local database
    (DirectRunner only), or None with --no_db; with --db_url_secret, the secret itself (the
    workers read it; a local run reads it here to migrate the schema)."""
    settings = AlphastreamSettings()
    if opts.no_db:
        return None
    from store import migrate

    try:
        secret = db_url_secret(opts)
    except ValueError as err:
        raise UserFacingError(str(err)) from None
    if secret is not None:
        target: str | Secret = secret
    else:
        url = resolved_db_url(opts, settings)
        target = url if url is not None else _embedded_database(options, settings)
    if runs_locally(options):  # remote runners never migrate: the deploy runs its migrate job
        migrate.migrate(target.get_str() if isinstance(target, Secret) else target)
    return target


def _embedded_database(options: PipelineOptions, settings: AlphastreamSettings) -> str:
    """The DSN of the embedded local PostgreSQL, started if needed (local runs only)."""
    from store import localdb

    if not runs_locally(options):
        raise UserFacingError("a remote runner cannot reach the embedded local database: "
                              "pass --db_url_secret or --db_url (e.g. Cloud SQL), or --no_db")
    log.info("no --db_url: starting the embedded local PostgreSQL (python -m store stop to stop it)")
    return localdb.LocalDatabase.from_settings(settings).ensure_running()


def check_local_synthetic_stream(options: PipelineOptions, opts: AlphastreamOptions, streaming: bool) -> None:
    """--streaming --source synthetic on the DirectRunner: bounded, and no early firings.

    The DirectRunner hands a streaming graph without Pub/Sub or TestStream to its FnApiRunner,
    which runs stage after stage to completion: it cannot fire processing-time (early)
    triggers, and bars come out when the source stops. So the run needs --max_duration, and
    early firings are turned off. For live bars locally, go through Pub/Sub:
    ``python -m live_demo``.
    """
    if not (streaming and opts.source == "synthetic" and runs_locally(options)):
        return
    if opts.max_duration is None:
        raise UserFacingError("--streaming --source synthetic on the DirectRunner needs --max_duration SECONDS "
                              "(it emits bars when the source stops); for live bars use python -m live_demo")
    if opts.early_firing_seconds:
        log.warning("the DirectRunner cannot fire early panes for the synthetic stream: --early_firing_seconds 0")
        opts.early_firing_seconds = 0


def new_pipeline(options: PipelineOptions) -> beam.Pipeline:
    """The pipeline on the runner the flags name, refused in one line if Beam's own checks of
    the flags fail (an unknown --runner; Dataflow without --project, --region, --temp_location)."""
    try:
        return beam.Pipeline(runner=runner_for(options), options=options)  # None: the runner --runner names
    except ValueError as err:  # Beam's PipelineOptionsValidator, or create_runner on an unknown name
        problems = "; ".join(line.strip().rstrip(".") for line in str(err).splitlines()[1:] if line.strip()) or str(err)
        raise UserFacingError(f"Beam refused the flags for --runner "
                              f"{options.view_as(StandardOptions).runner or 'DirectRunner'}: {problems}") from None


def _run_streaming(pipeline: beam.Pipeline, opts: AlphastreamOptions) -> tuple[PipelineResult, bool]:
    """Run until --max_duration or Ctrl-C/SIGTERM, then cancel cleanly (the DirectRunner does not
    support wait_until_finish(duration=...)). A Pub/Sub reader blocked on an idle subscription
    is woken first, or cancel() would wait up to 30 s for its pull. Returns the result and
    whether the run ended by itself (False: it was stopped, and its counters miss what was in
    flight)."""
    result = pipeline.run()
    if PipelineState.is_terminal(result.state):
        return result, True  # a bounded local run (see check_local_synthetic_stream) has finished
    stop = threading.Event()
    failures: list[BaseException] = []

    def watch() -> None:  # a failed run must end the process, not leave it idle (a lost subscription)
        try:
            result.wait_until_finish()
        except Exception as err:  # noqa: BLE001 - re-raised in the main thread below
            failures.append(err)
        stop.set()

    threading.Thread(target=watch, name="pipeline-watch", daemon=True).start()
    if opts.metrics_port is not None:
        from pipeline.metrics_export import serve_metrics

        port = serve_metrics(result, opts.metrics_host, opts.metrics_port)
        log.info("pipeline metrics on http://%s:%d/metrics", opts.metrics_host, port)

    _stop_on_signals(stop)
    max_duration = opts.max_duration
    log.info("streaming; stop with Ctrl-C%s", f" (or after {max_duration:.0f} s)" if max_duration else "")
    stop.wait(timeout=max_duration)
    if failures:
        raise _stream_failure(opts, failures[0])
    log.info("stopping the streaming pipeline...")
    if opts.source == "pubsub":
        from pipeline.streaming_sources import wake_pubsub_reader

        wake_pubsub_reader(opts.subscription, opts.topic)
    result.cancel()
    log.info("streaming pipeline stopped")
    return result, False


def _stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C or SIGTERM sets ``stop`` (a clean cancel); a second one exits at once."""

    def on_signal(signum, _frame):
        if stop.is_set():  # a second signal: the user does not want to wait for the drain
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)


def _stream_failure(opts: AlphastreamOptions, err: BaseException) -> BaseException:
    """The error a failed streaming run ends with: one line if its cause is the user's to fix."""
    if opts.source == "pubsub":
        from pipeline.streaming_sources import lost_subscription_error

        lost = lost_subscription_error(opts.subscription)
        if lost is not None:
            return lost
    return err


@contextlib.contextmanager
def finalizing(opts: AlphastreamOptions, db_url: str | Secret | None):
    """With --archive (and a database): the bar finaliser runs beside the streaming run, and
    makes one last pass after it stops (pipeline.finalizer)."""
    if not (opts.archive and db_url):
        yield
        return
    from pipeline.finalizer import BarFinalizer

    finalizer = BarFinalizer(opts.archive, db_url.get_str() if isinstance(db_url, Secret) else db_url,
                             opts.intervals, opts.allowed_lateness, every_seconds=opts.finalize_every_seconds,
                             lake=opts.output, fill=fill_policy(opts, streaming=True), sessions=session_map(opts))
    finalizer.start()
    try:
        yield
    finally:
        finalizer.stop()


@contextlib.contextmanager
def frozen_heap():
    """Keep the garbage collector off the objects that exist before the run.

    Importing Beam leaves many long-lived objects (modules, protos, type hints) that every full
    collection during a local run would walk although they are never garbage: gc.freeze() moves
    them out of the collector's sight for the run, and unfreeze() hands them back after it.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    """Run the pipeline; a UserFacingError becomes ``error: ...`` on stderr and its exit code
    (anything else keeps its traceback: that is a bug to report)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["repair"]:
            from pipeline import repair

            return repair.main(argv[1:])
        return run(argv)
    except UserFacingError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


def configure_logging() -> None:
    """Our own loggers say what the run does; everything else (Beam logs INFO on the root logger)
    only warnings, so a refused flag stays one line."""
    # force: Beam's PipelineOptions() has already called logging.basicConfig() with its defaults
    # (level WARNING), which would make this call a no-op and hide every INFO line.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for ours in ("pipeline", "transforms", "alphastream", "store"):
        logging.getLogger(ours).setLevel(logging.INFO)


def run_here(pipeline: beam.Pipeline, opts: AlphastreamOptions, streaming: bool,
             db_url: str | Secret | None) -> tuple[PipelineResult, bool]:
    """Run on this machine until the end (batch) or the stop (streaming); returns the result and
    whether the run ended by itself."""
    with frozen_heap():
        if streaming:
            with finalizing(opts, db_url):
                return _run_streaming(pipeline, opts)
        with _sigterm_exits_cleanly():
            result = pipeline.run()
            result.wait_until_finish()
        return result, True


@contextlib.contextmanager
def _sigterm_exits_cleanly():
    """A batch run stopped by SIGTERM exits through Python (SystemExit), not at once: Beam stops
    the processes it started (Flink's job server JVM) only in its exit handlers."""
    def on_sigterm(signum, _frame):
        log.warning("%s: stopping the batch run", signal.Signals(signum).name)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_summary(result: PipelineResult, finished: bool, elapsed: float, opts: AlphastreamOptions,
                  db_url: str | Secret | None) -> bool:
    """Print what the run read, wrote and dead-lettered; True if its counters add up."""
    summary = summarise(result, complete=finished)
    print(f"\nalphastream run finished in {elapsed:.1f} s")
    if db_url is None:
        database = None
    else:
        database = mask_dsn(db_url) if isinstance(db_url, str) else f"the DSN in {opts.db_url_secret}"
    for line in summary.lines(opts.output, database):
        print("  " + line)
    return summary.accounted


def run(argv: list[str]) -> int:
    """Check the flags, prepare the database, build and run the graph, print the summary."""
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        return 0
    options = parse_pipeline_options(argv)
    opts = options.view_as(AlphastreamOptions)
    streaming = options.view_as(StandardOptions).streaming
    check_source_flags(opts, streaming)
    configure_logging()

    options.view_as(SetupOptions).save_main_session = False
    check_local_synthetic_stream(options, opts, streaming)
    pipeline = new_pipeline(options)
    db_url = resolve_database(options, opts)
    day = resolved_date(opts, dt.datetime.now(dt.timezone.utc).date())
    if opts.source == "synthetic" and not streaming:
        log.info("synthetic market: %d symbols x %s ticks on %s (seed %d)",
                 opts.symbols, f"{opts.ticks_per_symbol:,}", day, opts.seed)

    started = time.monotonic()
    try:
        build_graph(pipeline, opts, streaming=streaming, now_us=_now_us, day=day, db_url=db_url)
    except KafkaExpansionError as err:  # no Java expansion service: say what to do, no traceback
        raise UserFacingError(str(err)) from err
    if is_submitted(options):  # Dataflow: submit, report, return
        from pipeline.launch import run_remote

        return run_remote(pipeline, options, wait=opts.wait)
    result, finished = run_here(pipeline, opts, streaming, db_url)
    accounted = print_summary(result, finished, time.monotonic() - started, opts, db_url)
    # A stopped streaming run's counters miss the bundles in flight: its verdict is "unknown".
    return 0 if accounted or streaming else 1

if __name__ == "__main__":
    sys.exit(main())
