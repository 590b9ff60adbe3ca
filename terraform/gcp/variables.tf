# --- project ---

variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lower-case letters, digits, hyphens), not a name or number."
  }
}

variable "region" {
  description = "Region for every regional resource: Cloud SQL, Cloud Run, Dataflow, buckets, Artifact Registry."
  type        = string
  default     = "europe-west1"
}

variable "name_prefix" {
  description = "Prefix of every resource name (service accounts, buckets, topics...). Short: service account IDs are limited to 30 characters."
  type        = string
  default     = "alphastream"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,14}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 4-16 lower-case letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels added to every resource that supports them (an app label is always added)."
  type        = map(string)
  default     = {}
}

# --- network ---

variable "subnet_cidr" {
  description = "IP range of the subnet used by Dataflow workers and Cloud Run's VPC egress."
  type        = string
  default     = "10.10.0.0/20"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a CIDR block, e.g. 10.10.0.0/20."
  }
}

variable "private_services_prefix_length" {
  description = "Prefix length of the range reserved for private services access (Cloud SQL private IPs)."
  type        = number
  default     = 20

  validation {
    condition     = var.private_services_prefix_length >= 16 && var.private_services_prefix_length <= 24
    error_message = "private_services_prefix_length must be between 16 and 24."
  }
}

# --- Pub/Sub ---

variable "ticks_retention_seconds" {
  description = "How long the ticks topic and the pipeline subscription keep messages (seek/replay window), in seconds."
  type        = number
  default     = 604800

  validation {
    condition     = var.ticks_retention_seconds >= 600 && var.ticks_retention_seconds <= 2678400
    error_message = "ticks_retention_seconds must be between 600 (10 minutes) and 2678400 (31 days)."
  }
}

variable "pipeline_ack_deadline_seconds" {
  description = "Ack deadline of the pipeline subscription, in seconds (Dataflow extends it while a bundle is processed)."
  type        = number
  default     = 60

  validation {
    condition     = var.pipeline_ack_deadline_seconds >= 10 && var.pipeline_ack_deadline_seconds <= 600
    error_message = "pipeline_ack_deadline_seconds must be between 10 and 600."
  }
}

# --- storage ---

variable "force_destroy_buckets" {
  description = "Let terraform destroy delete the lake bucket with its Parquet files in it. Keep false outside experiments."
  type        = bool
  default     = false
}

variable "lake_nearline_after_days" {
  description = "Age in days after which lake objects move to the NEARLINE storage class."
  type        = number
  default     = 30

  validation {
    condition     = var.lake_nearline_after_days >= 1
    error_message = "lake_nearline_after_days must be at least 1."
  }
}

variable "lake_retention_days" {
  description = "Age in days after which lake objects are deleted; 0 keeps them forever."
  type        = number
  default     = 0

  validation {
    condition     = var.lake_retention_days >= 0
    error_message = "lake_retention_days must be 0 (keep forever) or a positive number of days."
  }
}

variable "lake_noncurrent_retention_days" {
  description = "Days an overwritten or deleted lake object stays restorable (object versioning) before it is deleted."
  type        = number
  default     = 7

  validation {
    condition     = var.lake_noncurrent_retention_days >= 1
    error_message = "lake_noncurrent_retention_days must be at least 1."
  }
}

variable "dataflow_scratch_retention_days" {
  description = "Age in days after which Dataflow temp and staging files are deleted."
  type        = number
  default     = 7

  validation {
    condition     = var.dataflow_scratch_retention_days >= 1
    error_message = "dataflow_scratch_retention_days must be at least 1."
  }
}

# --- Cloud SQL ---

variable "sql_tier" {
  description = "Cloud SQL machine tier (Enterprise edition), e.g. db-custom-2-7680 or db-g1-small for a trial."
  type        = string
  default     = "db-custom-2-7680"
}

variable "sql_availability_type" {
  description = "ZONAL (one zone) or REGIONAL (high availability with a standby in another zone)."
  type        = string
  default     = "ZONAL"

  validation {
    condition     = contains(["ZONAL", "REGIONAL"], var.sql_availability_type)
    error_message = "sql_availability_type must be ZONAL or REGIONAL."
  }
}

variable "sql_disk_size_gb" {
  description = "Initial SSD size in GB; it grows automatically."
  type        = number
  default     = 20

  validation {
    condition     = var.sql_disk_size_gb >= 10
    error_message = "sql_disk_size_gb must be at least 10."
  }
}

