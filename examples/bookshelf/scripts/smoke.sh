#!/bin/sh
# Smoke test after bootstrap: start bookshelf from .venv over a scratch database, store a book, read it
# back by id and by author, check a bad request is refused with 422 and an unknown id gives 404, stop
# both by pid. Exit 0 only if all of that happened. Every wait is bounded. Usage: sh scripts/smoke.sh
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
py="$here/.venv/bin/python"
[ -x "$py" ] || { echo "smoke: $py missing; run scripts/bootstrap.sh first" >&2; exit 1; }
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d "${TMPDIR:-/tmp}/bookshelf-smoke.XXXXXX")
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

url=$(sh "$here/scripts/scratch-db.sh" start "$work/db")
db=1
BOOKSHELF_DATABASE_URL=$url "$py" -m bookshelf serve --port "$port" --data-dir "$work/data" >"$work/serve.out" 2>&1 &
pid=$!
i=0
until "$py" "$here/scripts/ready.py" "http://127.0.0.1:$port" >/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 120 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "smoke: FAILED, not ready after 60 s" >&2; tail -n 20 "$work/serve.out" >&2; exit 1
    fi
    sleep 0.5
done

"$py" - "http://127.0.0.1:$port" <<'PY'
import json, sys, urllib.error, urllib.request

base = sys.argv[1]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


status, book = call("POST", "/api/books", {"title": "Smoke", "author": "smoke-test", "year": 2026})
assert status == 201, (status, book)
status, again = call("GET", f"/api/books/{book['id']}")
assert status == 200 and again == book, (status, again)
status, listed = call("GET", "/api/books?author=smoke-test&limit=5")
assert status == 200 and listed["books"] == [book], (status, listed)
status, refused = call("POST", "/api/books", {"title": "", "author": "smoke-test"})
assert status == 422, (status, refused)
status, missing = call("GET", f"/api/books/{book['id'] + 1000}")
assert status == 404, (status, missing)
print(f"smoke: book {book['id']} stored, read back by id and by author; 422 and 404 as documented")
PY
echo "smoke: OK"
