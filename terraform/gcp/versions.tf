# Terraform and provider versions. The google provider is pinned to the 6.x line: the Cloud Run
# v2 worker pool (the ingestion service) arrived in 6.49, and 7.x changed defaults we rely on.
# Terraform 1.11 and random 3.7 for ephemeral passwords written to write-only arguments.
terraform {
  required_version = ">= 1.11"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.49, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7, < 4.0"
    }
  }
}
