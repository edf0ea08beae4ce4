# shellcheck shell=bash
# Throwaway Redis server for the Redis limit-store tests. Source this file, then:
#
#   start_redis   # redis-server on 127.0.0.1:<free port>, data in a temp dir, export REDIS_URL
#   stop_redis    # stop it by its PID file and remove the temp dir
#
# Uses Debian's `redis-server` (installed with apt-get when missing and running as root).
# Nothing is persisted (no RDB snapshots, no AOF). Both functions are idempotent. Nothing here
# calls `exit` or sets shell options, since it runs inside the caller's shell.

_otpcore_redis_log() {
    printf 'redis.sh: %s\n' "$*" >&2
}

_otpcore_redis_install() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        _otpcore_redis_log "redis-server not found (apt-get install redis-server, or run as root)"
        return 1
    fi
    _otpcore_redis_log "no redis-server found; installing the redis-server package"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

_otpcore_redis_free_port() {
    local python
    for python in "${VIRTUAL_ENV:-${VENV:-.venv}}/bin/python" python3 python; do
        if command -v "$python" >/dev/null 2>&1; then
            "$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
            return $?
        fi
    done
    _otpcore_redis_log "python is needed to pick a free port"
    return 1
}

start_redis() {
    local dir port
    if [[ -n "${OTPCORE_REDIS_DIR:-}" && -n "${REDIS_URL:-}" && -f "$OTPCORE_REDIS_DIR/redis.pid" ]] &&
        kill -0 "$(cat "$OTPCORE_REDIS_DIR/redis.pid")" 2>/dev/null; then
        _otpcore_redis_log "already running: $REDIS_URL"
        return 0
    fi
    _otpcore_redis_install || return 1
    dir=$(mktemp -d "${TMPDIR:-/tmp}/otpcore-redis.XXXXXX") || return 1
    port=$(_otpcore_redis_free_port) || return 1
    # Protected mode stays on (the default); binding to 127.0.0.1 only is what it asks for.
    if ! redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
        >"$dir/start.log" 2>&1; then
        _otpcore_redis_log "redis-server failed to start:"
        cat "$dir/start.log" "$dir/redis.log" >&2 2>/dev/null
        rm -rf "$dir"
        return 1
    fi
    export OTPCORE_REDIS_DIR="$dir"
    export REDIS_URL="redis://127.0.0.1:$port/0"
    local _
    for _ in $(seq 100); do
        if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; then
            _otpcore_redis_log "started: $REDIS_URL"
            return 0
        fi
        sleep 0.1
    done
    _otpcore_redis_log "redis-server did not answer within 10 s; log follows"
    cat "$dir/redis.log" >&2 2>/dev/null
    stop_redis
    return 1
}

stop_redis() {
    local dir="${OTPCORE_REDIS_DIR:-}" pid
    [[ -n "$dir" && -d "$dir" ]] || return 0
    if [[ -f "$dir/redis.pid" ]]; then
        pid="$(cat "$dir/redis.pid")"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf "$dir"
    unset OTPCORE_REDIS_DIR REDIS_URL
}
