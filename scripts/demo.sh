#!/usr/bin/env bash
# The zero-setup demo: set up, run the main job, then serve the results.
#
#   bash scripts/demo.sh                       # synthetic market -> Parquet lake + local PostgreSQL,
#                                              # then the REST API and the dashboard until Ctrl-C
#   bash scripts/demo.sh --symbols 5           # extra arguments go to `python -m pipeline`
#   ALPHASTREAM_SERVE=0 bash scripts/demo.sh   # run the job only
#
# Ports: ALPHASTREAM_API_PORT (default 8000), ALPHASTREAM_DASH_PORT (default 8050).
# Stop the embedded database afterwards with: .venv/bin/python -m store stop
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
PY="$ROOT/.venv/bin/python"

"$PY" -m pipeline "$@"
[[ "${ALPHASTREAM_SERVE:-1}" == "0" ]] && exit 0

API_PORT="${ALPHASTREAM_API_PORT:-8000}"
DASH_PORT="${ALPHASTREAM_DASH_PORT:-8050}"
export ALPHASTREAM_DB_URL="${ALPHASTREAM_DB_URL:-$("$PY" -m store url)}"
export ALPHASTREAM_API_URL="http://127.0.0.1:$API_PORT"

pids=()
stop_all() { ((${#pids[@]})) && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap stop_all EXIT
trap 'exit 0' INT TERM

"$PY" -m uvicorn serving.main:app --host 127.0.0.1 --port "$API_PORT" --log-level warning &
pids+=($!)
"$PY" -m dash_app --host 127.0.0.1 --port "$DASH_PORT" --api-url "$ALPHASTREAM_API_URL" &
pids+=($!)

for _ in $(seq 1 60); do  # wait up to ~30 s for the API to answer
  curl -fsS "$ALPHASTREAM_API_URL/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
cat <<MSG

  alphastream is serving the bars it just computed:
    dashboard  http://127.0.0.1:$DASH_PORT
    REST API   $ALPHASTREAM_API_URL/docs
  Press Ctrl-C to stop (the embedded database keeps running: .venv/bin/python -m store stop).

MSG
wait
