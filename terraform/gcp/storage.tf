# Buckets: the Parquet lake (the pipeline's --output) and Dataflow's temp and staging files.

resource "google_storage_bucket" "lake" {
  # checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (data access logs), Google's replacement for bucket usage logs; a second logging bucket would duplicate them.
  name     = "${var.project_id}-${var.name_prefix}-lake"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  # An overwritten or deleted partition can be restored for lake_noncurrent_retention_days.
  versioning {
    enabled = true
  }

  # Old partitions are read rarely: move them to a cheaper class.
  lifecycle_rule {
    condition {
      age = var.lake_nearline_after_days
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.lake_noncurrent_retention_days
    }
    action {
      type = "Delete"
    }
  }

  # Optional retention: 0 keeps the lake forever.
  dynamic "lifecycle_rule" {
    for_each = var.lake_retention_days > 0 ? [var.lake_retention_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "dataflow" {
  # checkov:skip=CKV_GCP_62:Scratch files only (staged packages, temp shards); Cloud Audit Logs record access.
  # checkov:skip=CKV_GCP_78:Scratch files are re-created by every launch and deleted by age; old versions would only cost storage.
  name     = "${var.project_id}-${var.name_prefix}-dataflow"
  location = var.region

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only scratch files live here; they are re-created by every launch.
  force_destroy = true

  lifecycle_rule {
    condition {
      age = var.dataflow_scratch_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

locals {
  lake_root        = "gs://${google_storage_bucket.lake.name}/lake"
  dataflow_temp    = "gs://${google_storage_bucket.dataflow.name}/temp"
  dataflow_staging = "gs://${google_storage_bucket.dataflow.name}/staging"
}
