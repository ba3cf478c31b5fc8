#!/bin/sh
# Bootstrap bookshelf from a clean clone: venv -> pinned install -> scratch database -> start ->
# wait for /readyz -> print OK -> stop both. POSIX sh; every wait is bounded.
# Usage: sh scripts/bootstrap.sh [PORT]   (needs Python >= 3.11 and Debian's postgresql package)
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
# A free port unless one is given, so a bootstrap never collides with a running instance.
port=${1:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
work=$(mktemp -d "${TMPDIR:-/tmp}/bookshelf-bootstrap.XXXXXX")
pid=""
db=""

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 120 ]; do sleep 0.25; i=$((i + 1)); done
    fi
    if [ -n "$db" ]; then sh "$here/scripts/scratch-db.sh" stop "$work/db" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> step: venv"
echo "bookshelf bootstrap: creating venv in $here/.venv"
"$python" -m venv "$here/.venv"
echo "==> step: install"
echo "bookshelf bootstrap: installing the pinned set (constraints.txt, hash-checked), then bookshelf"
"$here/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$here/constraints.txt"
"$here/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$here"

echo "==> step: database"
url=$(sh "$here/scripts/scratch-db.sh" start "$work/db")
db=1
echo "bookshelf bootstrap: scratch database at $url"

echo "==> step: start"
echo "bookshelf bootstrap: starting on port $port"
BOOKSHELF_DATABASE_URL=$url "$here/.venv/bin/python" -m bookshelf serve --port "$port" --data-dir "$work/data" \
    >"$work/serve.out" 2>&1 &
pid=$!

i=0
until "$here/.venv/bin/python" "$here/scripts/ready.py" "http://127.0.0.1:$port"; do
    i=$((i + 1))
    if [ "$i" -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "bookshelf bootstrap: FAILED, not ready after 60 s; last output:" >&2
        tail -n 20 "$work/serve.out" >&2
        exit 1
    fi
    sleep 0.5
done

echo "==> step: stop"
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 120 ]; do sleep 0.25; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then
    echo "bookshelf bootstrap: FAILED, the service did not stop within 30 s" >&2
    exit 1
fi
wait "$pid" || { echo "bookshelf bootstrap: FAILED, the service exited non-zero" >&2; exit 1; }
pid=""
echo "OK"
