"""Streaming sources: Pub/Sub and Kafka -> ``(origin, message body)``, event-timestamped.

Thin adapters over Beam's IOs; ``pipeline.graph.read_stream`` picks one from the flags with
``from_options``. Both yield ``(origin, message body)``, one element per message.

Batched bodies. The DirectRunner pulls only 10 Pub/Sub messages per read, far fewer messages a
second than a feed produces ticks, so the publisher puts many ticks in one message: the body
is then a JSON array of tick objects and the event-time attribute holds the batch's *earliest*
tick time (``alphastream.wire``). The sources pass each message on whole, timestamped by that
attribute; ``transforms.tick_batches.ParseTickBatches`` splits it, keeping the ticks of a
message together through dedup and pre-aggregation, which is what lets the DirectRunner keep
up.

Duplicates are dropped downstream, per tick, by (source, trade_id). Pub/Sub's own
``id_label`` deduplication is only passed on Dataflow: the DirectRunner refuses it.
"""
from __future__ import annotations

import concurrent.futures
import logging
import time

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage, ReadFromPubSub

from alphastream.errors import UserFacingError
from alphastream.java_jars import FETCH_COMMAND
from pipeline.runners import runs_on_dataflow, runs_on_flink

log = logging.getLogger(__name__)

KAFKA_ORIGIN_PREFIX = "kafka:"
AUTO_COMMIT_INTERVAL_MS = 1000
# How long KafkaIO's reader waits on the broker, in all, before it ends its bundle (whole seconds,
# at least 1; Beam's default is 2). Prism passes the reader's records on only when its bundle
# ends, and under a steady feed the bundle ends only once the polls have waited this long, so it
# bounds how long a tick waits before the pipeline sees it.
KAFKA_POLLING_TIMEOUT_SECONDS = 1
# On Flink KafkaIO reads through its legacy UnboundedSource (docs/kafka-flink.md), which refuses a
# consumer polling timeout other than Beam's default.
BEAM_DEFAULT_POLLING_TIMEOUT_SECONDS = 2
WAKE_TIMEOUT_SECONDS = 10.0
CHECK_TIMEOUT_SECONDS = 10.0


