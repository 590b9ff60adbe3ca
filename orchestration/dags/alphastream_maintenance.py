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
from airflow.sdk import DAG, Param
from alphastream_defaults import DB_URL_ENV, IN_PROJECT, START_DATE, TAGS, default_args, project_params, site_defaults

DAG_ID = "alphastream_maintenance"
SITE = site_defaults(DAG_ID)

with DAG(
    dag_id=DAG_ID,
    description="Repair yesterday's bars from the tick archive; compact yesterday's streaming lake files",
    schedule="30 0 * * *",  # 00:30 UTC: the day closed, plus more than the allowed lateness
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay=dt.timedelta(minutes=10), execution_timeout=dt.timedelta(hours=2)),
    params={
        "archive": Param(SITE.get("archive", "data/lake"), type="string",
                         description="tick archive root (ingestion --archive)"),
        **project_params(SITE, db_url="PostgreSQL DSN (empty: ALPHASTREAM_DB_URL or the embedded database)",
                         project_dir="the alphastream checkout"),
    },
    tags=TAGS,
) as dag:
    repair = BashOperator(
        task_id="repair",
        bash_command=(IN_PROJECT + " -m pipeline repair --archive '{{ params.archive }}' "
                      "--start {{ ds }}T00:00:00+00:00 --end {{ macros.ds_add(ds, 1) }}T00:00:00+00:00"
                      "{% if params.db_url %} --db_url \"$DAG_DB_URL\"{% endif %}"),
        env=DB_URL_ENV,
        append_env=True,
    )
    compact_lake = BashOperator(
        task_id="compact_lake",
        bash_command=IN_PROJECT + " -m orchestration.compaction --lake '{{ params.lake }}' --date {{ ds }}",
    )
    repair >> compact_lake
