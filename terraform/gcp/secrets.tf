# Secret Manager holds every credential; Cloud Run reads them as environment variables and the
# Dataflow launch command reads the pipeline's DSN with gcloud. Nothing secret is in the code;
# generated values do live in the Terraform state, so keep the state in a private bucket.

resource "google_secret_manager_secret" "db_password" {
  secret_id = "${var.name_prefix}-db-password"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "db_password" {
  secret      = google_secret_manager_secret.db_password.id
  secret_data = random_password.db.result
}

# Full DSNs: the components read one variable (ALPHASTREAM_DB_URL), not host/user/password.
resource "google_secret_manager_secret" "api_db_url" {
  secret_id = "${var.name_prefix}-api-db-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "api_db_url" {
  secret      = google_secret_manager_secret.api_db_url.id
  secret_data = local.api_db_url
}

resource "google_secret_manager_secret" "pipeline_db_url" {
  secret_id = "${var.name_prefix}-pipeline-db-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "pipeline_db_url" {
  secret      = google_secret_manager_secret.pipeline_db_url.id
  secret_data = local.pipeline_db_url
}

# The REST API's key (X-API-Key); the dashboard sends it.
resource "random_password" "api_key" {
  length  = var.api_key_length
  special = false
}

resource "google_secret_manager_secret" "api_key" {
  secret_id = "${var.name_prefix}-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "api_key" {
  secret      = google_secret_manager_secret.api_key.id
  secret_data = random_password.api_key.result
}

# The market-data feed's API key, for feeds that need one. Terraform creates the empty secret;
# you add the key yourself (docs/deploy.md), so it never passes through Terraform or its state.
resource "google_secret_manager_secret" "feed_api_key" {
  count = local.feed_needs_key ? 1 : 0

  secret_id = "${var.name_prefix}-${var.ingestion_source}-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}
