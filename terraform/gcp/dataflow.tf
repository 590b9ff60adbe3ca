# The streaming pipeline on Dataflow.
#
# Terraform provisions everything the job needs (subscription, buckets, network, service
# account, DSN secret) and outputs the launch command; it does not start the job itself
# (no google_dataflow_flex_template_job), because a streaming job's life is not a resource's:
#  * it is updated in place (--update, with --transform_name_mapping when steps are renamed)
#    or drained, from the CI step that built the new image, and Terraform would instead
#    replace it or need a second apply after every image build;
#  * terraform destroy would drain it as a side effect of tearing down the network it runs in;
#  * apply would wait on a job that needs an image pushed and migrations run first.
# docs/deploy.md shows both launches (python -m pipeline, gcloud dataflow flex-template run);
# tests/deploy/test_terraform.py parses these arguments with the pipeline's own option parser and
# checks the alphastream ones are Flex Template parameters.

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
    # Workers run the pipeline image (terraform/gcp/images/pipeline.Dockerfile): the project and
    # its dependencies are installed in it, so nothing is pip-installed when a worker starts.
    "--sdk_container_image", var.pipeline_image,
    "--worker_machine_type", var.dataflow_machine_type,
    "--num_workers", tostring(var.dataflow_min_workers),
    "--max_num_workers", tostring(var.dataflow_max_workers),
    "--autoscaling_algorithm", "THROUGHPUT_BASED",
    "--labels", "app=${var.name_prefix}",
    "--labels", "component=bars",
  ], var.dataflow_extra_args)
}
