#!/usr/bin/env bash
# Build (or reuse) Airflow's own virtualenv and print its path.
#
# Airflow 3 and its Google provider are ~2 GB of pinned packages whose pins clash with Beam's,
# so they live in a virtualenv outside the repo, keyed by the hash of the lock file
# (orchestration/airflow-constraints.txt): the first run takes a few minutes, later runs reuse
# it, and a changed lock builds a fresh one. The DAGs run the project's .venv as a subprocess.
#
#   bash scripts/airflow_venv.sh                 # prints e.g. ~/.cache/alphastream/airflow-venv-1a2b3c4d5e6f
#   ALPHASTREAM_AIRFLOW_CACHE=/ci/cache bash scripts/airflow_venv.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCK="$ROOT/orchestration/airflow-constraints.txt"
PYTHON="${PYTHON:-python3}"
UV_VERSION="0.13.9"
CACHE="${ALPHASTREAM_AIRFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alphastream}"
KEY="$( (cat "$LOCK"; "$PYTHON" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-12)"
VENV="$CACHE/airflow-venv-$KEY"
STAMP="$VENV/.alphastream-complete"

say() { printf '\033[1m[airflow-venv]\033[0m %s\n' "$*" >&2; }

if [[ -f "$STAMP" ]]; then
  echo "$VENV"
  exit 0
fi
mkdir -p "$CACHE"
# Another run (a parallel test session) may be building the same key: build under a lock.
exec 9>"$CACHE/airflow-venv-$KEY.lock"
flock 9
if [[ ! -f "$STAMP" ]]; then
  say "building $VENV from $(basename "$LOCK") (first time: a few minutes, ~2 GB)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "uv==$UV_VERSION"
  # The lock pins every package: install exactly it, resolving nothing.
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -r "$LOCK"
  "$VENV/bin/python" -c "import airflow, airflow.providers.google, airflow.providers.standard" \
    || { say "the Airflow virtualenv does not import; delete $VENV and re-run"; exit 1; }
  touch "$STAMP"
  say "ready: $VENV"
  # Virtualenvs of older locks are never used again: free their space.
  for old in "$CACHE"/airflow-venv-*/; do
    [[ "${old%/}" != "$VENV" && -f "$old/.alphastream-complete" ]] && rm -rf "${old%/}" "${old%/}.lock"
  done
fi
echo "$VENV"
