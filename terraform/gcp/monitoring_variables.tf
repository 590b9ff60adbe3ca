variable "alert_notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) every alert policy notifies; empty: alerts show in the console only."
  type        = list(string)
  default     = []
}

variable "alert_watermark_age_seconds" {
  description = "Alert when the Dataflow job's data watermark is older than this many seconds."
  type        = number
  default     = 600
}

variable "alert_system_lag_seconds" {
  description = "Alert when the Dataflow job's system lag exceeds this many seconds."
  type        = number
  default     = 300
}

variable "alert_oldest_unacked_seconds" {
  description = "Alert when the pipeline subscription's oldest unacknowledged message is older than this many seconds."
  type        = number
  default     = 600
}

variable "alert_dead_letters_per_minute" {
  description = "Alert when the pipeline dead-letters more ticks than this per minute (Beam counter ticks_dead_lettered)."
  type        = number
  default     = 60
}

variable "alert_api_5xx_per_second" {
  description = "Alert when the API answers more 5xx responses than this per second."
  type        = number
  default     = 1
}

variable "alert_api_p99_latency_ms" {
  description = "Alert when the API's 99th percentile request latency exceeds this many milliseconds."
  type        = number
  default     = 1000
}

variable "alert_sql_cpu_utilization" {
  description = "Alert when Cloud SQL CPU utilisation (0-1) stays above this."
  type        = number
  default     = 0.85
}

variable "alert_sql_disk_utilization" {
  description = "Alert when Cloud SQL disk utilisation (0-1) exceeds this."
  type        = number
  default     = 0.8
}
