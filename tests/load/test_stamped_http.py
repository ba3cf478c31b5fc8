"""Tests for load/stamped_http.py, the driver's HTTP client, run in a child process (it imports gevent)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from gevent import monkey
    monkey.patch_all()
    sys.path.insert(0, sys.argv[1])
    from stamped_http import StampedClient

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = json.dumps({"echo": json.loads(body), "type": self.headers["Content-Type"]}).encode()
            time.sleep(0.02)
            self.send_response(201)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = {}
    client = StampedClient(f"http://127.0.0.1:{server.server_port}", concurrency=2, timeout_s=5)
    sent = time.perf_counter()
    result = client.exchange("POST", "/tasks", {"n": 1}, sent)
    read = time.perf_counter()
    out["ok"] = dict(status=result.status, body=json.loads(result.body), error=result.error,
                     end_by=result.end_by, after_send=result.end - sent, before_read=read - result.end)
    client.close()
    server.shutdown()
    server.server_close()
    refused = StampedClient(f"http://127.0.0.1:{server.server_port}", concurrency=1, timeout_s=2)
    failed = refused.exchange("GET", "/", None, time.perf_counter())
    out["refused"] = dict(status=failed.status, error=failed.error, end_by=failed.end_by)
    print(json.dumps(out))
    """
)


def run_child() -> dict[str, dict[str, object]]:
    """Run CHILD against its own loopback server; return what it printed."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "load")], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(proc.stdout)


def test_answers_are_timed_by_the_socket_and_failures_are_errors() -> None:
    """A plain-HTTP answer is timed by its kernel receive stamp (after send, before read); a refused one is an error."""
    out = run_child()
    ok = out["ok"]
    assert ok["status"] == 201
    assert ok["body"] == {"echo": {"n": 1}, "type": "application/json"}
    assert ok["error"] == ""
    assert ok["end_by"] == "socket"
    assert 0.02 <= float(ok["after_send"]) < 2  # type: ignore[arg-type]
    assert float(ok["before_read"]) >= 0  # type: ignore[arg-type]
    refused = out["refused"]
    assert refused["status"] == 0
    assert "ConnectionRefused" in str(refused["error"])
    assert refused["end_by"] == "driver"


OFFSET_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import stamped_http
    # Three bracketed readings: the first preempted 20 ms between its perf_counter calls (its
    # midpoint would put the offset 5 ms off); the second is the tightest.
    perf = iter([0, 20_000_000, 30_000_000, 30_000_100, 40_000_000, 40_000_200])
    real = iter([1_000_005_000_000, 1_000_030_000_050, 1_000_040_000_100])
    stamped_http.time.perf_counter_ns = lambda: next(perf)
    stamped_http.time.time_ns = lambda: next(real)
    print(stamped_http._realtime_offset_ns())
    """
)


def test_realtime_offset_takes_the_tightest_bracket() -> None:
    """A clock reading preempted between its two perf_counter calls does not decide the offset."""
    proc = subprocess.run(
        [sys.executable, "-c", OFFSET_CHILD, str(REPO / "load")], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(proc.stdout) == 1_000_000_000_000
