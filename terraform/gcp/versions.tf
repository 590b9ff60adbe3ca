# Terraform and provider versions. The google provider is pinned to the 6.x line: the Cloud Run
# v2 worker pool (the ingestion service) arrived in 6.49, and 7.x changed defaults we rely on.
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.49, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }
}
