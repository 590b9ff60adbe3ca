# Cloud Composer 3 for the Airflow DAGs (orchestration/dags), when var.composer_enabled.
#
# The environment's bucket holds the DAGs: CI's deploy job (or you) copies orchestration/dags to
# the composer_dag_gcs_prefix output. The back-fill's params default to the Dataflow runner and
# this project's Flex Template, lake and DSN secret through the Airflow Variable the DAG reads
# (AIRFLOW_VAR_ALPHASTREAM_BACKFILL_PARAMS); Composer's own identity launches the jobs as the
# pipeline's service account.

locals {
  composer_count = var.composer_enabled ? 1 : 0
  backfill_params = {
    runner            = "dataflow"
    gcp_project       = var.project_id
    gcp_region        = var.region
    template_gcs_path = "gs://${google_storage_bucket.dataflow.name}/templates/bars.json"
    lake              = local.lake_root
    ticks_glob        = var.composer_ticks_glob != "" ? var.composer_ticks_glob : "gs://${google_storage_bucket.lake.name}/ticks/{date}/*"
    db_url_secret     = "projects/${var.project_id}/secrets/${google_secret_manager_secret.pipeline_db_url.secret_id}/versions/latest"
  }
}

resource "google_project_service" "composer" {
  for_each = toset(var.composer_enabled ? ["composer.googleapis.com"] : [])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

resource "google_service_account" "composer" {
  count = local.composer_count

  account_id   = "${var.name_prefix}-composer"
  display_name = "alphastream Cloud Composer (Airflow)"

  depends_on = [google_project_service.enabled]
}

# Composer's own role for its workers, and what the back-fill DAG does: launch Dataflow jobs (as
# the pipeline's account) and read the lake and the Flex Template spec.
resource "google_project_iam_member" "composer_worker" {
  count = local.composer_count

  project = var.project_id
  role    = "roles/composer.worker"
  member  = google_service_account.composer[0].member
}

resource "google_project_iam_member" "composer_dataflow_developer" {
  count = local.composer_count

  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = google_service_account.composer[0].member
}

resource "google_service_account_iam_member" "composer_runs_pipeline" {
  count = local.composer_count

  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.composer[0].member
}

resource "google_storage_bucket_iam_member" "composer_reads" {
  for_each = var.composer_enabled ? toset([google_storage_bucket.lake.name, google_storage_bucket.dataflow.name]) : toset([])

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = google_service_account.composer[0].member
}

resource "google_composer_environment" "airflow" {
  count = local.composer_count

  name   = "${var.name_prefix}-airflow"
  region = var.region

  config {
    environment_size = var.composer_environment_size

    software_config {
      image_version = var.composer_image_version
      env_variables = {
        AIRFLOW_VAR_ALPHASTREAM_BACKFILL_PARAMS = jsonencode(local.backfill_params)
      }
    }

    node_config {
      service_account = google_service_account.composer[0].email
      network         = google_compute_network.main.id
      subnetwork      = google_compute_subnetwork.main.id
    }

    # No public IP on the environment's workers (Composer 3: private networking).
    enable_private_environment = true
  }

  depends_on = [google_project_service.composer, google_project_iam_member.composer_worker]
}

output "composer_dag_gcs_prefix" {
  description = "Where the DAGs go (gcloud storage rsync orchestration/dags THIS); null without Composer."
  value       = var.composer_enabled ? google_composer_environment.airflow[0].config[0].dag_gcs_prefix : null
}

output "composer_airflow_uri" {
  description = "The Composer environment's Airflow UI; null without Composer."
  value       = var.composer_enabled ? google_composer_environment.airflow[0].config[0].airflow_uri : null
}
