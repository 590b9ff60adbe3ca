# Cloud Run: the REST API and the dashboard as services, the ingestion feed as a worker pool
# (it publishes to Pub/Sub and serves no HTTP, so a service's port health check would kill it).

locals {
  # Environment variable names exactly as the Python settings read them (ENV_PREFIX + field
  # name, upper case); tests/deploy/test_terraform.py checks them against the settings classes.
  env = {
    db_url            = "ALPHASTREAM_DB_URL"
    api_key           = "ALPHASTREAM_API_KEY"
    api_url           = "ALPHASTREAM_API_URL"
    api_host          = "ALPHASTREAM_API_HOST"
    api_port          = "ALPHASTREAM_API_PORT"
    api_pool_max_size = "ALPHASTREAM_API_POOL_MAX_SIZE"
    dash_host         = "ALPHASTREAM_DASH_HOST"
    dash_api_audience = "ALPHASTREAM_DASH_API_AUDIENCE"
    dash_port         = "ALPHASTREAM_DASH_PORT"
  }

  # The API's liveness route (serving/routes/health.py): answers without touching the database.
  api_health_path = "/healthz"

  # Feeds that need an API key, and the variable ingestion.settings reads it from.
  feed_api_key_env = {
    finnhub      = "ALPHASTREAM_FINNHUB_API_KEY"
    polygon      = "ALPHASTREAM_POLYGON_API_KEY"
    alphavantage = "ALPHASTREAM_ALPHAVANTAGE_API_KEY"
  }
  feed_needs_key = contains(keys(local.feed_api_key_env), var.ingestion_source)
  feed_api_key_secrets = local.feed_needs_key ? {
    (local.feed_api_key_env[var.ingestion_source]) = google_secret_manager_secret.feed_api_key[0].secret_id
  } : {}

  # Listen on every interface inside the container, on Cloud Run's port.
  listen_all = "0.0.0.0"
}

resource "google_cloud_run_v2_service" "api" {
  name                = "${var.name_prefix}-api"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false

  template {
    service_account = google_service_account.api.email

    scaling {
      min_instance_count = var.api_min_instances
      max_instance_count = var.api_max_instances
    }

    # Direct VPC egress: the Cloud SQL connector reaches the instance's private IP through it.
    vpc_access {
      egress = "PRIVATE_RANGES_ONLY"
      network_interfaces {
        network    = google_compute_network.main.id
        subnetwork = google_compute_subnetwork.main.id
      }
    }

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.main.connection_name]
      }
    }

    containers {
      image   = var.api_image
      command = ["python", "-m", "serving"]

      ports {
        container_port = local.container_port
      }

      env {
        name  = local.env.api_host
        value = local.listen_all
      }

      env {
        name  = local.env.api_port
        value = tostring(local.container_port)
      }

      # Each instance holds up to this many connections: instances x pool must fit the tier.
      env {
        name  = local.env.api_pool_max_size
        value = tostring(var.api_db_pool_max_size)
      }

      env {
        name = local.env.db_url
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.api_db_url.secret_id
            version = "latest"
          }
        }
      }

      env {
        name = local.env.api_key
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.api_key.secret_id
            version = "latest"
          }
        }
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }

      resources {
        limits = {
          cpu    = var.api_cpu
          memory = var.api_memory
        }
      }

      startup_probe {
        http_get {
          path = local.api_health_path
        }
      }

      liveness_probe {
        http_get {
          path = local.api_health_path
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_version.api_db_url,
    google_secret_manager_secret_version.api_key,
    google_secret_manager_secret_iam_member.accessor,
    google_project_iam_member.grant,
  ]
}

resource "google_cloud_run_v2_service" "dashboard" {
  name                = "${var.name_prefix}-dashboard"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false

  template {
    service_account = google_service_account.dashboard.email

    scaling {
      min_instance_count = var.dashboard_min_instances
      max_instance_count = var.dashboard_max_instances
    }

    containers {
      image   = var.dashboard_image
      command = ["python", "-m", "dash_app"]

      ports {
        container_port = local.container_port
      }

      env {
        name  = local.env.api_url
        value = google_cloud_run_v2_service.api.uri
      }

      # The API is private: the dashboard sends an ID token for this audience (its URL).
      env {
        name  = local.env.dash_api_audience
        value = google_cloud_run_v2_service.api.uri
      }

      env {
        name  = local.env.dash_host
        value = local.listen_all
      }

      env {
        name  = local.env.dash_port
        value = tostring(local.container_port)
      }

      env {
        name = local.env.api_key
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.api_key.secret_id
            version = "latest"
          }
        }
      }

      resources {
        limits = {
          cpu    = var.dashboard_cpu
          memory = var.dashboard_memory
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.accessor]
}

resource "google_cloud_run_v2_worker_pool" "ingestion" {
  name                = "${var.name_prefix}-ingestion"
  location            = var.region
  launch_stage        = "BETA"
  deletion_protection = false

  # One instance per feed connection; 0 pauses ingestion without deleting anything.
  scaling {
    manual_instance_count = var.ingestion_instances
  }

  template {
    service_account = google_service_account.ingestion.email

    containers {
      image   = var.ingestion_image
      command = ["python", "-m", "ingestion"]
      args    = concat(["--source", var.ingestion_source, "--topic", google_pubsub_topic.ticks.id], var.ingestion_args)

      dynamic "env" {
        for_each = local.feed_api_key_secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }

      resources {
        limits = {
          cpu    = var.ingestion_cpu
          memory = var.ingestion_memory
        }
      }
    }
  }

  # The API reports the launch stage it applied (GA once worker pools leave beta), not the one
  # asked for: without this every plan would show a change.
  lifecycle {
    ignore_changes = [launch_stage]
  }

  depends_on = [
    google_pubsub_topic_iam_member.ingestion_publisher,
    google_secret_manager_secret_iam_member.accessor,
  ]
}

# Schema migrations, run on demand (gcloud run jobs execute): the API's identity, DSN and
# Cloud SQL socket, with python -m store migrate. Remote runners never migrate on their own.
resource "google_cloud_run_v2_job" "migrate" {
  name                = "${var.name_prefix}-migrate"
  location            = var.region
  deletion_protection = false

  template {
    task_count = 1

    template {
      service_account = google_service_account.api.email
      max_retries     = 0

      vpc_access {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.main.id
          subnetwork = google_compute_subnetwork.main.id
        }
      }

      volumes {
        name = "cloudsql"
        cloud_sql_instance {
          instances = [google_sql_database_instance.main.connection_name]
        }
      }

      containers {
        image   = var.api_image
        command = ["python", "-m", "store", "migrate"]

        env {
          name = local.env.db_url
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.api_db_url.secret_id
              version = "latest"
            }
          }
        }

        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_version.api_db_url,
    google_secret_manager_secret_iam_member.accessor,
    google_project_iam_member.grant,
  ]
}
