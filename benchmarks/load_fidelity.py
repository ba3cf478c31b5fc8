"""How faithful G2's numbers are: measured in one run against a loopback stdlib server.

(a) fixed delay D = 5, 50, 200 ms: the harness's p50/p99 vs D and vs a plain reference client timed in
    the same run (median of 3 runs each): the server's own overhead is in both, the harness's is not;
(b) an endpoint that stalls 1 s once: p99 from the planned start (corrected) vs from the send, and vs a
    closed-loop client measuring from its own send (the coordinated-omission mistake);
(c) the highest open-model rate sustained (>=95% delivered, <=1% late, no errors) vs `wrk` on the same endpoint.

Usage: python benchmarks/load_fidelity.py   (needs locust in this interpreter; wrk on PATH for (c))
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from load.stats import nearest_rank, parse_raw, profile_stats  # noqa: E402

SERVER = r"""
import sys, time, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
STALLED = {"done": False}
LOCK = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_GET(self):
        if SERIAL:
            with SERIAL_LOCK:
                return self._answer()
        return self._answer()
    def _answer(self):
        url = urlparse(self.path)
        if url.path == "/delay":
            time.sleep(float(parse_qs(url.query)["ms"][0]) / 1000)
        elif url.path == "/stall-once":
            with LOCK:
                stall = not STALLED["done"] and time.monotonic() - START > 5
                STALLED["done"] = STALLED["done"] or stall
            if stall:
                time.sleep(1.0)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(body)
