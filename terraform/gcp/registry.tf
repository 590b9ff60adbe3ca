# One Docker repository for the images (API, dashboard, ingestion, pipeline; see terraform/gcp/images/).

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:The images hold open code and no data; Google-managed encryption at rest is enough.
  repository_id = var.name_prefix
  location      = var.region
  format        = "DOCKER"
  description   = "alphastream container images"

  # Keep the newest tagged images; untagged layers from re-pushed tags are cleaned up.
  cleanup_policies {
    id     = "delete-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "${var.untagged_image_retention_days * local.seconds_per_day}s"
    }
  }

  depends_on = [google_project_service.enabled]
}
