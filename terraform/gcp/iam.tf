# One service account per component, each with only what it uses. Grants are on the resource
# (topic, subscription, bucket, secret, service) wherever IAM allows; cloudsql.client and
# dataflow.worker exist only at project level. The pipeline has no cloudsql.client: its workers
# reach the private IP directly (TLS, password from the DSN secret), not through the connector.

resource "google_service_account" "pipeline" {
  account_id   = "${var.name_prefix}-pipeline"
  display_name = "alphastream Dataflow workers"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "api" {
  account_id   = "${var.name_prefix}-api"
  display_name = "alphastream REST API (Cloud Run)"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "dashboard" {
  account_id   = "${var.name_prefix}-dashboard"
  display_name = "alphastream dashboard (Cloud Run)"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "ingestion" {
  account_id   = "${var.name_prefix}-ingestion"
  display_name = "alphastream ingestion (Cloud Run worker pool)"

  depends_on = [google_project_service.enabled]
}

# --- pipeline (Dataflow workers) ---

resource "google_project_iam_member" "pipeline_dataflow_worker" {
  project = var.project_id
  role    = "roles/dataflow.worker"
  member  = google_service_account.pipeline.member
}

resource "google_pubsub_subscription_iam_member" "pipeline_subscriber" {
  subscription = google_pubsub_subscription.pipeline.id
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.pipeline.member
}

# Dataflow reads the subscription's metadata (its topic) before pulling.
resource "google_pubsub_subscription_iam_member" "pipeline_viewer" {
  subscription = google_pubsub_subscription.pipeline.id
  role         = "roles/pubsub.viewer"
  member       = google_service_account.pipeline.member
}

resource "google_storage_bucket_iam_member" "pipeline_lake" {
  bucket = google_storage_bucket.lake.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.pipeline.member
}

# Temp and staging files (--temp_location, --staging_location).
resource "google_storage_bucket_iam_member" "pipeline_dataflow_scratch" {
  bucket = google_storage_bucket.dataflow.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.pipeline.member
}

resource "google_secret_manager_secret_iam_member" "pipeline_db_url" {
  secret_id = google_secret_manager_secret.pipeline_db_url.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.pipeline.member
}

# Whoever launches the job (you, or a CI identity) must be allowed to run it as this account.
resource "google_service_account_iam_member" "pipeline_launchers" {
  for_each = toset(var.pipeline_launchers)

  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

# --- REST API ---

resource "google_project_iam_member" "api_cloudsql_client" {
  project = var.project_id
  role    = "roles/cloudsql.client"
  member  = google_service_account.api.member
}

resource "google_secret_manager_secret_iam_member" "api_db_url" {
  secret_id = google_secret_manager_secret.api_db_url.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.api.member
}

resource "google_secret_manager_secret_iam_member" "api_key" {
  secret_id = google_secret_manager_secret.api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.api.member
}

# The API checks X-API-Key itself; Cloud Run's IAM check is opened only if you say so.
resource "google_cloud_run_v2_service_iam_member" "api_public" {
  count = var.api_allow_unauthenticated ? 1 : 0

  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "api_invokers" {
  for_each = toset(var.api_invokers)

  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = each.value
}

# --- dashboard: invokes the private API with an ID token for it (dash_app/api_client.py) and the key ---

resource "google_cloud_run_v2_service_iam_member" "dashboard_invokes_api" {
  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = google_service_account.dashboard.member
}

resource "google_secret_manager_secret_iam_member" "dashboard_api_key" {
  secret_id = google_secret_manager_secret.api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.dashboard.member
}

resource "google_cloud_run_v2_service_iam_member" "dashboard_public" {
  count = var.dashboard_allow_unauthenticated ? 1 : 0

  name     = google_cloud_run_v2_service.dashboard.name
  location = google_cloud_run_v2_service.dashboard.location
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "dashboard_viewers" {
  for_each = toset(var.dashboard_viewers)

  name     = google_cloud_run_v2_service.dashboard.name
  location = google_cloud_run_v2_service.dashboard.location
  role     = "roles/run.invoker"
  member   = each.value
}

# --- ingestion ---

resource "google_pubsub_topic_iam_member" "ingestion_publisher" {
  topic  = google_pubsub_topic.ticks.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.ingestion.member
}

resource "google_secret_manager_secret_iam_member" "ingestion_feed_api_key" {
  count = local.feed_needs_key ? 1 : 0

  secret_id = google_secret_manager_secret.feed_api_key[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.ingestion.member
}

