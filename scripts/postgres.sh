# Throwaway PostgreSQL cluster for the test suites. Source this file, then:
#
#   start_postgres   # initdb in a temp dir, start on 127.0.0.1:<free port>,
#                    # export OTPCORE_POSTGRES_URL
#   stop_postgres    # stop the server and remove the temp dir
#
# Works as root (CI): the cluster is owned and run by the `postgres` user, because
# PostgreSQL refuses to run as root. Both functions are idempotent. Nothing here calls
# `exit` or sets shell options, since it runs inside the caller's shell.

_otpcore_pg_log() {
    printf 'postgres.sh: %s\n' "$*" >&2
}

# Directory holding initdb/pg_ctl/postgres: PATH first, then the Debian layout, then (as root)
# installing the distribution package.
_otpcore_pg_bindir() {
    local candidate
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [[ -z "$candidate" && "$(id -u)" == 0 ]]; then
        _otpcore_pg_log "no PostgreSQL binaries found; installing the postgresql package"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 ||
            return 1
        candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
    if [[ -z "$candidate" || ! -x "$candidate/initdb" ]]; then
        _otpcore_pg_log "initdb/pg_ctl not found (install PostgreSQL, or run as root)"
        return 1
    fi
    printf '%s\n' "$candidate"
}

_otpcore_pg_free_port() {
    local python
    for python in python3 python "${VIRTUAL_ENV:-.venv}/bin/python"; do
        if command -v "$python" >/dev/null 2>&1; then
            "$python" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
            return $?
        fi
    done
    _otpcore_pg_log "python is needed to pick a free port"
    return 1
}

# Run a command as the cluster owner: `postgres` when we are root, ourselves otherwise.
_otpcore_pg_as_owner() {
    if [[ "$(id -u)" != 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

start_postgres() {
    local bindir dir port
    if [[ -n "${OTPCORE_PG_DIR:-}" && -n "${OTPCORE_POSTGRES_URL:-}" && -d "$OTPCORE_PG_DIR/data" ]] &&
        _otpcore_pg_as_owner "$OTPCORE_PG_BIN/pg_ctl" -D "$OTPCORE_PG_DIR/data" status >/dev/null 2>&1; then
        _otpcore_pg_log "already running: $OTPCORE_POSTGRES_URL"
        return 0
    fi
    bindir=$(_otpcore_pg_bindir) || return 1
    if [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres || return 1
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/otpcore-pg.XXXXXX") || return 1
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres "$dir" || return 1
    fi
    port=$(_otpcore_pg_free_port) || return 1
    if ! _otpcore_pg_as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        _otpcore_pg_log "initdb failed:"
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        return 1
    fi
    # Durability is pointless for a throwaway cluster; skipping fsync keeps tests fast.
    if ! _otpcore_pg_as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
        _otpcore_pg_log "pg_ctl start failed:"
        cat "$dir/server.log" >&2
        rm -rf "$dir"
        return 1
    fi
    export OTPCORE_PG_DIR="$dir"
    export OTPCORE_PG_BIN="$bindir"
    export OTPCORE_POSTGRES_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
    _otpcore_pg_log "started: $OTPCORE_POSTGRES_URL"
}

stop_postgres() {
    if [[ -z "${OTPCORE_PG_DIR:-}" ]]; then
        return 0
    fi
    if [[ -d "$OTPCORE_PG_DIR/data" ]]; then
        _otpcore_pg_as_owner "${OTPCORE_PG_BIN:-$(_otpcore_pg_bindir)}/pg_ctl" \
            -D "$OTPCORE_PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$OTPCORE_PG_DIR"
    unset OTPCORE_PG_DIR OTPCORE_PG_BIN OTPCORE_POSTGRES_URL
}
