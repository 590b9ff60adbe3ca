"""Command line of the ingestion service: ``python -m ingestion --source NAME ...``.

Every flag has help text; ``python -m ingestion --help`` is the reference. API keys are not
flags (they would show in ``ps``): they come from the environment or .env (ingestion.settings).
"""
from __future__ import annotations

import argparse
import math
import os
import socket

from alphastream.synthetic import LIVE_TICKS_PER_SECOND, MarketSpec
from ingestion.connectors.base import Connector
from ingestion.service import DEFAULT_FLUSH_TIMEOUT_SECONDS, DEFAULT_LOG_INTERVAL_SECONDS
from ingestion.settings import IngestionSettings
from ingestion.sinks.base import Sink
from ingestion.sinks.pubsub import MAX_MESSAGES_PER_PUBLISH, MAX_TICKS_PER_MESSAGE, PublishSettings

WEBSOCKET_SOURCES = ("coinbase", "kraken", "binance", "finnhub", "polygon")
POLLING_SOURCES = ("alphavantage", "yahoo")
SOURCES = ("synthetic", "replay") + WEBSOCKET_SOURCES + POLLING_SOURCES
SINKS = ("pubsub", "kafka", "stdout")
DEFAULT_SYMBOLS = {
    "coinbase": "BTC-USD,ETH-USD",
    "kraken": "BTC/USD,ETH/USD",
    "binance": "BTCUSDT,ETHUSDT",
    "finnhub": "AAPL,MSFT,BINANCE:BTCUSDT",
    "polygon": "*",
    "alphavantage": "IBM",
    "yahoo": "AAPL,MSFT",
}
DEFAULT_INTERVAL = {"alphavantage": "1min", "yahoo": "1m"}

