#!/usr/bin/env bash
# Set up alphastream on this machine: system packages (when run as root on Debian/Ubuntu) and a
# Python virtual environment in .venv with the project installed in editable mode.
#
#   bash scripts/setup.sh            # what the pipeline, API and dashboard need
#   bash scripts/setup.sh --test     # ... plus what the tests need (headless Chromium)
#
# Safe to run again: it installs only what is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

have_postgres_server() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

apt_install() {
  # Debian packages, only when missing and only as root (otherwise say what to install).
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    say "please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})"
    return 1
  fi
  say "installing Debian packages: ${missing[*]}"
  if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# PostgreSQL server binaries: the embedded local database (and the tests) start a private cluster.
if ! have_postgres_server; then
  apt_install postgresql || true
fi
if [[ $WANT_TEST -eq 1 ]]; then
  # A real headless browser for the dashboard tests; Prometheus and Alertmanager for the
  # alert-rule and end-to-end alerting tests.
  apt_install chromium chromium-driver prometheus prometheus-alertmanager || true
  # Java and Maven for the Kafka broker and Beam's expansion service (jars from Maven Central).
  command -v mvn >/dev/null && command -v java >/dev/null || apt_install maven openjdk-17-jre-headless || true
fi

# The Python environment. The stamp records what was installed, so a re-run is instant.
STAMP="$VENV/.alphastream-installed"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$ROOT/setup.py" -nt "$STAMP" ]]; then
  say "installing alphastream and its dependencies into .venv (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[all,dev]"
  touch "$STAMP"
fi
if [[ $WANT_TEST -eq 1 && ! -x "$VENV/checkov/bin/checkov" ]]; then
  # checkov pins old versions of packages pytest needs: it gets a virtualenv of its own.
  say "installing checkov into $VENV/checkov"
  "$PYTHON" -m venv "$VENV/checkov"
  "$VENV/checkov/bin/python" -m pip install -q "checkov>=3.3,<4"
fi
if [[ $WANT_TEST -eq 1 ]]; then
  # Airflow 3 in a virtualenv of its own (cached outside the clone, keyed by its lock file).
  say "Airflow's virtualenv: $(bash "$ROOT/scripts/airflow_venv.sh")"
fi
say "ready: $VENV"
