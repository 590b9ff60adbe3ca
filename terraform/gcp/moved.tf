# Where each grant lived before grants of one kind became one for_each resource (iam.tf): an
# existing deployment moves them in its state instead of revoking and granting them again.

moved {
  from = google_project_iam_member.pipeline_dataflow_worker
  to   = google_project_iam_member.grant["pipeline_dataflow_worker"]
}

moved {
  from = google_project_iam_member.api_cloudsql_client
  to   = google_project_iam_member.grant["api_cloudsql_client"]
}

moved {
  from = google_pubsub_subscription_iam_member.pipeline_subscriber
  to   = google_pubsub_subscription_iam_member.pipeline["roles/pubsub.subscriber"]
}

moved {
  from = google_pubsub_subscription_iam_member.pipeline_viewer
  to   = google_pubsub_subscription_iam_member.pipeline["roles/pubsub.viewer"]
}

moved {
  from = google_storage_bucket_iam_member.pipeline_lake
  to   = google_storage_bucket_iam_member.pipeline["pipeline_lake"]
}

moved {
  from = google_storage_bucket_iam_member.pipeline_dataflow_scratch
  to   = google_storage_bucket_iam_member.pipeline["pipeline_dataflow_scratch"]
}

moved {
  from = google_secret_manager_secret_iam_member.pipeline_db_url
  to   = google_secret_manager_secret_iam_member.accessor["pipeline_db_url"]
}

moved {
  from = google_secret_manager_secret_iam_member.api_db_url
  to   = google_secret_manager_secret_iam_member.accessor["api_db_url"]
}

moved {
  from = google_secret_manager_secret_iam_member.api_key
  to   = google_secret_manager_secret_iam_member.accessor["api_key"]
}

moved {
  from = google_secret_manager_secret_iam_member.dashboard_api_key
  to   = google_secret_manager_secret_iam_member.accessor["dashboard_api_key"]
}

moved {
  from = google_secret_manager_secret_iam_member.ingestion_feed_api_key[0]
  to   = google_secret_manager_secret_iam_member.accessor["ingestion_feed_api_key"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.dashboard_invokes_api
  to   = google_cloud_run_v2_service_iam_member.invoker["dashboard_invokes_api"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.api_public[0]
  to   = google_cloud_run_v2_service_iam_member.invoker["api_public"]
}

moved {
  from = google_cloud_run_v2_service_iam_member.dashboard_public[0]
  to   = google_cloud_run_v2_service_iam_member.invoker["dashboard_public"]
}
