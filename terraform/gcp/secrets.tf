# Secret Manager holds every credential; Cloud Run reads them as environment variables and the
# Dataflow workers read the pipeline's DSN themselves. Generated values are ephemeral and go to
# write-only arguments (Terraform >= 1.11): they are in neither the plan nor the state. Bump
# credentials_version to generate and write new ones.

resource "google_secret_manager_secret" "db_password" {
  secret_id = "${var.name_prefix}-db-password"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "db_password" {
  secret                 = google_secret_manager_secret.db_password.id
  secret_data_wo         = ephemeral.random_password.db.result
  secret_data_wo_version = var.credentials_version
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
  secret                 = google_secret_manager_secret.api_db_url.id
  secret_data_wo         = local.api_db_url
  secret_data_wo_version = var.credentials_version
}

resource "google_secret_manager_secret" "pipeline_db_url" {
  secret_id = "${var.name_prefix}-pipeline-db-url"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "pipeline_db_url" {
  secret                 = google_secret_manager_secret.pipeline_db_url.id
  secret_data_wo         = local.pipeline_db_url
  secret_data_wo_version = var.credentials_version
}

# The REST API's key (X-API-Key); the dashboard sends it.
ephemeral "random_password" "api_key" {
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
  secret                 = google_secret_manager_secret.api_key.id
  secret_data_wo         = ephemeral.random_password.api_key.result
  secret_data_wo_version = var.credentials_version
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
