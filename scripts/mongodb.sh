# shellcheck shell=bash
# Source this file, then `start_mongodb` / `stop_mongodb`.
#
# start_mongodb launches nx-27017 (a MongoDB-wire-protocol server storing in SQLite; no real
# mongod is installable on these machines) on a free 127.0.0.1 port with a throw-away data
# directory, waits until it answers a ping, and exports MONGODB_URI. stop_mongodb stops it by
# its PID file and removes the directory. Works unprivileged and as root.

_mongodb_python() {
    local venv="${VENV:-.venv}"
    if [[ -x "$venv/bin/python" ]]; then
        echo "$venv/bin/python"
    else
        command -v python3 || command -v python
    fi
}

_mongodb_server() {
    local venv="${VENV:-.venv}"
    if [[ -x "$venv/bin/nx-27017" ]]; then
        echo "$venv/bin/nx-27017"
    else
        command -v nx-27017 || command -v nx_27017
    fi
}

start_mongodb() {
    local python server port
    python="$(_mongodb_python)" || { echo "start_mongodb: no python found" >&2; return 1; }
    server="$(_mongodb_server)" || {
        echo "start_mongodb: nx-27017 not found (pip install 'nx-27017==0.8.1' neosqlite)" >&2
        return 1
    }
    port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')" \
        || return 1
    MONGODB_DIR="$(mktemp -d "${TMPDIR:-/tmp}/otpcore-mongodb.XXXXXX")" || return 1
    export MONGODB_DIR
    mkdir -p "$MONGODB_DIR/data"
    "$server" --host 127.0.0.1 -p "$port" --data-dir "$MONGODB_DIR/data" \
        --log-file "$MONGODB_DIR/server.log" --pid-file "$MONGODB_DIR/server.pid" \
        >"$MONGODB_DIR/stdout.log" 2>&1 &
    # The server writes its own PID file once it runs; keep ours in case it dies before that.
    echo $! >"$MONGODB_DIR/launcher.pid"
    export MONGODB_URI="mongodb://127.0.0.1:$port/?directConnection=true"
    if ! "$python" - "$MONGODB_URI" <<'PY'
import sys
import time

from pymongo import MongoClient
from pymongo.errors import PyMongoError

deadline = time.monotonic() + 30
while True:
    try:
        with MongoClient(sys.argv[1], serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
        break
    except PyMongoError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.2)
PY
    then
        echo "start_mongodb: server did not answer within 30 s; log follows" >&2
        cat "$MONGODB_DIR/stdout.log" "$MONGODB_DIR/server.log" >&2 2>/dev/null
        stop_mongodb
        return 1
    fi
    echo "MongoDB-wire server (nx-27017) at $MONGODB_URI" >&2
}

stop_mongodb() {
    local dir="${MONGODB_DIR:-}" pidfile pid
    [[ -n "$dir" && -d "$dir" ]] || return 0
    for pidfile in "$dir/server.pid" "$dir/launcher.pid"; do
        [[ -f "$pidfile" ]] || continue
        pid="$(cat "$pidfile")"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$dir"
    unset MONGODB_DIR MONGODB_URI
}