EPILOG = """\
API keys (environment or .env, never flags, never logged):
  ALPHASTREAM_FINNHUB_API_KEY, ALPHASTREAM_POLYGON_API_KEY, ALPHASTREAM_ALPHAVANTAGE_API_KEY
Pub/Sub emulator: set PUBSUB_EMULATOR_HOST=127.0.0.1:8085 (the client library uses it).

Examples:
  python -m ingestion --source synthetic --topic projects/P/topics/ticks --rate 1000 --max_ticks 10000
  python -m ingestion --source replay --input ticks.csv --speed 60 --topic projects/P/topics/ticks
  python -m ingestion --source coinbase --symbols BTC-USD,ETH-USD --topic projects/P/topics/ticks
  python -m ingestion --source kraken --sink kafka --bootstrap localhost:9092 --topic ticks
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _symbol_list(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError("expected comma-separated symbols, e.g. BTC-USD,ETH-USD")
    return symbols


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Stream market ticks from a feed, normalised to alphastream Ticks, to Pub/Sub "
                    "(or Kafka) in the wire format of alphastream.wire: JSON body with the Tick fields, "
                    "attributes ts (RFC 3339 event time) and id (source:trade_id).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_source_args(parser)
    _add_synthetic_args(parser)
    _add_replay_args(parser)
    _add_polling_args(parser)
    _add_sink_args(parser)
    _add_logging_args(parser)
    return parser


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source")
    src.add_argument("--source", required=True, choices=SOURCES,
                     help="Feed to read: synthetic (live random walks), replay (a tick file), websocket "
                          "trades (coinbase, kraken, binance, finnhub, polygon) or polled bars "
                          "(alphavantage, yahoo: one tick per bar, at the bar's close).")
    src.add_argument("--symbols", type=_symbol_list, default=None,
                     help="Comma-separated symbols in the feed's own spelling (coinbase BTC-USD, kraken "
                          "BTC/USD, binance BTCUSDT, finnhub AAPL or BINANCE:BTCUSDT, polygon AAPL or *). "
                          "Default per source: " + "; ".join(f"{k} {v}" for k, v in DEFAULT_SYMBOLS.items()))
    src.add_argument("--url", default=None,
                     help="Override the feed endpoint (websocket or HTTP), e.g. a sandbox, the delayed "
                          "Polygon cluster wss://delayed.massive.com/stocks, or a local test server.")
    src.add_argument("--max_ticks", type=_positive_int, default=None,
                     help="Stop (and flush) after handing this many ticks to the sink. Default: run until "
                          "the input ends (replay) or SIGINT/SIGTERM.")


def _add_synthetic_args(parser: argparse.ArgumentParser) -> None:
    syn = parser.add_argument_group("synthetic")
    syn.add_argument("--rate", type=_positive_float, default=LIVE_TICKS_PER_SECOND,
                     help=f"Synthetic: ticks per second (default {LIVE_TICKS_PER_SECOND:g}).")
    # The batch market's defaults, so a live run and a batch run of the same market look alike.
    syn.add_argument("--num_symbols", type=_positive_int, default=MarketSpec.symbols,
                     help="Synthetic: number of symbols (AAPL, MSFT, ... then SYM050...; "
                          f"default {MarketSpec.symbols}).")
    syn.add_argument("--seed", type=int, default=MarketSpec.seed,
                     help=f"Synthetic: random seed (default {MarketSpec.seed}).")


def _add_replay_args(parser: argparse.ArgumentParser) -> None:
    rep = parser.add_argument_group("replay")
    rep.add_argument("--input", default=None,
                     help="Replay: tick file (.csv, .jsonl/.json/.ndjson, .parquet) with columns symbol, "
                          "ts_us (or ts as ISO-8601 text), price, size, trade_id[, source].")
    rep.add_argument("--input_format", choices=("auto", "csv", "jsonl", "parquet"), default="auto",
                     help="Replay: file format; auto goes by extension (default).")
    rep.add_argument("--speed", type=_positive_float, default=1.0,
                     help="Replay: speed factor; 60 replays an hour in a minute. Timestamps are shifted "
                          "(and compressed by the factor) so the first tick is now (default 1).")


def _add_polling_args(parser: argparse.ArgumentParser) -> None:
    poll = parser.add_argument_group("polling (alphavantage, yahoo)")
    poll.add_argument("--interval", default=None,
                      help="Bar interval: alphavantage 1min|5min|15min|30min|60min (default 1min), yahoo "
                           "1m|2m|5m|15m|30m|60m|90m (default 1m).")
    poll.add_argument("--poll_seconds", type=_positive_float, default=None,
                      help="Seconds between polls of all symbols (default: alphavantage 3600 -- the free "
                           "tier allows 25 requests a day, 5 a minute, enforced by a rate limiter; yahoo 60).")
    poll.add_argument("--backfill", action="store_true",
                      help="On the first poll emit every bar returned, not only the newest.")


def _add_sink_args(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("sink")
    out.add_argument("--sink", choices=SINKS, default="pubsub",
                     help="pubsub (default), kafka (needs confluent-kafka and --bootstrap), or stdout "
                          "(print message bodies and attributes; for a quick look).")
    out.add_argument("--topic", default=None,
                     help="Pub/Sub: projects/PROJECT/topics/TOPIC. Kafka: the topic name. Required for both.")
    out.add_argument("--create_topic", action="store_true",
                     help="Pub/Sub: create the topic if it does not exist (handy with the emulator).")
    out.add_argument("--archive", default=None, metavar="PATH",
                     help="Write every tick to the tick archive under PATH (a folder or gs://bucket/path) "
                          "before publishing it, so `python -m pipeline repair` (and the streaming pipeline's "
                          "--archive) can recompute any bar from it. Default: no archive.")
    out.add_argument("--bootstrap", default=None, help="Kafka: bootstrap servers host:port[,host:port].")
    out.add_argument("--batch_max_messages", type=_positive_int, default=PublishSettings.batch_max_messages,
                     help="Publish batches of at most this many messages (Pub/Sub allows at most "
                          f"{MAX_MESSAGES_PER_PUBLISH} per request; default {PublishSettings.batch_max_messages}).")
    out.add_argument("--batch_max_latency", type=_positive_float, default=PublishSettings.batch_max_latency,
                     help="Send a batch at the latest this many seconds after its first message "
                          f"(default {PublishSettings.batch_max_latency}); Kafka: linger.")
    out.add_argument("--batch_max_bytes", type=_positive_int, default=PublishSettings.batch_max_bytes,
                     help="Pub/Sub: publish batches of at most this many bytes "
                          f"(default {PublishSettings.batch_max_bytes}).")
    out.add_argument("--ticks_per_message", type=_positive_int, default=PublishSettings.ticks_per_message,
                     help="Ticks per Pub/Sub message or Kafka record (Kafka: of one symbol), sent as one "
                          "JSON array (1: one tick object each). Batching is what lets a local pipeline keep "
                          f"up; at most {MAX_TICKS_PER_MESSAGE} (default {PublishSettings.ticks_per_message}).")
    out.add_argument("--heartbeat_seconds", type=float, default=PublishSettings.heartbeat_seconds,
                     help="After this many seconds without a message, send a heartbeat (an empty batch; Kafka: "
                          "one record to every partition of the topic) so readers' watermarks advance while the "
                          f"feed is quiet; 0 disables (default {PublishSettings.heartbeat_seconds:g}).")
    out.add_argument("--flush_timeout", type=_positive_float, default=DEFAULT_FLUSH_TIMEOUT_SECONDS,
                     help=f"At shutdown, wait at most this many seconds for outstanding publishes "
                          f"(default {DEFAULT_FLUSH_TIMEOUT_SECONDS:.0f}).")


def _add_logging_args(parser: argparse.ArgumentParser) -> None:
    ops = parser.add_argument_group("logging and metrics")
    ops.add_argument("--metrics_port", type=int, default=None,
                     help="Serve Prometheus metrics on http://METRICS_HOST:PORT/metrics (feed, per-symbol, "
                          "sequence-gap and publish metrics; docs/alerts.md). 0 picks a free port (logged). "
                          "Default: not served.")
    ops.add_argument("--metrics_host", default="127.0.0.1",
                     help="Address the metrics endpoint listens on (default 127.0.0.1; 0.0.0.0 in a container).")
    ops.add_argument("--log_interval", type=_positive_float, default=DEFAULT_LOG_INTERVAL_SECONDS,
                     help="Seconds between rate/lag log lines (ticks/s published; lag = now - event time "
                          f"of the last tick) (default {DEFAULT_LOG_INTERVAL_SECONDS:.0f}).")
    ops.add_argument("--log_level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), default="INFO",
                     help="Log level (default INFO).")


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Cross-flag rules argparse cannot express; exits with a usage error naming the fix."""
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error(f"--metrics_port {args.metrics_port}: expected 0..65535")
    if args.source == "replay" and not args.input:
        parser.error("--source replay needs --input FILE")
    if args.sink in ("pubsub", "kafka") and not args.topic:
        parser.error(f"--sink {args.sink} needs --topic")
    if args.sink == "kafka" and not args.bootstrap:
        parser.error("--sink kafka needs --bootstrap host:port")
    if args.sink == "pubsub":
        from ingestion.sinks.pubsub import topic_project

        try:
            topic_project(args.topic)
        except ValueError as err:
            parser.error(str(err))
        if args.ticks_per_message > MAX_TICKS_PER_MESSAGE:
            parser.error(f"--ticks_per_message {args.ticks_per_message}: at most {MAX_TICKS_PER_MESSAGE}")
        if args.batch_max_messages > MAX_MESSAGES_PER_PUBLISH:
            parser.error(f"--batch_max_messages {args.batch_max_messages}: Pub/Sub accepts at most "
                         f"{MAX_MESSAGES_PER_PUBLISH} messages per publish request")


