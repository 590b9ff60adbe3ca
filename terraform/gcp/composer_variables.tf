# Cloud Composer (composer.tf): off by default; the DAGs also run on any Airflow 3.

variable "composer_enabled" {
  description = "Create a Cloud Composer 3 environment that runs the alphastream DAGs (orchestration/dags) with the back-fill on Dataflow."
  type        = bool
  default     = false
}

variable "composer_image_version" {
  description = "Composer image (composer-3-airflow-X.Y.Z[-build.N]); the DAGs need Airflow 3. List: gcloud composer environments list-image-versions --location REGION."
  type        = string
  default     = "composer-3-airflow-3.1.0"

  validation {
    condition     = can(regex("^composer-3-airflow-3\\.", var.composer_image_version))
    error_message = "The DAGs use Airflow 3's task SDK: pick a composer-3-airflow-3.x image."
  }
}

variable "composer_environment_size" {
  description = "Composer environment size: ENVIRONMENT_SIZE_SMALL, _MEDIUM or _LARGE."
  type        = string
  default     = "ENVIRONMENT_SIZE_SMALL"

  validation {
    condition     = contains(["ENVIRONMENT_SIZE_SMALL", "ENVIRONMENT_SIZE_MEDIUM", "ENVIRONMENT_SIZE_LARGE"], var.composer_environment_size)
    error_message = "composer_environment_size must be ENVIRONMENT_SIZE_SMALL, ENVIRONMENT_SIZE_MEDIUM or ENVIRONMENT_SIZE_LARGE."
  }
}

variable "composer_ticks_glob" {
  description = "The back-fill's tick files of a day, gs://...; {date} becomes the run's YYYY-MM-DD. Empty: the lake bucket's ticks/{date}/*."
  type        = string
  default     = ""
}
