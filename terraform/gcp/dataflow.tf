# The streaming pipeline on Dataflow.
#
# Terraform provisions everything the job needs (subscription, buckets, network, service
# account, DSN secret) and outputs the exact launch command; the job itself is started with
# that command rather than a google_dataflow_flex_template_job, because:
#  * the pipeline turns streaming on with Beam's --streaming switch, which a flex template can
#    only pass as --streaming=true, and Beam's parser rejects that form;
#  * job parameters would put the database DSN into the Terraform state and the Dataflow UI
#    (the job gets --db_url_secret, the secret's name, instead);
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
    # Only the secret's name: each worker reads the DSN from Secret Manager when its sink starts.
    "--db_url_secret", "projects/${var.project_id}/secrets/${google_secret_manager_secret.pipeline_db_url.secret_id}/versions/latest",
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

}
