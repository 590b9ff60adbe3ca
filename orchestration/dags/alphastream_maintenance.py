"""alphastream_maintenance: each day, make yesterday's streamed bars final and compact its lake files.

* ``repair``: ``python -m pipeline repair`` recomputes the day's bars from the tick archive with
  the batch rules and stores them final (pipeline.repair): bars a crash, stop or outage left
  short are corrected, and no streaming pane replaces them afterwards.
* ``compact_lake``: ``python -m orchestration.compaction`` folds the day's small streaming files
  into daily files (one per interval, symbol and dead-letter input), losing no row.

The day is the run's data interval (``ds``): a run starting after midnight UTC handles the day
that just closed, by then past the streaming pipeline's allowed lateness. Both steps are
idempotent, so retries and manual re-runs are safe; catch-up is off (a missed day is re-run by
hand: ``airflow dags trigger alphastream_maintenance --logical-date ...``).

Database retention is not a task: the migrations install it (TimescaleDB retention and
compression policies, or monthly partitions on plain PostgreSQL).
"""
from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, Variable

IN_PROJECT = "cd {{ params.project_dir }} && {{ params.python }}"

# A deployment's defaults for the params (e.g. runner=dataflow on Cloud Composer), from the Airflow
# Variable alphastream_maintenance_params (JSON;
# AIRFLOW_VAR_ALPHASTREAM_MAINTENANCE_PARAMS in the environment). A trigger's conf still overrides each one.
SITE = Variable.get("alphastream_maintenance_params", default={}, deserialize_json=True)

with DAG(
    dag_id="alphastream_maintenance",
    description="Repair yesterday's bars from the tick archive; compact yesterday's streaming lake files",
    schedule="30 0 * * *",  # 00:30 UTC: the day closed, plus more than the allowed lateness
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10),
                  "execution_timeout": dt.timedelta(hours=2)},
    params={
        "archive": Param(SITE.get("archive", "data/lake"), type="string",
                         description="tick archive root (ingestion --archive)"),
        "lake": Param(SITE.get("lake", "data/lake"), type="string", description="Parquet lake root, local or gs://"),
        "db_url": Param(SITE.get("db_url", ""), type="string",
                        description="PostgreSQL DSN (empty: ALPHASTREAM_DB_URL or the embedded database); "
                                    "passed to the command in an environment variable"),
        "project_dir": Param(SITE.get("project_dir", "."), type="string", description="the alphastream checkout"),
        "python": Param(SITE.get("python", ".venv/bin/python"), type="string",
                        description="interpreter with alphastream installed (relative to project_dir)"),
    },
    tags=["alphastream"],
) as dag:
    repair = BashOperator(
        task_id="repair",
        bash_command=(IN_PROJECT + " -m pipeline repair --archive '{{ params.archive }}' "
                      "--start {{ ds }}T00:00:00+00:00 --end {{ macros.ds_add(ds, 1) }}T00:00:00+00:00"
                      "{% if params.db_url %} --db_url \"$DAG_DB_URL\"{% endif %}"),
        env={"DAG_DB_URL": "{{ params.db_url }}"},
        append_env=True,
    )
    compact_lake = BashOperator(
        task_id="compact_lake",
        bash_command=IN_PROJECT + " -m orchestration.compaction --lake '{{ params.lake }}' --date {{ ds }}",
    )
    repair >> compact_lake
