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
# Kafka broker and Beam's Kafka expansion service jars from Maven Central, cached in ~/.cache.
.venv/bin/python -m alphastream.java_jars
exec .venv/bin/python -m pytest "$@"
