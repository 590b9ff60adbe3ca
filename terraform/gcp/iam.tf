# One service account per component, each with only what it uses. Grants are on the resource
# (topic, subscription, bucket, secret, service) wherever IAM allows; cloudsql.client and
# dataflow.worker exist only at project level. The pipeline has no cloudsql.client: its workers
# reach the private IP directly (TLS, password from the DSN secret), not through the connector.
#
# Grants of one kind are one resource with for_each over a map; the keys name the grants in plans.

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

locals {
  project_grants = {
    pipeline_dataflow_worker = { role = "roles/dataflow.worker", member = google_service_account.pipeline.member }
    api_cloudsql_client      = { role = "roles/cloudsql.client", member = google_service_account.api.member }
  }

  # Dataflow reads the subscription's metadata (its topic) before pulling, hence the viewer role.
  pipeline_subscription_roles = ["roles/pubsub.subscriber", "roles/pubsub.viewer"]

  # The lake, and the temp and staging files (--temp_location, --staging_location).
  pipeline_buckets = {
    pipeline_lake             = google_storage_bucket.lake.name
    pipeline_dataflow_scratch = google_storage_bucket.dataflow.name
  }

  secret_accessors = merge(
    {
      pipeline_db_url   = { secret_id = google_secret_manager_secret.pipeline_db_url.id, member = google_service_account.pipeline.member }
      api_db_url        = { secret_id = google_secret_manager_secret.api_db_url.id, member = google_service_account.api.member }
      api_key           = { secret_id = google_secret_manager_secret.api_key.id, member = google_service_account.api.member }
      dashboard_api_key = { secret_id = google_secret_manager_secret.api_key.id, member = google_service_account.dashboard.member }
    },
    local.feed_needs_key ? {
      ingestion_feed_api_key = { secret_id = google_secret_manager_secret.feed_api_key[0].id, member = google_service_account.ingestion.member }
    } : {},
  )

  # The API checks X-API-Key itself; Cloud Run's IAM check is opened to everyone (allUsers) only
  # where a service's variable says so.
  public_services = {
    api       = var.api_allow_unauthenticated
    dashboard = var.dashboard_allow_unauthenticated
  }

  # The dashboard invokes the private API with an ID token for it (dash_app/api_client.py) and the key.
  run_invokers = merge(
    { dashboard_invokes_api = { service = "api", member = google_service_account.dashboard.member } },
    { for service, public in local.public_services : "${service}_public" => { service = service, member = "allUsers" } if public },
  )
  run_services = {
    api       = google_cloud_run_v2_service.api
    dashboard = google_cloud_run_v2_service.dashboard
  }
}

resource "google_project_iam_member" "grant" {
  for_each = local.project_grants

  project = var.project_id
  role    = each.value.role
  member  = each.value.member
}

resource "google_pubsub_subscription_iam_member" "pipeline" {
  for_each = toset(local.pipeline_subscription_roles)

  subscription = google_pubsub_subscription.pipeline.id
  role         = each.value
  member       = google_service_account.pipeline.member
}

resource "google_storage_bucket_iam_member" "pipeline" {
  for_each = local.pipeline_buckets

  bucket = each.value
  role   = "roles/storage.objectAdmin"
  member = google_service_account.pipeline.member
}

resource "google_secret_manager_secret_iam_member" "accessor" {
  for_each = local.secret_accessors

  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.run_invokers

  name     = local.run_services[each.value.service].name
  location = local.run_services[each.value.service].location
  role     = "roles/run.invoker"
  member   = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "api_invokers" {
  for_each = toset(var.api_invokers)

  name     = google_cloud_run_v2_service.api.name
  location = google_cloud_run_v2_service.api.location
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_cloud_run_v2_service_iam_member" "dashboard_viewers" {
  for_each = toset(var.dashboard_viewers)

  name     = google_cloud_run_v2_service.dashboard.name
  location = google_cloud_run_v2_service.dashboard.location
  role     = "roles/run.invoker"
  member   = each.value
}

resource "google_pubsub_topic_iam_member" "ingestion_publisher" {
  topic  = google_pubsub_topic.ticks.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.ingestion.member
}

# Whoever launches the job (you, or a CI identity) must be allowed to run it as this account.
resource "google_service_account_iam_member" "pipeline_launchers" {
  for_each = toset(var.pipeline_launchers)

  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}
