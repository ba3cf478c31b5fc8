#!/bin/sh
# Smoke test after bootstrap: start guardian from .venv on a free port, submit one task of each
# light kind, wait until both are done, stop by pid. Exit 0 only if all of that happened.
# Every wait is bounded. Usage: sh scripts/smoke.sh
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || { echo "smoke: $py missing; run scripts/bootstrap.sh first" >&2; exit 1; }
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d "${TMPDIR:-/tmp}/guardian-smoke.XXXXXX")
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

"$py" -m guardian serve --port "$port" --data-dir "$work/data" >"$work/serve.out" 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
i=0
until "$py" -m guardian status --url "$url" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "smoke: FAILED, not ready after 60 s" >&2; tail -n 20 "$work/serve.out" >&2; exit 1
    fi
    sleep 0.5
done

for kind in orchestrate compute; do
    id=$("$py" -m guardian submit --url "$url" --kind "$kind" --payload '{}')
    i=0
    until "$py" - "$url" "$id" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(f"{sys.argv[1]}/api/tasks/{sys.argv[2]}", timeout=5) as response:
    sys.exit(0 if json.load(response)["status"] == "completed" else 1)
PY
    do
        i=$((i + 1))
        [ "$i" -lt 60 ] || { echo "smoke: FAILED, task $id ($kind) not completed after 30 s" >&2; exit 1; }
        sleep 0.5
    done
    echo "smoke: $kind task $id completed"
done
echo "smoke: OK"
