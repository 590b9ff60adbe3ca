"""Orchestration: the Airflow DAGs (``orchestration/dags/``) and the plain Python they run.

The DAGs only schedule; the work is done by the project's own commands, run with the project's
interpreter so Airflow's virtualenv never imports Beam:

* ``python -m pipeline`` through ``python -m orchestration.batch_run``: a day's back-fill, its
  run counters printed as one JSON line for the data-quality task;
* ``python -m orchestration.quality``: the back-fill's data-quality gate;
* ``python -m pipeline repair`` and ``python -m orchestration.compaction``: the maintenance DAG.
"""
