# The streaming pipeline on Dataflow.
#
# Terraform provisions everything the job needs (subscription, buckets, network, service
# account, DSN secret) and outputs the exact launch command; the job itself is started with
# that command rather than a google_dataflow_flex_template_job, because:
#  * the pipeline turns streaming on with Beam's --streaming switch, which a flex template can
#    only pass as --streaming=true, and Beam's parser rejects that form;
#  * job parameters would put the database DSN into the Terraform state and the Dataflow UI;
#  * a running streaming job is updated (--update) or drained, never destroyed and re-created,
#    which is what Terraform does when a job parameter changes.
# docs/deploy.md shows the command; tests/test_terraform.py parses these arguments with the
# pipeline's own option parser.

locals {
  dataflow_launch_args = concat([
    "--runner", "DataflowRunner",
    "--streaming",
    "--project", var.project_id,
    "--region", var.region,
    "--job_name", var.dataflow_job_name,
    "--source", "pubsub",
    "--subscription", google_pubsub_subscription.pipeline.id,
    "--output", local.lake_root,
    "--temp_location", local.dataflow_temp,
    "--staging_location", local.dataflow_staging,
    "--service_account_email", google_service_account.pipeline.email,
    "--subnetwork", "regions/${var.region}/subnetworks/${google_compute_subnetwork.main.name}",
    "--no_use_public_ips",
    "--enable_streaming_engine",
    "--worker_machine_type", var.dataflow_machine_type,
    "--max_num_workers", tostring(var.dataflow_max_workers),
    "--setup_file", "./setup.py",
  ], var.dataflow_extra_args)

  # The DSN is read from Secret Manager at launch time, never written into this configuration.
  dataflow_db_url_shell = "\"$(gcloud secrets versions access latest --secret=${google_secret_manager_secret.pipeline_db_url.secret_id} --project=${var.project_id})\""
}
