output "api_url" {
  description = "URL of the REST API (Cloud Run); send the key from the api_key_secret secret as X-API-Key."
  value       = google_cloud_run_v2_service.api.uri
}

output "dashboard_url" {
  description = "URL of the dashboard (Cloud Run)."
  value       = google_cloud_run_v2_service.dashboard.uri
}

output "api_key_secret" {
  description = "Secret Manager secret holding the REST API key (gcloud secrets versions access latest --secret=...)."
  value       = google_secret_manager_secret.api_key.secret_id
}

output "db_password_secret" {
  description = "Secret Manager secret holding the database user's password."
  value       = google_secret_manager_secret.db_password.secret_id
}

output "pipeline_db_url_secret" {
  description = "Secret Manager secret holding the pipeline's DSN (private IP, TLS); the workers read it (--db_url_secret)."
  value       = google_secret_manager_secret.pipeline_db_url.secret_id
}

output "feed_api_key_secret" {
  description = "Secret Manager secret to add the feed's API key to (null when the feed needs none)."
  value       = local.feed_needs_key ? google_secret_manager_secret.feed_api_key[0].secret_id : null
}

output "ticks_topic" {
  description = "Pub/Sub topic the ingestion service publishes ticks to (projects/P/topics/T, the form --topic takes)."
  value       = google_pubsub_topic.ticks.id
}

output "pipeline_subscription" {
  description = "Pub/Sub subscription the pipeline reads (projects/P/subscriptions/S, the form --subscription takes)."
  value       = google_pubsub_subscription.pipeline.id
}

output "lake_url" {
  description = "Root of the Parquet lake (the pipeline's --output)."
  value       = local.lake_root
}

output "sql_connection_name" {
  description = "Cloud SQL connection name (PROJECT:REGION:INSTANCE), for the Cloud SQL Auth Proxy."
  value       = google_sql_database_instance.main.connection_name
}

output "sql_private_ip" {
  description = "Private IP of the Cloud SQL instance, reachable from the VPC only."
  value       = google_sql_database_instance.main.private_ip_address
}

output "image_repository" {
  description = "Artifact Registry path to tag images with: REGION-docker.pkg.dev/PROJECT/REPOSITORY."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "pipeline_service_account" {
  description = "Service account the Dataflow workers run as."
  value       = google_service_account.pipeline.email
}

output "dataflow_launch_args" {
  description = "Flags of python -m pipeline for the streaming Dataflow job (the DSN comes from Secret Manager, on the workers)."
  value       = local.dataflow_launch_args
}

output "dataflow_launch_command" {
  description = "Shell command that starts the streaming Dataflow job; run it from the repository root."
  value       = "python -m pipeline ${join(" ", local.dataflow_launch_args)}"
}

output "migrate_job" {
  description = "Cloud Run job that applies the schema migrations: gcloud run jobs execute NAME --region REGION --wait."
  value       = google_cloud_run_v2_job.migrate.name
}

output "ingestion_worker_pool" {
  description = "Cloud Run worker pool running the ingestion service."
  value       = google_cloud_run_v2_worker_pool.ingestion.name
}

output "dataflow_bucket" {
  description = "Bucket for Dataflow's temp and staging files and the Flex Template spec (templates/)."
  value       = google_storage_bucket.dataflow.name
}

output "dataflow_subnetwork" {
  description = "Subnetwork the Dataflow workers run in, in the form --subnetwork takes."
  value       = "regions/${var.region}/subnetworks/${google_compute_subnetwork.main.name}"
}
