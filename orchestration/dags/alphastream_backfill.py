"""alphastream_backfill: one trading day of tick files -> bars, then a data-quality gate.

For each day (``ds``, UTC) it reads that day's tick files (``ticks_glob`` with ``{date}``
replaced, local or gs://), runs the batch pipeline and checks the result
(orchestration.quality). One DAG, two runners, picked by the ``runner`` param:

* ``local``: ``python -m pipeline`` with the project's own interpreter (``python``), as a
  subprocess, through ``orchestration.batch_run`` (which hands the run's counters to XCom);
* ``dataflow``: the Flex Template (``template_gcs_path``) on Dataflow; the counters are the
  job's own metrics.

Catch-up is on (a new deployment back-fills from ``start_date``), one day at a time: the quality
gate compares a day with the days before it. Re-running a day is idempotent: the lake writes one
file per (interval, date, symbol), replaced atomically, and the database upserts by bar key.

    airflow dags test alphastream_backfill 2026-01-24 -c '{"ticks_glob": "data/ticks/{date}/*.csv"}'
"""
from __future__ import annotations

import datetime as dt
import json

from airflow.providers.google.cloud.hooks.dataflow import DataflowHook
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, task
from airflow.task.trigger_rule import TriggerRule
from alphastream_defaults import DB_URL_ENV, IN_PROJECT, START_DATE, TAGS, default_args, project_params, site_defaults

RETRY_DELAY = dt.timedelta(minutes=5)
RUN_TIMEOUT = dt.timedelta(hours=3)
COUNTERS = ("ticks_read", "ticks_unique", "ticks_duplicate", "ticks_dead_lettered")

# The input glob of the run's day; Jinja's sandbox allows str.replace on a param.
INPUT = "{{ params.ticks_glob.replace('{date}', ds) }}"
# No db_url: the pipeline's own default ($ALPHASTREAM_DB_URL on the worker, else its embedded database).
DB_FLAGS = "{% if params.no_db %}--no_db{% elif params.db_url %}--db_url \"$DAG_DB_URL\"{% endif %}"

DAG_ID = "alphastream_backfill"
SITE = site_defaults(DAG_ID)

with DAG(
    dag_id=DAG_ID,
    description="Tick files of a day -> OHLCV bars (lake + PostgreSQL), then a data-quality gate",
    schedule="@daily",
    start_date=START_DATE,
    catchup=True,
    max_active_runs=1,
    default_args=default_args(retry_delay=RETRY_DELAY, execution_timeout=RUN_TIMEOUT),
    params={
        "runner": Param(SITE.get("runner", "local"), enum=["local", "dataflow"],
                        description="where the batch pipeline runs"),
        "ticks_glob": Param(SITE.get("ticks_glob", "data/ticks/{date}/*"), type="string",
                            description="tick files of a day, local or gs://; {date} becomes YYYY-MM-DD"),
        **project_params(SITE, db_url="local runner: PostgreSQL DSN (empty: the worker's ALPHASTREAM_DB_URL)",
                         project_dir="local runner: the alphastream checkout"),
        "no_db": Param(SITE.get("no_db", False), type="boolean", description="write the Parquet lake only"),
        "max_dead_letter_rate": Param(SITE.get("max_dead_letter_rate", 0.01), type="number", minimum=0, maximum=1),
        "min_bar_ratio": Param(SITE.get("min_bar_ratio", 0.5), type="number", minimum=0),
        "gcp_project": Param(SITE.get("gcp_project", ""), type="string", description="dataflow runner: GCP project"),
        "gcp_region": Param(SITE.get("gcp_region", "us-central1"), type="string",
                            description="dataflow runner: region"),
        "template_gcs_path": Param(SITE.get("template_gcs_path", ""), type="string",
                                   description="dataflow runner: gs:// path of the Flex Template spec"),
        "db_url_secret": Param(SITE.get("db_url_secret", ""), type="string",
                               description="dataflow runner (required there): Secret Manager version holding the DSN"),
    },
    tags=TAGS,
) as dag:

    @task.branch
    def choose_runner(params=None) -> str:
        return "run_local" if params["runner"] == "local" else "run_dataflow"

    run_local = BashOperator(
        task_id="run_local",
        bash_command=(IN_PROJECT + " -m orchestration.batch_run -- --source files --input '" + INPUT + "' "
                      "--output '{{ params.lake }}' " + DB_FLAGS),
        env=DB_URL_ENV,
        append_env=True,
        do_xcom_push=True,  # the last stdout line: the counters as JSON
    )

    run_dataflow = DataflowStartFlexTemplateOperator(
        task_id="run_dataflow",
        project_id="{{ params.gcp_project }}",
        location="{{ params.gcp_region }}",
        body={"launchParameter": {
            "jobName": "alphastream-backfill-{{ ds_nodash }}",
            "containerSpecGcsPath": "{{ params.template_gcs_path }}",
            "parameters": {"source": "files", "input": INPUT, "output": "{{ params.lake }}",
                           "db_url_secret": "{{ params.db_url_secret }}"},
        }},
        wait_until_finished=True,
    )

    @task
    def dataflow_counters(params=None, ti=None) -> str:
        """The finished job's alphastream counters (committed values), as the local run prints them."""
        job = ti.xcom_pull(task_ids="run_dataflow")
        metrics = DataflowHook().fetch_job_metrics_by_id(job_id=job["id"], project_id=params["gcp_project"],
                                                         location=params["gcp_region"])
        counters = {name: 0 for name in COUNTERS}
        for metric in metrics.get("metrics", []):
            name, context = metric["name"], metric["name"].get("context", {})
            if name.get("origin") == "user" and name["name"] in counters and context.get("tentative") != "true":
                counters[name["name"]] += int(metric.get("scalar", 0))
        return json.dumps(counters, sort_keys=True)

    quality = BashOperator(
        task_id="data_quality",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
        retries=0,  # a failed check is a finding, not a flake
        bash_command=(IN_PROJECT + " -m orchestration.quality --counters \"$RUN_COUNTERS\" "
                      "--lake '{{ params.lake }}' --date {{ ds }} "
                      "--max_dead_letter_rate {{ params.max_dead_letter_rate }} "
                      "--min_bar_ratio {{ params.min_bar_ratio }}"),
        env={"RUN_COUNTERS": "{{ ti.xcom_pull(task_ids='run_local') or ti.xcom_pull(task_ids='dataflow_counters') }}"},
        append_env=True,
    )

    branch = choose_runner()
    branch >> run_local >> quality
    branch >> run_dataflow >> dataflow_counters() >> quality
