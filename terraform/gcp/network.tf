# A private network: Cloud SQL has a private IP only, Dataflow workers run without public IPs,
# and the API reaches the database through Cloud Run's direct VPC egress. There is no NAT: the
# workers' image carries every dependency, and Google APIs (Pub/Sub, GCS, Secret Manager,
# Artifact Registry) are reached through Private Google Access.

resource "google_compute_network" "main" {
  name                    = "${var.name_prefix}-vpc"
  auto_create_subnetworks = false

  depends_on = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "main" {
  name          = "${var.name_prefix}-${var.region}"
  region        = var.region
  network       = google_compute_network.main.id
  ip_cidr_range = var.subnet_cidr
  # Workers without public IPs still reach Pub/Sub, GCS and Secret Manager.
  private_ip_google_access = true

  # Flow logs, sampled: enough to investigate traffic between the workers, Cloud Run and Cloud SQL.
  log_config {
    aggregation_interval = "INTERVAL_5_MIN"
    flow_sampling        = 0.1
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Private services access: the address range Cloud SQL's private IP comes from.
resource "google_compute_global_address" "private_services" {
  name          = "${var.name_prefix}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_services_prefix_length
  network       = google_compute_network.main.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.main.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
  # Deleting the peering fails while Cloud SQL still holds addresses (it releases them minutes
  # after the instance is gone); abandoning lets destroy finish and the network deletion frees it.
  deletion_policy = "ABANDON"
}

# Dataflow workers exchange shuffle data on TCP 12345-12346; the rule Dataflow documents.
resource "google_compute_firewall" "dataflow_workers" {
  name        = "${var.name_prefix}-dataflow-workers"
  network     = google_compute_network.main.id
  direction   = "INGRESS"
  source_tags = ["dataflow"]
  target_tags = ["dataflow"]

  allow {
    protocol = "tcp"
    ports    = ["12345-12346"]
  }
}
