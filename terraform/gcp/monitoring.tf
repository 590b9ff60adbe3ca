# Cloud Monitoring: alert policies on what Dataflow, Pub/Sub, Cloud Run and Cloud SQL emit, and
# one dashboard. docs/alerts.md is the runbook; tests/deploy/test_gcp_monitoring.py parses every policy
# and the dashboard into google-cloud-monitoring types and checks each metric type is real.

locals {
  # One threshold policy per entry: [metric filter, threshold, aligner, reducer, duration].
  threshold_alerts = {
    dataflow-watermark-age = {
      display_name = "Dataflow data watermark age"
      filter       = "resource.type = \"dataflow_job\" AND metric.type = \"dataflow.googleapis.com/job/data_watermark_age\" AND resource.label.job_name = \"${var.dataflow_job_name}\""
      threshold    = var.alert_watermark_age_seconds
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_MAX"
      duration     = "300s"
      runbook      = "Bars are late: the pipeline's event time is behind. See docs/alerts.md#barwritelag."
    }
    dataflow-system-lag = {
      display_name = "Dataflow system lag"
      filter       = "resource.type = \"dataflow_job\" AND metric.type = \"dataflow.googleapis.com/job/system_lag\" AND resource.label.job_name = \"${var.dataflow_job_name}\""
      threshold    = var.alert_system_lag_seconds
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_MAX"
      duration     = "300s"
      runbook      = "Elements wait too long in the pipeline: add workers or check the sinks. See docs/alerts.md#barwritelag."
    }
    dataflow-job-failed = {
      display_name = "Dataflow job failed"
      filter       = "resource.type = \"dataflow_job\" AND metric.type = \"dataflow.googleapis.com/job/is_failed\" AND resource.label.job_name = \"${var.dataflow_job_name}\""
      threshold    = 0
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_MAX"
      duration     = "0s"
      runbook      = "The streaming job failed: read its error in the Dataflow console, fix, relaunch with the command in docs/deploy.md, then repair the lost range."
    }
    pubsub-oldest-unacked = {
      display_name = "Pub/Sub backlog age (pipeline subscription)"
      filter       = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND resource.label.subscription_id = \"${google_pubsub_subscription.pipeline.name}\""
      threshold    = var.alert_oldest_unacked_seconds
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_MAX"
      duration     = "300s"
      runbook      = "Ticks wait unread: the job is stopped or too slow. See docs/alerts.md#barwritelag."
    }
    pipeline-dead-letters = {
      display_name = "Pipeline dead letters"
      filter       = "resource.type = \"dataflow_job\" AND metric.type = \"dataflow.googleapis.com/job/user_counter\" AND metric.label.metric_name = \"ticks_dead_lettered\" AND resource.label.job_name = \"${var.dataflow_job_name}\""
      threshold    = var.alert_dead_letters_per_minute / 60
      aligner      = "ALIGN_RATE"
      reducer      = "REDUCE_SUM"
      duration     = "300s"
      runbook      = "See docs/alerts.md#deadletterrate."
    }
    api-5xx = {
      display_name = "API 5xx responses"
      filter       = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\" AND resource.label.service_name = \"${google_cloud_run_v2_service.api.name}\""
      threshold    = var.alert_api_5xx_per_second
      aligner      = "ALIGN_RATE"
      reducer      = "REDUCE_SUM"
      duration     = "300s"
      runbook      = "See docs/alerts.md#apihigherrorrate."
    }
    api-latency-p99 = {
      display_name = "API p99 latency"
      filter       = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_latencies\" AND resource.label.service_name = \"${google_cloud_run_v2_service.api.name}\""
      threshold    = var.alert_api_p99_latency_ms
      aligner      = "ALIGN_PERCENTILE_99"
      reducer      = "REDUCE_MAX"
      duration     = "600s"
      runbook      = "See docs/alerts.md#apihighlatencyp99."
    }
    sql-cpu = {
      display_name = "Cloud SQL CPU"
      filter       = "resource.type = \"cloudsql_database\" AND metric.type = \"cloudsql.googleapis.com/database/cpu/utilization\" AND resource.label.database_id = \"${var.project_id}:${google_sql_database_instance.main.name}\""
      threshold    = var.alert_sql_cpu_utilization
      aligner      = "ALIGN_MEAN"
      reducer      = "REDUCE_MAX"
      duration     = "900s"
      runbook      = "PostgreSQL is CPU-bound: slow queries, a missing index, or a larger tier (sql_tier). See docs/alerts.md#databaseunreachable."
    }
    sql-disk = {
      display_name = "Cloud SQL disk"
      filter       = "resource.type = \"cloudsql_database\" AND metric.type = \"cloudsql.googleapis.com/database/disk/utilization\" AND resource.label.database_id = \"${var.project_id}:${google_sql_database_instance.main.name}\""
      threshold    = var.alert_sql_disk_utilization
      aligner      = "ALIGN_MAX"
      reducer      = "REDUCE_MAX"
      duration     = "300s"
      runbook      = "The database disk is filling: raise sql_disk_size_gb (or enable auto-resize), prune old ticks."
    }
  }
}

resource "google_monitoring_alert_policy" "threshold" {
  for_each = local.threshold_alerts

  project               = var.project_id
  display_name          = "${var.name_prefix}: ${each.value.display_name}"
  combiner              = "OR"
  notification_channels = var.alert_notification_channels
  user_labels           = var.labels

  conditions {
    display_name = each.value.display_name
    condition_threshold {
      filter          = each.value.filter
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = each.value.duration
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = each.value.aligner
        cross_series_reducer = each.value.reducer
      }
      trigger {
        count = 1
      }
    }
  }

  documentation {
    content   = each.value.runbook
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_dashboard" "alphastream" {
  project        = var.project_id
  dashboard_json = file("${path.module}/monitoring_dashboard.json")
}