START = time.monotonic()
SERIAL = sys.argv[2] == "single"
SERIAL_LOCK = threading.Lock()
server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
server.daemon_threads = True
server.request_queue_size = 1024
server.serve_forever()
"""


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start the benchmark server (threading or single-threaded) and wait until it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), kind])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("benchmark server did not start")


def drive(port: int, path: str, rate_s: float, duration_s: float, max_in_flight: int = 200) -> dict:
    """Run the harness's Locust driver on a constant-rate plan; return stats from its raw CSV."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        arrivals = [[round(k / rate_s, 6), "r"] for k in range(int(rate_s * duration_s))]
        plan = {
            "profile": "bench",
            "base_url": f"http://127.0.0.1:{port}",
            "workers": 1,
            "max_in_flight": max_in_flight,
            "http_timeout_s": 10,
            "drain_s": 5,
            "duration_s": duration_s,
            "out_dir": str(out),
            "requests": {
                "r": {
                    "method": "GET",
                    "path": path,
                    "json_body": None,
                    "expect_status": [200],
                    "poll": None,
                    "follow": [],
                }
            },
            "arrivals": arrivals,
        }
        (out / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(REPO / "load" / "locustfile.py"),
            "--headless",
            "-u",
            "1",
            "-r",
            "1",
            "--run-time",
            f"{int(duration_s + 20)}s",
            "--stop-timeout",
            "5",
            "--exit-code-on-error",
            "0",
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        env = {"PATH": "/usr/bin:/bin", "CERTIFY_LOAD_PLAN": str(out / "plan.json"), "HOME": tmp}
        subprocess.run(argv, cwd=tmp, env=env, capture_output=True, timeout=duration_s + 60, check=False)
        rows = parse_raw((out / "raw-w0.csv").read_bytes())
        return profile_stats(rows, len(arrivals), 1.0, 0.25, 0.95)


def reference_ms(port: int, path: str, rate_s: float, count: int) -> dict[str, float]:
    """p50/p99 of a plain keep-alive http.client, paced at rate_s, timing from its own send.

    At a rate far below the server's capacity nothing queues, so this is what the endpoint really takes
    on this machine (server stack included): the figure the harness's numbers must agree with.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    start = time.perf_counter()
    for k in range(count):
        time.sleep(max(0.0, start + k / rate_s - time.perf_counter()))
        sent = time.perf_counter()
        conn.request("GET", path)
        conn.getresponse().read()
        latencies.append((time.perf_counter() - sent) * 1000)
    conn.close()
    ordered = sorted(latencies[int(rate_s) :])
    return {"p50": nearest_rank(ordered, 0.5), "p99": nearest_rank(ordered, 0.99)}


def part_a() -> None:
    """Fixed delays: measured p50/p99 vs D and vs a plain reference client measured in the same run."""
    proc, port = start_server("threading")
    try:
        print("(a) fixed delay D; harness p50/p99 from planned start, median of 3 runs of 10 s at 20/s;")
        print("    reference: a plain keep-alive http.client at 20/s, 200 requests, interleaved with the runs")
        for delay in (5, 50, 200):
            path = f"/delay?ms={delay}"
            raw, refs = [], []
            for _ in range(3):
                raw.append(drive(port, path, 20, 10))
                refs.append(reference_ms(port, path, 20, 200))
            runs = [r["http"]["corrected_ms"] for r in raw]
            p50 = statistics.median(run["p50"] for run in runs)
            p99 = statistics.median(run["p99"] for run in runs)
            ref50 = statistics.median(ref["p50"] for ref in refs)
            ref99 = statistics.median(ref["p99"] for ref in refs)
            sent_p50 = statistics.median(r["http"]["uncorrected_ms"]["p50"] for r in raw)
            ok = abs(p50 - ref50) <= max(0.02 * ref50, 0.5)
            print(
                f"    D={delay:>3} ms: harness p50 {p50:8.3f} ms, reference {ref50:8.3f} ms "
                f"(error {p50 - ref50:+.3f}; within 2%/0.5 ms: {ok}); p50 - D {p50 - delay:+.3f}; "
                f"p99 {p99:8.3f} vs reference {ref99:8.3f} ms; harness p50 from send {sent_p50:.3f} ms"
            )
    finally:
        proc.terminate()
        proc.wait()


def closed_loop_p99(port: int, rate_s: float, duration_s: float) -> float:
    """A closed-loop client pacing at rate_s, timing from its own send: what coordinated omission reports."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < duration_s:
        due = start + k / rate_s
        time.sleep(max(0.0, due - time.perf_counter()))
        sent = time.perf_counter()
        conn.request("GET", "/stall-once")
        conn.getresponse().read()
        latencies.append((time.perf_counter() - sent) * 1000)
        k += 1
    conn.close()
    return nearest_rank(sorted(latencies[int(rate_s) :]), 0.99)


def part_b() -> None:
    """A single 1 s stall: corrected vs uncorrected p99, and a closed-loop client's p99."""
    print("(b) endpoint serving one request at a time, stalling 1 s once (after 5 s), 50 arrivals/s for 20 s")
    proc, port = start_server("single")
    try:
        stats = drive(port, "/stall-once", 50, 20)
    finally:
        proc.terminate()
        proc.wait()
    proc, port = start_server("single")
    try:
        closed = closed_loop_p99(port, 50, 20)
    finally:
        proc.terminate()
        proc.wait()
    corrected = stats["http"]["corrected_ms"]["p99"]
    uncorrected = stats["http"]["uncorrected_ms"]["p99"]
    print(f"    open model, from planned start: p99 {corrected:.1f} ms; from actual send: p99 {uncorrected:.1f} ms")
    print(f"    closed-loop client from its own send (coordinated omission): p99 {closed:.1f} ms")


def part_c() -> None:
    """Highest sustained open-model rate vs wrk on the same endpoint."""
    print("(c) highest sustained open-model rate vs wrk, GET /delay?ms=0 on a threading stdlib server, 2 cores")
    proc, port = start_server("threading")
    try:
        best = 0.0
        for rate in (250, 500, 750, 1000, 1500, 2000, 3000):
            stats = drive(port, "/delay?ms=0", rate, 5, max_in_flight=500)
            delivery = stats["delivery"]
            sustained = (
                delivery["delivered_ratio"] >= 0.95
                and delivery["late"] <= 0.01 * delivery["planned"]
                and stats["http"]["errors"] == 0
            )
            print(
                f"    {rate:>5}/s: delivered {delivery['delivered_ratio']:.1%}, late {delivery['late']}, "
                f"errors {stats['http']['errors']}, p99 {stats['http']['corrected_ms']['p99']} ms -> "
                f"{'sustained' if sustained else 'not sustained'}"
            )
            if not sustained:
                break
            best = float(rate)
        if shutil.which("wrk") is None:
            print("    wrk not installed (apt-get install -y wrk): no ratio")
            return
        runs = []
        for _ in range(3):
            out = subprocess.run(
                ["wrk", "-t2", "-c50", "-d5s", f"http://127.0.0.1:{port}/delay?ms=0"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            runs.append(float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1]))
        wrk_rps = statistics.median(runs)
        print(
            f"    open model sustained {best:.0f}/s; wrk (closed loop, 2 threads, 50 connections) {wrk_rps:.0f}/s "
            f"(median of 3); ratio {best / wrk_rps:.2f}"
        )
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    parts = {"a": part_a, "b": part_b, "c": part_c}
    for name in sys.argv[1:] or parts:
        parts[name]()
