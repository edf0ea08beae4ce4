#!/usr/bin/env bash
# Set up the virtual environment, start PostgreSQL, the MongoDB-wire test server and Redis on
# 127.0.0.1, run the whole test suite, and stop the servers again. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"

# The demo page is tested in a real headless Chromium (tests/e2e); Debian packages it.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "test.sh: chromium and chromium-driver are missing; the browser test will be skipped" >&2
  fi
fi

# shellcheck source=scripts/postgres.sh
source scripts/postgres.sh
# shellcheck source=scripts/mongodb.sh
source scripts/mongodb.sh
# shellcheck source=scripts/redis.sh
source scripts/redis.sh
trap 'stop_redis || true; stop_mongodb || true; stop_postgres || true' EXIT
start_postgres
start_mongodb
start_redis

"$VENV/bin/python" -m pytest -q "$@"
