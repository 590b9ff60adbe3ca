#!/usr/bin/env bash
# Refresh the README's dashboard screenshots (docs/img/dashboard.png, dashboard-narrow.png).
#
# The browser tests take them; on a normal test run they go to a temporary folder, so a test
# run never changes tracked files. This runs those tests with --screenshots docs/img, then
# shows what changed for you to review and commit. Needs what scripts/test.sh sets up
# (the virtualenv, PostgreSQL, Chromium and chromedriver); extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

.venv/bin/python -m pytest tests/dash_app/test_browser.py tests/dash_app/test_analytics_browser.py -q -p no:cacheprovider \
    -k "every_bar_of_the_day or narrow_screen or analytics" --screenshots docs/img "$@"
git status --short -- docs/img
