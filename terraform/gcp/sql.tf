# Cloud SQL for PostgreSQL 15: the bars and dead-letter store. Private IP only, TLS required,
# daily backups with point-in-time recovery. (TimescaleDB is not offered on Cloud SQL: the
# schema uses native partitioning, so plain PostgreSQL 15 is all it needs.)

resource "google_sql_database_instance" "main" {
  # checkov:skip=CKV_GCP_6:Client certificates are not required: Cloud Run's socket is the Cloud SQL connector (its own mTLS) and the Dataflow workers connect over TLS (ENCRYPTED_ONLY) to the private IP with a password.
  # checkov:skip=CKV_GCP_79:The major version is the one the migrations are tested on; moving to a newer one is a planned in-place upgrade after a backup, not a drift to fix.
  # checkov:skip=CKV2_GCP_13:log_duration logs every statement's duration; the sink's COPY per bundle would flood Cloud Logging. Slow statements are found with Query Insights instead.
  name                = "${var.name_prefix}-pg"
  database_version    = "POSTGRES_15"
  region              = var.region
  deletion_protection = var.sql_deletion_protection

  settings {
    tier                        = var.sql_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.sql_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.sql_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.sql_deletion_protection

    # Connection, lock and checkpoint logging for audits and incident review; statements only for
    # DDL (migrations), so the sink's steady writes are not logged one by one.
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }

    database_flags {
      name  = "pgaudit.log"
      value = "ddl,role"
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }

    database_flags {
      name  = "log_connections"
      value = "on"
    }

    database_flags {
      name  = "log_disconnections"
      value = "on"
    }

    database_flags {
      name  = "log_hostname"
      value = "on"
    }

    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }

    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }

    database_flags {
      name  = "log_min_messages"
      value = "error"
    }

    database_flags {
      name  = "log_statement"
      value = "ddl"
    }

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      ssl_mode        = "ENCRYPTED_ONLY"
      # A per-instance CA: what Cloud Run's Cloud SQL socket (the connector) and the workers'
      # sslmode=require connections work with, stated so a provider default cannot switch it.
      server_ca_mode = "GOOGLE_MANAGED_INTERNAL_CA"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = var.sql_backup_start_time
      point_in_time_recovery_enabled = true

      backup_retention_settings {
        retained_backups = var.sql_retained_backups
      }
    }

    maintenance_window {
      day  = var.sql_maintenance_day
      hour = var.sql_maintenance_hour
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "alphastream" {
  name     = var.sql_database_name
  instance = google_sql_database_instance.main.name
}

# Letters and digits only, so the password needs no escaping inside a DSN. Ephemeral: generated
# at apply, written only to write-only arguments, so neither the state nor the plan holds it.
ephemeral "random_password" "db" {
  length  = var.db_password_length
  special = false
}

resource "google_sql_user" "alphastream" {
  name     = var.sql_user_name
  instance = google_sql_database_instance.main.name
  # Written once per credentials_version: bump it to rotate (the DSN secrets follow).
  password_wo         = ephemeral.random_password.db.result
  password_wo_version = var.credentials_version
  # The user owns the tables the migrations create; PostgreSQL refuses to drop such a user, so
  # on destroy it is left to go with the instance.
  deletion_policy = "ABANDON"
}

# Built from the ephemeral password, so ephemeral too: usable only in write-only arguments.
locals {
  # The API connects through Cloud Run's Cloud SQL volume: a Unix socket, encrypted by the
  # connector itself. psycopg takes the socket folder as the host query parameter.
  api_db_url = format(
    "postgresql://%s:%s@/%s?host=/cloudsql/%s",
    google_sql_user.alphastream.name, ephemeral.random_password.db.result,
    google_sql_database.alphastream.name, google_sql_database_instance.main.connection_name,
  )
  # Dataflow workers connect over the VPC to the private IP, with TLS (the instance refuses
  # unencrypted connections).
  pipeline_db_url = format(
    "postgresql://%s:%s@%s:5432/%s?sslmode=require",
    google_sql_user.alphastream.name, ephemeral.random_password.db.result,
    google_sql_database_instance.main.private_ip_address, google_sql_database.alphastream.name,
  )
}
