# Cloud SQL for PostgreSQL 15: the bars and dead-letter store. Private IP only, TLS required,
# daily backups with point-in-time recovery. (TimescaleDB is not offered on Cloud SQL: the
# schema uses native partitioning, so plain PostgreSQL 15 is all it needs.)

resource "google_sql_database_instance" "main" {
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

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.main.id
      ssl_mode        = "ENCRYPTED_ONLY"
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

# Letters and digits only, so the password needs no escaping inside a DSN.
resource "random_password" "db" {
  length  = var.db_password_length
  special = false
}

resource "google_sql_user" "alphastream" {
  name     = var.sql_user_name
  instance = google_sql_database_instance.main.name
  password = random_password.db.result
  # The user owns the tables the migrations create; PostgreSQL refuses to drop such a user, so
  # on destroy it is left to go with the instance.
  deletion_policy = "ABANDON"
}

locals {
  # The API connects through Cloud Run's Cloud SQL volume: a Unix socket, encrypted by the
  # connector itself. psycopg takes the socket folder as the host query parameter.
  api_db_url = format(
    "postgresql://%s:%s@/%s?host=/cloudsql/%s",
    google_sql_user.alphastream.name, random_password.db.result,
    google_sql_database.alphastream.name, google_sql_database_instance.main.connection_name,
  )
  # Dataflow workers connect over the VPC to the private IP, with TLS (the instance refuses
  # unencrypted connections).
  pipeline_db_url = format(
    "postgresql://%s:%s@%s:5432/%s?sslmode=require",
    google_sql_user.alphastream.name, random_password.db.result,
    google_sql_database_instance.main.private_ip_address, google_sql_database.alphastream.name,
  )
}