def build_connector(args: argparse.Namespace, settings: IngestionSettings) -> Connector:
    """The connector for ``--source`` (imports only what that source needs)."""
    symbols = args.symbols or _symbol_list(DEFAULT_SYMBOLS.get(args.source, "X"))
    if args.source == "synthetic":
        from ingestion.connectors.synthetic import SyntheticMarket

        return SyntheticMarket(rate=args.rate, symbols=args.num_symbols, seed=args.seed)
    if args.source == "replay":
        from ingestion.connectors.replay import ReplayFile

        return ReplayFile(args.input, speed=args.speed, input_format=args.input_format)
    if args.source == "coinbase":
        from ingestion.connectors.coinbase import CoinbaseFeed

        return CoinbaseFeed(symbols, args.url)
    if args.source == "kraken":
        from ingestion.connectors.kraken import KrakenFeed

        return KrakenFeed(symbols, args.url)
    if args.source == "binance":
        from ingestion.connectors.binance import BinanceFeed

        return BinanceFeed(symbols, args.url)
    if args.source == "finnhub":
        from ingestion.connectors.finnhub import FinnhubFeed

        return FinnhubFeed(symbols, settings.require("finnhub"), args.url)
    if args.source == "polygon":
        from ingestion.connectors.polygon import PolygonFeed

        return PolygonFeed(symbols, settings.require("polygon"), args.url)
    interval = args.interval or DEFAULT_INTERVAL[args.source]
    if args.source == "alphavantage":
        from ingestion.connectors.alphavantage import DEFAULT_POLL_SECONDS, AlphaVantagePoller

        return AlphaVantagePoller(symbols, settings.require("alphavantage"), interval=interval,
                                  poll_seconds=args.poll_seconds or DEFAULT_POLL_SECONDS, url=args.url,
                                  backfill=args.backfill)
    if args.source == "yahoo":
        from ingestion.connectors.yahoo import DEFAULT_POLL_SECONDS, YahooPoller

        return YahooPoller(symbols, interval=interval, poll_seconds=args.poll_seconds or DEFAULT_POLL_SECONDS,
                           backfill=args.backfill)
    raise ValueError(f"unknown source {args.source!r}")


