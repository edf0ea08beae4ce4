#!/usr/bin/env bash
# Set up the virtual environment, start PostgreSQL, the MongoDB-wire test server and Redis on
# 127.0.0.1, run the whole test suite, and stop the servers again. Extra arguments go to pytest.
# Servers a caller already started (OTPCORE_SERVERS_SHARED=1, as .ci/run does) are used as they
# are and left running.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/testenv.sh
source scripts/testenv.sh

otpcore_newest_venv
# The demo page is tested in a real headless Chromium (tests/e2e); Debian packages it.
otpcore_browser
trap otpcore_servers_down EXIT
otpcore_servers_up

"$VENV/bin/python" -m pytest -q "$@"
