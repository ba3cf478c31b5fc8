#!/bin/sh
# Bootstrap guardian from a clean clone: venv -> editable install -> start -> wait for /readyz
# -> print OK -> stop. POSIX sh; every wait is bounded. Usage: sh scripts/bootstrap.sh [PORT]
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
# A free port unless one is given, so a bootstrap never collides with a running instance.
port=${1:-${GUARDIAN_PORT:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}}
work=$(mktemp -d "${TMPDIR:-/tmp}/guardian-bootstrap.XXXXXX")
pid=""

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 120 ]; do sleep 0.25; i=$((i + 1)); done
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> step: venv"
echo "guardian bootstrap: creating venv in $here/.venv"
"$python" -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
echo "==> step: install"
echo "guardian bootstrap: installing (pip install -e .)"
"$here/.venv/bin/python" -m pip install --quiet -e "$here"

echo "==> step: start"
echo "guardian bootstrap: starting on port $port"
"$here/.venv/bin/python" -m guardian serve --port "$port" --data-dir "$work/data" \
    >"$work/serve.out" 2>&1 &
pid=$!

i=0
until "$here/.venv/bin/python" -m guardian status --url "http://127.0.0.1:$port" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "guardian bootstrap: FAILED, not ready after 60 s; last output:" >&2
        tail -n 20 "$work/serve.out" >&2
        exit 1
    fi
    sleep 0.5
done

"$here/.venv/bin/python" -m guardian status --url "http://127.0.0.1:$port"
echo "==> step: stop"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 120 ]; do sleep 0.25; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
    echo "guardian bootstrap: FAILED, service did not stop within 30 s" >&2
    exit 1
fi
wait "$pid" || { echo "guardian bootstrap: FAILED, service exited non-zero" >&2; exit 1; }
pid=""
echo "OK"
