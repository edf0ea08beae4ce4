#!/usr/bin/env bash
# Run the marked subset of the suite (everything but the multi-process, browser and benchmark
# plumbing tests) in a separate virtual environment made with uv:
#
#   bash scripts/test-subset.sh --lowest            # Python 3.11, --resolution lowest-direct,
#                                                   # then check every floor is what was installed
#   bash scripts/test-subset.sh --python 3.13       # Python 3.13, newest releases
#   bash scripts/test-subset.sh --lowest -- -x -k sqlite   # after --, arguments go to pytest
#   --setup-only: make (and check) the environment, run nothing; --reuse: run in the one an
#   earlier call made. .ci/run makes both environments one after the other (two editable builds
#   at once would race on otpcore.egg-info) and then runs them side by side.
#
# The environment is .venv-<python>-<resolution>, made afresh unless --reuse. The servers come from
# scripts/testenv.sh: shared when the caller started them (.ci/run), otherwise started and
# stopped here; the MongoDB-wire server runs from the newest environment ($VENV), so
# nx-27017's own pins never enter the environment under test.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/testenv.sh
source scripts/testenv.sh

SUBSET="not multiprocess and not browser and not bench"
EXTRAS="test"
python_version=3.11
resolution=highest
setup=yes
run=yes
while [[ $# -gt 0 ]]; do
    case "$1" in
        --lowest) resolution=lowest-direct ;;
        --python) python_version="${2:?--python needs a version such as 3.13}"; shift ;;
        --setup-only) run=no ;;
        --reuse) setup=no ;;
        --) shift; break ;;
        *) echo "test-subset.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
    esac
    shift
done

# An interpreter for $1 (e.g. 3.13): python3.13 on PATH, else the newest pyenv build of it.
find_python() {
    local want="$1" candidate root
    local -a candidates=()
    if command -v "python$want" >/dev/null 2>&1; then
        candidates+=("$(command -v "python$want")")
    fi
    for root in "${PYENV_ROOT:-}" "$(pyenv root 2>/dev/null || true)" "$HOME/.pyenv" /root/.pyenv /opt/pyenv; do
        [[ -n "$root" && -d "$root/versions" ]] || continue
        while IFS= read -r candidate; do
            candidates+=("$candidate")
        done < <(printf '%s\n' "$root/versions/$want".*/bin/python"$want" | sort -V -r)
    done
    for candidate in "${candidates[@]}"; do
        # A pyenv shim on PATH exists even when that version is not installed: ask it.
        if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" \
            >/dev/null 2>&1; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

if ! python="$(find_python "$python_version")"; then
    echo "test-subset.sh: Python $python_version not found (looked for python$python_version on PATH" \
        "and in pyenv's versions/); install it, e.g. 'pyenv install $python_version'" >&2
    exit 1
fi

otpcore_newest_venv
uv="$VENV/bin/uv"
env_dir=".venv-$python_version-$resolution"
if [[ "$setup" == yes ]]; then
    rm -rf "$env_dir"
    # Never fetch a Python: use the one found above, or fail.
    UV_PYTHON_DOWNLOADS=never "$uv" venv -q --python "$python" "$env_dir"
    VIRTUAL_ENV="$env_dir" "$uv" pip install -q --resolution "$resolution" -e ".[$EXTRAS]"
    if [[ "$resolution" == lowest-direct ]]; then
        "$env_dir/bin/python" scripts/check_floors.py "$EXTRAS"
    fi
elif [[ ! -x "$env_dir/bin/python" ]]; then
    echo "test-subset.sh: --reuse, but $env_dir does not exist; run without --reuse first" >&2
    exit 1
fi
echo "test-subset.sh: $("$env_dir/bin/python" --version), --resolution $resolution, in $env_dir" >&2
[[ "$run" == yes ]] || exit 0

trap otpcore_servers_down EXIT
otpcore_servers_up

"$env_dir/bin/python" -m pytest -q -m "$SUBSET" "$@"