variable "sql_deletion_protection" {
  description = "Protect the Cloud SQL instance from deletion (Terraform and the Cloud SQL API). Set false, apply, then destroy to tear down."
  type        = bool
  default     = true
}

variable "sql_backup_start_time" {
  description = "Daily backup window start, HH:MM in UTC."
  type        = string
  default     = "02:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.sql_backup_start_time))
    error_message = "sql_backup_start_time must be HH:MM (24-hour, UTC)."
  }
}

variable "sql_retained_backups" {
  description = "Number of daily backups kept."
  type        = number
  default     = 7

  validation {
    condition     = var.sql_retained_backups >= 1 && var.sql_retained_backups <= 365
    error_message = "sql_retained_backups must be between 1 and 365."
  }
}

variable "sql_maintenance_day" {
  description = "Maintenance window day, 1 (Monday) to 7 (Sunday). Markets are closed at the weekend."
  type        = number
  default     = 7

  validation {
    condition     = var.sql_maintenance_day >= 1 && var.sql_maintenance_day <= 7
    error_message = "sql_maintenance_day must be between 1 (Monday) and 7 (Sunday)."
  }
}

variable "sql_maintenance_hour" {
  description = "Maintenance window hour, 0-23 UTC."
  type        = number
  default     = 3

  validation {
    condition     = var.sql_maintenance_hour >= 0 && var.sql_maintenance_hour <= 23
    error_message = "sql_maintenance_hour must be between 0 and 23."
  }
}

variable "sql_database_name" {
  description = "Name of the PostgreSQL database."
  type        = string
  default     = "alphastream"
}

variable "sql_user_name" {
  description = "PostgreSQL user of the pipeline and the API (its password is generated and kept in Secret Manager)."
  type        = string
  default     = "alphastream"
}

variable "db_password_length" {
  description = "Length of the generated database password."
  type        = number
  default     = 32

  validation {
    condition     = var.db_password_length >= 20
    error_message = "db_password_length must be at least 20."
  }
}

variable "credentials_version" {
  description = "Version of the generated database password and API key: bump it to generate new ones and write them to Cloud SQL and Secret Manager (they are never stored in the Terraform state)."
  type        = number
  default     = 1

  validation {
    condition     = var.credentials_version >= 1
    error_message = "credentials_version must be 1 or more; increase it to rotate."
  }
}

variable "api_key_length" {
  description = "Length of the generated REST API key."
  type        = number
  default     = 40

  validation {
    condition     = var.api_key_length >= 24
    error_message = "api_key_length must be at least 24."
  }
}

# --- images ---

variable "untagged_image_retention_days" {
  description = "Untagged images in Artifact Registry older than this are deleted."
  type        = number
  default     = 14

  validation {
    condition     = var.untagged_image_retention_days >= 1
    error_message = "untagged_image_retention_days must be at least 1."
  }
}

variable "api_image" {
  description = "Container image of the REST API (and the migrations): terraform/gcp/images/Dockerfile --target api, e.g. REGION-docker.pkg.dev/PROJECT/alphastream/api:TAG."
  type        = string
}

variable "dashboard_image" {
  description = "Container image of the dashboard: terraform/gcp/images/Dockerfile --target dashboard."
  type        = string
}

variable "ingestion_image" {
  description = "Container image of the ingestion service: terraform/gcp/images/Dockerfile --target ingestion."
  type        = string
}

variable "pipeline_image" {
  description = "Container image of the pipeline (terraform/gcp/images/pipeline.Dockerfile): the Dataflow workers' SDK container and the Flex Template launcher."
  type        = string
}

# --- REST API ---

variable "api_min_instances" {
  description = "Minimum warm API instances (0 scales to zero when idle)."
  type        = number
  default     = 0
}

variable "api_max_instances" {
  description = "Maximum API instances; bounds the number of database connections."
  type        = number
  default     = 4

  validation {
    condition     = var.api_max_instances >= 1
    error_message = "api_max_instances must be at least 1."
  }
}

variable "api_cpu" {
  description = "CPU limit of one API instance, e.g. \"1\"."
  type        = string
  default     = "1"
}

variable "api_memory" {
  description = "Memory limit of one API instance, e.g. \"512Mi\"."
  type        = string
  default     = "512Mi"
}

variable "api_db_pool_max_size" {
  description = "Database connections one API instance may hold; api_max_instances x this must stay under the Cloud SQL tier's connection limit."
  type        = number
  default     = 8

  validation {
    condition     = var.api_db_pool_max_size >= 1
    error_message = "api_db_pool_max_size must be at least 1."
  }
}

