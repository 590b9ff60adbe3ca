# Ticks flow ingestion -> ticks topic -> pipeline subscription -> Dataflow.
#
# The wire format (ingestion/wire.py) travels in the message itself: a JSON tick body, the event
# time in the "ts" attribute and the dedup id in "id". The pipeline reads both attribute names
# from ingestion.wire, so nothing here names them; tests/test_terraform.py checks that this file
# does not filter or rewrite messages by some other attribute name.

resource "google_pubsub_topic" "ticks" {
  name = "${var.name_prefix}-ticks"
  # Lets a new subscription (or a seek) replay recent ticks after a pipeline rebuild.
  message_retention_duration = "${var.ticks_retention_seconds}s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_topic" "ticks_dead_letter" {
  name                       = "${var.name_prefix}-ticks-dead-letter"
  message_retention_duration = "${var.dead_letter_retention_seconds}s"

  depends_on = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "pipeline" {
  name  = "${var.name_prefix}-ticks-pipeline"
  topic = google_pubsub_topic.ticks.id

  ack_deadline_seconds       = var.pipeline_ack_deadline_seconds
  message_retention_duration = "${var.ticks_retention_seconds}s"
  retain_acked_messages      = false

  # A streaming job's subscription must never expire while the job is stopped for an update.
  expiration_policy {
    ttl = ""
  }

  # Dataflow acks a message once its bundle is committed, so only messages that repeatedly
  # crash a worker reach this policy; parse errors are dead-lettered by the pipeline itself.
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.ticks_dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
}

# Messages published to a topic without subscriptions are lost: keep the dead letters readable.
resource "google_pubsub_subscription" "dead_letter_inspection" {
  name                       = "${var.name_prefix}-ticks-dead-letter-inspection"
  topic                      = google_pubsub_topic.ticks_dead_letter.id
  ack_deadline_seconds       = var.pipeline_ack_deadline_seconds
  message_retention_duration = "${var.dead_letter_retention_seconds}s"

  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub's service agent forwards undeliverable messages and acks them on the source.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.ticks_dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  subscription = google_pubsub_subscription.pipeline.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}
