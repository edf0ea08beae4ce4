# shellcheck shell=bash
# Shared set-up for scripts/test.sh, scripts/test-subset.sh and .ci/run. Source it from the
# repository root, then:
#
#   otpcore_newest_venv    # $VENV (default .venv) with -e ".[dev]" at the newest releases
#   otpcore_browser        # Debian's chromium + chromium-driver for tests/e2e (installs as root)
#   otpcore_servers_up     # PostgreSQL, the MongoDB-wire server and Redis on 127.0.0.1, unless
#                          # a caller already started them (OTPCORE_SERVERS_SHARED=1)
#   otpcore_servers_down   # stop them, but only if this shell started them
#
# The servers are separate processes, so one set serves every virtual environment: .ci/run
# starts them once and the full run, the lowest-versions run and the Python 3.13 run share them.
# The MongoDB-wire server (nx-27017) always runs from $VENV, the newest environment. Nothing
# here calls `exit` or sets shell options, since it runs inside the caller's shell.

_otpcore_testenv_log() {
    printf 'testenv.sh: %s\n' "$*" >&2
}

otpcore_newest_venv() {
    export VENV="${VENV:-.venv}"
    # Once per CI run: the scripts .ci/run calls find it done.
    if [[ "${OTPCORE_VENV_READY:-}" == "$VENV" && -x "$VENV/bin/python" ]]; then
        return 0
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV" || return 1
    fi
    "$VENV/bin/python" -m pip install -q --upgrade pip || return 1
    # uv makes the other environments (scripts/test-subset.sh); pip has no lowest-direct.
    "$VENV/bin/python" -m pip install -q -e ".[dev]" "uv>=0.5" || return 1
    export OTPCORE_VENV_READY="$VENV"
}

otpcore_browser() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return 0
    fi
    if [[ "$(id -u)" == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
            >/dev/null || return 1
    else
        _otpcore_testenv_log "chromium and chromium-driver are missing; the browser test will be skipped"
    fi
}

otpcore_servers_up() {
    if [[ "${OTPCORE_SERVERS_SHARED:-}" == 1 ]]; then
        _otpcore_testenv_log "using the servers the caller started"
        return 0
    fi
    # shellcheck source=scripts/postgres.sh
    source scripts/postgres.sh
    # shellcheck source=scripts/mongodb.sh
    source scripts/mongodb.sh
    # shellcheck source=scripts/redis.sh
    source scripts/redis.sh
    _OTPCORE_OWN_SERVERS=1
    start_postgres || return 1
    start_mongodb || return 1
    start_redis || return 1
    export OTPCORE_SERVERS_SHARED=1
}

otpcore_servers_down() {
    if [[ "${_OTPCORE_OWN_SERVERS:-}" != 1 ]]; then
        return 0
    fi
    stop_redis || true
    stop_mongodb || true
    stop_postgres || true
    unset _OTPCORE_OWN_SERVERS OTPCORE_SERVERS_SHARED
}