variable "api_allow_unauthenticated" {
  description = "Make the API public (allUsers invoker); requests still need the X-API-Key. Off (the default): only IAM members with run.invoker (the dashboard, api_invokers) reach it."
  type        = bool
  default     = false
}

variable "api_invokers" {
  description = "IAM members, besides the dashboard, allowed to call the private API (they send an ID token and the X-API-Key), e.g. [\"serviceAccount:ci@P.iam.gserviceaccount.com\"]."
  type        = list(string)
  default     = []
}

# --- dashboard ---

variable "dashboard_min_instances" {
  description = "Minimum warm dashboard instances."
  type        = number
  default     = 0
}

variable "dashboard_max_instances" {
  description = "Maximum dashboard instances."
  type        = number
  default     = 2

  validation {
    condition     = var.dashboard_max_instances >= 1
    error_message = "dashboard_max_instances must be at least 1."
  }
}

variable "dashboard_cpu" {
  description = "CPU limit of one dashboard instance."
  type        = string
  default     = "1"
}

variable "dashboard_memory" {
  description = "Memory limit of one dashboard instance."
  type        = string
  default     = "1Gi"
}

variable "dashboard_allow_unauthenticated" {
  description = "Make the dashboard public (allUsers invoker). Off: open it with `gcloud run services proxy` as one of dashboard_viewers."
  type        = bool
  default     = false
}

variable "dashboard_viewers" {
  description = "IAM members allowed to open the dashboard, e.g. [\"user:ana@example.com\", \"group:traders@example.com\"]."
  type        = list(string)
  default     = []
}

# --- ingestion ---

variable "ingestion_source" {
  description = "Feed the ingestion service reads (python -m ingestion --source). Feeds that need a key read it from the Secret Manager secret <name_prefix>-<source>-api-key."
  type        = string
  default     = "synthetic"

  validation {
    condition     = contains(["synthetic", "replay", "coinbase", "kraken", "binance", "finnhub", "polygon", "alphavantage", "yahoo"], var.ingestion_source)
    error_message = "ingestion_source must be one of the sources of python -m ingestion --help."
  }
}

variable "ingestion_args" {
  description = "Extra flags for python -m ingestion after --source and --topic, e.g. [\"--symbols\", \"BTC-USD,ETH-USD\"] or [\"--rate\", \"200\"]."
  type        = list(string)
  default     = []
}

variable "ingestion_instances" {
  description = "Ingestion worker instances; 1 per feed connection, 0 pauses ingestion."
  type        = number
  default     = 1

  validation {
    condition     = var.ingestion_instances >= 0
    error_message = "ingestion_instances must be 0 or more."
  }
}

variable "ingestion_cpu" {
  description = "CPU limit of one ingestion instance."
  type        = string
  default     = "1"
}

variable "ingestion_memory" {
  description = "Memory limit of one ingestion instance."
  type        = string
  default     = "512Mi"
}

# --- Dataflow ---

variable "dataflow_job_name" {
  description = "Name of the streaming Dataflow job (reuse it with --update to replace a running job in place)."
  type        = string
  default     = "alphastream-bars"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]*[a-z0-9])?$", var.dataflow_job_name))
    error_message = "dataflow_job_name must be lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "dataflow_machine_type" {
  description = "Machine type of the Dataflow workers."
  type        = string
  default     = "n2-standard-2"
}

variable "dataflow_min_workers" {
  description = "Workers the streaming job starts with (--num_workers); autoscaling moves between this and dataflow_max_workers."
  type        = number
  default     = 1

  validation {
    condition     = var.dataflow_min_workers >= 1
    error_message = "dataflow_min_workers must be at least 1."
  }
}

variable "dataflow_max_workers" {
  description = "Upper bound of Dataflow autoscaling (--max_num_workers); also bounds the sink's database connections."
  type        = number
  default     = 4

  validation {
    condition     = var.dataflow_max_workers >= 1
    error_message = "dataflow_max_workers must be at least 1."
  }
}

variable "dataflow_extra_args" {
  description = "Extra pipeline flags for the launch command, e.g. [\"--intervals\", \"1m,5m,1h\", \"--allowed_lateness\", \"600\"]."
  type        = list(string)
  default     = []
}

variable "pipeline_launchers" {
  description = "IAM members allowed to launch the Dataflow job as the pipeline service account (roles/iam.serviceAccountUser), e.g. [\"user:ana@example.com\"]."
  type        = list(string)
  default     = []
}