class ReadTicksFromPubSub(beam.PTransform):
    """Pub/Sub (subscription or topic) -> (origin, message body), stamped with the message's
    event-time attribute (the earliest tick of a batch).

    ``timestamp_attribute`` names the message attribute that carries the event time (epoch
    milliseconds or RFC 3339); ``id_label``, on Dataflow only, names the attribute Pub/Sub
    deduplicates redeliveries by.
    """

    def __init__(self, *, subscription: str | None = None, topic: str | None = None,
                 timestamp_attribute: str | None, id_label: str | None = None):
        super().__init__()
        if bool(subscription) == bool(topic):
            raise UserFacingError("--source pubsub needs exactly one of --subscription projects/P/subscriptions/S "
                             f"or --topic projects/P/topics/T (got subscription={subscription!r}, topic={topic!r})")
        self.subscription, self.topic = subscription, topic
        self.timestamp_attribute, self.id_label = timestamp_attribute, id_label

    @property
    def origin(self) -> str:
        return self.subscription or self.topic

    @classmethod
    def from_options(cls, opts) -> "ReadTicksFromPubSub":
        from alphastream import wire  # the format ingestion publishes

        id_label = wire.ID_ATTRIBUTE if runs_on_dataflow(opts) else None
        return cls(subscription=opts.subscription, topic=opts.topic,
                   timestamp_attribute=wire.TIMESTAMP_ATTRIBUTE, id_label=id_label)

    def check_exists(self) -> None:
        """Fail now, in one line, if the subscription or topic is missing: Beam would only find
        out once the job runs (on Dataflow, minutes later, in a worker log)."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exceptions
        from google.cloud import pubsub_v1

        try:
            if self.subscription:
                with pubsub_v1.SubscriberClient() as subscriber:
                    subscriber.get_subscription(subscription=self.subscription, timeout=CHECK_TIMEOUT_SECONDS)
            else:
                publisher = pubsub_v1.PublisherClient()
                try:
                    publisher.get_topic(topic=self.topic, timeout=CHECK_TIMEOUT_SECONDS)
                finally:
                    publisher.stop()
        except auth_exceptions.DefaultCredentialsError:
            # Building a job offline (--dry_run) or for another identity: the job will check.
            log.warning("no Google credentials here: not checking that %s exists", self.origin)
        except gexc.NotFound:
            kind, flag = ("subscription", "--subscription") if self.subscription else ("topic", "--topic")
            raise UserFacingError(
                f"Pub/Sub {kind} {self.origin} ({flag}) does not exist: create it first, e.g. "
                f"`gcloud pubsub {kind}s create {self.origin.rsplit('/', 1)[-1]}"
                f"{' --topic TOPIC' if self.subscription else ''}`, or check the project and name") from None

    def expand(self, pbegin):
        self.check_exists()
        return (
            pbegin
            | "ReadFromPubSub" >> ReadFromPubSub(
                subscription=self.subscription, topic=self.topic, with_attributes=True,
                timestamp_attribute=self.timestamp_attribute, id_label=self.id_label)
            | "WithOrigin" >> beam.Map(lambda message, origin=self.origin: (origin, message.data)).with_input_types(
                PubsubMessage).with_output_types(tuple[str, bytes])
        )


def lost_subscription_error(subscription: str | None) -> UserFacingError | None:
    """If the running pipeline failed because ``subscription`` no longer exists, the one-line
    error that says so and what to do; None if it exists (or cannot be checked)."""
    if not subscription:
        return None
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    try:
        with pubsub_v1.SubscriberClient() as subscriber:
            subscriber.get_subscription(subscription=subscription, timeout=CHECK_TIMEOUT_SECONDS)
        return None
    except gexc.NotFound:
        return UserFacingError(
            f"Pub/Sub subscription {subscription} (--subscription) disappeared while the pipeline was reading it "
            f"(deleted, or expired unused): re-create it (`gcloud pubsub subscriptions create "
            f"{subscription.rsplit('/', 1)[-1]} --topic TOPIC`) and restart; the ticks published meanwhile are "
            "not in it, so repair their bars from the tick archive (--archive, or python -m pipeline repair)",
            exit_code=3)
    except (gexc.GoogleAPICallError, gexc.RetryError) as err:
        log.warning("could not check whether %s still exists: %s", subscription, err)
        return None


def wake_pubsub_reader(subscription: str | None, topic: str | None) -> bool:
    """Publish a heartbeat (an empty batch) to the topic being read, so that a pull blocked on
    an idle subscription returns now: the DirectRunner's pull waits up to 30 s for a message
    and ``result.cancel()`` waits for the pull. Returns False (and the stop just takes longer)
    if the topic cannot be published to."""
    from google.api_core import exceptions as gexc
    from google.cloud import pubsub_v1

    from alphastream.wire import encode_heartbeat

    try:
        if topic is None:
            with pubsub_v1.SubscriberClient() as subscriber:
                topic = subscriber.get_subscription(subscription=subscription).topic
        publisher = pubsub_v1.PublisherClient()
        try:
            body, attributes = encode_heartbeat(time.time_ns() // 1_000)
            publisher.publish(topic, body, **attributes).result(timeout=WAKE_TIMEOUT_SECONDS)
        finally:
            publisher.stop()
        return True
    except (gexc.GoogleAPICallError, gexc.RetryError, concurrent.futures.TimeoutError) as err:
        log.warning("could not wake the Pub/Sub reader (%s); stopping may take up to 30 s", err)
        return False


def default_consumer_group(topic: str) -> str:
    """One group per topic, so that a restarted pipeline resumes where the last one committed."""
    return f"alphastream-{topic}"


class KafkaExpansionError(UserFacingError):
    """ReadFromKafka could not be expanded: no Java expansion service was reachable."""


def kafka_expansion_help(expansion_service: str | None, cause: BaseException) -> str:
    where = (f"the expansion service at --expansion_service {expansion_service} did not answer"
             if expansion_service else
             "Beam could not start its default Kafka expansion service (it downloads "
             "beam-sdks-java-io-expansion-service-<beam version>.jar from Maven Central and runs it with Java)")
    return (
        f"--source kafka needs Beam's Java expansion service for ReadFromKafka, and {where}: {cause}\n"
        "What to do: start one where Java is installed, e.g.\n"
        "    java -jar beam-sdks-java-io-expansion-service-<beam version>.jar 8097\n"
        "and pass --expansion_service localhost:8097; or stage that jar in ~/.apache_beam/cache/jars/ "
        "so Beam can start it without network access. Where Maven Central does not serve that jar, "
        f"`{FETCH_COMMAND}` caches an equivalent classpath and docs/kafka-flink.md shows how to start it."
    )


class ReadTicksFromKafka(beam.PTransform):
    """Kafka topic -> ("kafka:<topic>", record value), through Beam's cross-language ReadFromKafka.

    Records are timestamped with their Kafka CreateTime (the producer sets it to the tick's
    event time). KafkaIO's create-time policy holds each partition's watermark at its latest
    record time and, once a partition is caught up (idle), advances it to the wall clock, so a
    quiet partition does not hold bars back; the feed's heartbeats (ingestion.sinks.kafka) also
    give every partition a record at least every ``--heartbeat_seconds`` while the topic is idle.
    The consumer commits the offsets it has polled to
    ``consumer_group`` every second, and a restart with the same group resumes from them (a new
    group starts at the earliest retained record). A value may be one tick or a JSON array of
    ticks, as on Pub/Sub.
    """

    def __init__(self, *, bootstrap_servers: str, topic: str, expansion_service: str | None = None,
                 consumer_group: str | None = None, polling_timeout_seconds: int = KAFKA_POLLING_TIMEOUT_SECONDS):
        super().__init__()
        self.polling_timeout_seconds = polling_timeout_seconds
        if not bootstrap_servers or not topic:
            raise UserFacingError("--source kafka needs --kafka_bootstrap_servers host:port and --kafka_topic NAME "
                             f"(got {bootstrap_servers!r}, {topic!r})")
        self.topic = topic
        self.consumer_group = consumer_group or default_consumer_group(topic)
        # Prism refuses the @RequiresStableInput step of commit_offset_in_finalize, so the consumer
        # commits what it has polled itself; ticks polled but not yet in a bar when the job dies
        # are put back by the --archive finaliser, not by a re-read.
        self.consumer_config = {"bootstrap.servers": bootstrap_servers, "group.id": self.consumer_group,
                                "auto.offset.reset": "earliest", "enable.auto.commit": "true",
                                "auto.commit.interval.ms": str(AUTO_COMMIT_INTERVAL_MS)}
        self.expansion_service = expansion_service

    @classmethod
    def from_options(cls, opts) -> "ReadTicksFromKafka":
        return cls(bootstrap_servers=opts.kafka_bootstrap_servers, topic=opts.kafka_topic,
                   expansion_service=opts.expansion_service, consumer_group=opts.kafka_consumer_group,
                   polling_timeout_seconds=(BEAM_DEFAULT_POLLING_TIMEOUT_SECONDS if runs_on_flink(opts)
                                            else KAFKA_POLLING_TIMEOUT_SECONDS))

    def kafka_read(self):
        """Beam's ReadFromKafka configured for this source (expanded when applied)."""
        from apache_beam.io.kafka import ReadFromKafka

        return ReadFromKafka(consumer_config=self.consumer_config, topics=[self.topic],
                             timestamp_policy=ReadFromKafka.create_time_policy,
                             consumer_polling_timeout=self.polling_timeout_seconds,
                             expansion_service=self.expansion_service)

    def check_broker(self) -> None:
        """Fail now, in one line, if no broker answers at the bootstrap servers or the topic is
        missing: the Java reader would otherwise retry silently inside the running job."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        servers = self.consumer_config["bootstrap.servers"]
        admin = AdminClient({"bootstrap.servers": servers})
        try:
            metadata = admin.list_topics(timeout=CHECK_TIMEOUT_SECONDS)
        except KafkaException as err:
            raise UserFacingError(f"no Kafka broker answered at --kafka_bootstrap_servers {servers} within "
                                  f"{CHECK_TIMEOUT_SECONDS:.0f} s ({err.args[0].str()}): check the host:port "
                                  "list and that the broker is running") from None
        if self.topic not in metadata.topics:
            raise UserFacingError(f"Kafka topic {self.topic!r} (--kafka_topic) does not exist on {servers}: create "
                                  f"it (kafka-topics.sh --create --topic {self.topic} --bootstrap-server {servers}) "
                                  "or check the name")

    def expand(self, pbegin):
        self.check_broker()
        try:
            records = pbegin | "ReadFromKafka" >> self.kafka_read()
        except Exception as err:  # grpc.RpcError, RuntimeError from the jar download, OSError...
            raise KafkaExpansionError(kafka_expansion_help(self.expansion_service, err)) from err
        origin = KAFKA_ORIGIN_PREFIX + self.topic
        return records | "WithOrigin" >> beam.Map(lambda record, origin=origin: (origin, record[1])).with_output_types(
            tuple[str, bytes])
