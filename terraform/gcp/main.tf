# alphastream on Google Cloud: the provider, shared names and the APIs every other file needs.
#
# Files by area: network.tf (VPC for Cloud SQL's private IP), pubsub.tf, storage.tf, sql.tf,
# secrets.tf, iam.tf, registry.tf, run.tf (API, dashboard, ingestion) and dataflow.tf (the
# streaming job's launch arguments; see docs/deploy.md for why the job is started by command).

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = merge(var.labels, { app = var.name_prefix })
}

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  apis = [
    "artifactregistry.googleapis.com",
    # Terraform itself reads project metadata and IAM through it (data.google_project, *_iam_member).
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "iam.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicenetworking.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
  ]

  seconds_per_day = 86400

  # Cloud Run's default port; the API and the dashboard are told to listen on it.
  container_port = 8080
}

resource "google_project_service" "enabled" {
  for_each = toset(local.apis)

  project = var.project_id
  service = each.value
  # Turning an API off on destroy would break anything else in the project that uses it.
  disable_on_destroy = false
}
