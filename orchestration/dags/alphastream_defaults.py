"""What the alphastream DAGs share: start date, retries, how a task runs the project, and the
params every DAG takes, each defaulting to what the deployment set.

A deployment's defaults (e.g. runner=dataflow on Cloud Composer) come from the Airflow Variable
``<dag_id>_params`` (JSON; ``AIRFLOW_VAR_<DAG_ID>_PARAMS`` in the environment); a trigger's conf
still overrides each one. Airflow puts the DAG folder on ``sys.path``, so the DAGs import this
module; .airflowignore keeps the DAG processor from parsing it as a DAG file.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param, Variable

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
TAGS = ["alphastream"]
RETRIES = 2
# A task runs ``python -m ...`` in the checkout (params project_dir and python).
IN_PROJECT = "cd {{ params.project_dir }} && {{ params.python }}"
# The DSN reaches the command in this environment variable, never on its command line.
DB_URL_ENV = {"DAG_DB_URL": "{{ params.db_url }}"}


def site_defaults(dag_id: str) -> dict[str, Any]:
    """The deployment's defaults for the params of dag_id (empty if it set none)."""
    return Variable.get(f"{dag_id}_params", default={}, deserialize_json=True)


def default_args(retry_delay: dt.timedelta, execution_timeout: dt.timedelta) -> dict[str, Any]:
    """Every task retries (idempotent steps) and is stopped after execution_timeout."""
    return {"retries": RETRIES, "retry_delay": retry_delay, "execution_timeout": execution_timeout}


def project_params(site: dict[str, Any], *, db_url: str, project_dir: str) -> dict[str, Param]:
    """The lake, the database and the checkout every DAG's tasks use; db_url and project_dir
    describe what those params mean in this DAG."""
    return {
        "lake": Param(site.get("lake", "data/lake"), type="string", description="Parquet lake root, local or gs://"),
        "db_url": Param(site.get("db_url", ""), type="string",
                        description=f"{db_url}; passed to the command in an environment variable, "
                                    "not on its command line"),
        "project_dir": Param(site.get("project_dir", "."), type="string", description=project_dir),
        "python": Param(site.get("python", ".venv/bin/python"), type="string",
                        description="interpreter with alphastream installed (relative to project_dir)"),
    }
