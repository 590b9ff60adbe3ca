# Ticks flow ingestion -> ticks topic -> pipeline subscription -> Dataflow.
#
# The wire format (alphastream/wire.py) travels in the message itself: a JSON tick body, the event
# time in the "ts" attribute and the dedup id in "id". The pipeline reads both attribute names
# from alphastream.wire, so nothing here names them; tests/deploy/test_terraform.py checks that this file
# does not filter or rewrite messages by some other attribute name.

resource "google_pubsub_topic" "ticks" {
  # checkov:skip=CKV_GCP_83:Market ticks are public data; Google-managed encryption at rest is enough, and a CMEK would add a KMS key to run for no gain.
  name = "${var.name_prefix}-ticks"
  # Lets a new subscription (or a seek) replay recent ticks after a pipeline rebuild.
  message_retention_duration = "${var.ticks_retention_seconds}s"

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

  # No dead_letter_policy or retry_policy: Dataflow acks a message once it is durably received,
  # before any processing, so Pub/Sub never sees a failed delivery to count. Records the
  # pipeline cannot use go to its own dead-letter output (the dead_letters table and lake).
}