def build_sink(args: argparse.Namespace) -> Sink:
    sink = _bus_sink(args)
    if not args.archive:
        return sink
    from alphastream.tick_archive import TickArchive
    from ingestion.sinks.archive import ArchivingSink

    # One file per writer process: two feeds archiving to one folder never share a file.
    writer_id = f"{args.source}-{socket.gethostname()}-{os.getpid()}"
    return ArchivingSink(sink, TickArchive(args.archive, writer_id))


def _bus_sink(args: argparse.Namespace) -> Sink:
    if args.sink == "stdout":
        from ingestion.sinks.base import StdoutSink

        return StdoutSink()
    if args.sink == "kafka":
        from ingestion.sinks.kafka import KafkaSink, kafka_config

        linger_ms = int(args.batch_max_latency * 1000)
        return KafkaSink(args.topic, kafka_config(args.bootstrap, linger_ms=linger_ms,
                                                  batch_max_messages=args.batch_max_messages),
                         ticks_per_record=args.ticks_per_message, max_latency=args.batch_max_latency,
                         heartbeat_seconds=_heartbeat_seconds(args))
    from ingestion.sinks.pubsub import PubSubSink

    settings = PublishSettings(batch_max_messages=args.batch_max_messages, batch_max_bytes=args.batch_max_bytes,
                               batch_max_latency=args.batch_max_latency, ticks_per_message=args.ticks_per_message,
                               heartbeat_seconds=_heartbeat_seconds(args))
    return PubSubSink(args.topic, settings, create_topic=args.create_topic)


def _heartbeat_seconds(args: argparse.Namespace) -> float | None:
    """--heartbeat_seconds for the sinks: None (no heartbeats) for 0 or less."""
    return args.heartbeat_seconds if args.heartbeat_seconds > 0 else None
