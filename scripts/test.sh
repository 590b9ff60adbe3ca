#!/usr/bin/env bash
# Run every alphastream test: set-up first (scripts/setup.sh --test), then pytest.
# The tests start their own servers (PostgreSQL, the Pub/Sub and GCS emulators, Chromium).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k bars -x      # extra arguments go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh" --test
cd "$ROOT"
# Kafka broker, Beam's Kafka expansion service and Flink job server jars from Maven Central, and
# Beam's Prism runner (go install), cached in ~/.cache.
.venv/bin/python -m alphastream.java_jars
exec .venv/bin/python -m pytest "$@"
