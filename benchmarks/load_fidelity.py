"""How faithful G2's numbers are: measured in one run against a loopback endpoint that answers after exactly D ms.

The endpoint is benchmarks/_delay_server.py (stdlib, one epoll loop, its own process): it starts a
request's clock when the request head arrived at its socket (the kernel's receive stamp), writes a
fixed answer at that clock + D, and reports its own lateness. The harness's driver ends each sample
when the answer arrived at its socket (load/stamped_http.py), so neither side's wake-up is counted. Parts:

(a) fixed delay D = 5, 50, 200 ms, median of 3 runs of 10 s at 23/s: the harness's p50 and p99 from
    the planned start (corrected) vs D, each judged within max(2% of D, 0.5 ms); beside them, from the
    same run, two reference clients timing from their own send to their own reading (a raw socket: the
    endpoint, loopback and the client's wake-up; a plain keep-alive http.client: a simple Python HTTP
    client), the server's own lateness, and how many of the harness's samples the socket timed.
    23/s, not 20/s: at 20/s (50 ms apart) every answer to D = 50 or 200 came back exactly when the
    driver was sending the next arrival, which charged that send (~0.3-0.5 ms) to every sample;
(b) an endpoint that stalls 1 s once: p99 from the planned start (corrected) vs from the send, and vs a
    closed-loop client timing from its own send (the coordinated-omission mistake);
(c) the highest open-model rate sustained (>=95% delivered, <=1% late, no errors, in 2 of up to 3
    runs of 5 s) on a ladder that stops at the first rate not sustained, driven by Locust with 2
    worker processes (LADDER_WORKERS), vs `wrk -t2 -c50 -d5s` (median of 3) on the same endpoint and
    server process, as a ratio.

Usage: python benchmarks/load_fidelity.py [a] [b] [c]   (all by default; needs locust in this
interpreter, and wrk on PATH for (c): apt-get install -y wrk)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from load.stats import nearest_rank, parse_raw, profile_stats  # noqa: E402

SERVER = Path(__file__).with_name("_delay_server.py")
DELAYS_MS = (5, 50, 200)
FIXED_RATE_PER_S = 23
"""(a)'s rate: its 43.5 ms spacing is no divisor of any D, so answers never coincide with the next send."""
LADDER_PER_S = (1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000, 12000, 16000, 20000, 24000, 28000, 32000)
LADDER_WORKERS = 2
"""Locust worker processes for (c): one per core of the 2-core machine the issue names."""


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def delay_server() -> Iterator[int]:
    """Run the delay endpoint in its own process for the block; yield its port; stop it by pid after."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(port)])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("benchmark server did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _plan(
    port: int,
    path: str,
    arrivals: list[list[object]],
    out: Path,
    *,
    duration_s: float,
    workers: int,
    max_in_flight: int,
) -> dict[str, Any]:
    """The driver's plan (the shape load/runner.py writes) for one request repeated at the planned times."""
    request = {"method": "GET", "path": path, "json_body": None, "expect_status": [200], "poll": None, "follow": []}
    return {
        "profile": "bench",
        "base_url": f"http://127.0.0.1:{port}",
        "workers": workers,
        "max_in_flight": max_in_flight,
        "http_timeout_s": 10,
        "drain_s": 5,
        "duration_s": duration_s,
        "out_dir": str(out),
        "requests": {"r": request},
        "arrivals": arrivals,
    }


def _locust_argv(duration_s: float, workers: int) -> list[str]:
    """Locust's argv: headless, one driver per process; a master plus local worker processes if workers > 1.

    The workers are started with `--processes` as load/runner.py starts them; each drives its share of the arrivals.
    """
    argv = [sys.executable, "-m", "locust", "-f", str(REPO / "load" / "locustfile.py"), "--headless"]
    argv += ["-u", str(workers), "-r", str(workers), "--run-time", f"{int(duration_s + 20)}s", "--stop-timeout", "5"]
    argv += ["--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING"]
    if workers > 1:
        port = str(free_port())
        argv += ["--processes", str(workers), "--master-bind-port", port, "--master-port", port]
    return argv


def _run_group(argv: list[str], cwd: str, env: dict[str, str], timeout_s: float) -> str:
    """Run argv in its own process group; kill that group (by its pid) on timeout; return stderr."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        return proc.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[1]


def drive(
    port: int, path: str, rate_s: float, duration_s: float, *, max_in_flight: int = 200, workers: int = 1
) -> dict[str, Any]:
    """Run the harness's Locust driver on a constant-rate plan; return stats from its raw CSVs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        arrivals: list[list[object]] = [[round(k / rate_s, 6), "r"] for k in range(int(rate_s * duration_s))]
        plan = _plan(port, path, arrivals, out, duration_s=duration_s, workers=workers, max_in_flight=max_in_flight)
        (out / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        env = {"PATH": "/usr/bin:/bin", "CERTIFY_LOAD_PLAN": str(out / "plan.json"), "HOME": tmp}
        stderr = _run_group(_locust_argv(duration_s, workers), tmp, env, duration_s + 60)
        raws = sorted(out.glob("raw-w*.csv"))
        if len(raws) < workers:
            raise RuntimeError(f"Locust wrote {len(raws)} of {workers} raw files; stderr: {stderr[-800:]}")
        rows = [row for raw in raws for row in parse_raw(raw.read_bytes())]
        return profile_stats(rows, len(arrivals), 1.0, 0.25, 0.95)


def _paced_ms(exchange: Callable[[], None], rate_s: float, count: int) -> dict[str, float]:
    """p50/p99 of exchange() timed from its own start, run count times at rate_s; the first second dropped."""
    latencies = []
    start = time.perf_counter()
    for k in range(count):
        time.sleep(max(0.0, start + k / rate_s - time.perf_counter()))
        sent = time.perf_counter()
        exchange()
        latencies.append((time.perf_counter() - sent) * 1000)
    ordered = sorted(latencies[int(rate_s) :])
    return {"p50": nearest_rank(ordered, 0.5), "p99": nearest_rank(ordered, 0.99)}


def reference_ms(port: int, path: str, rate_s: float, count: int) -> dict[str, float]:
    """p50/p99 of a plain keep-alive http.client, paced at rate_s, timing from its own send.

    At a rate far below the server's capacity nothing queues, so this is what the endpoint takes for a
    simple Python client on this machine (server, loopback and http.client's own parsing included).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def exchange() -> None:
        conn.request("GET", path)
        conn.getresponse().read()

    try:
        return _paced_ms(exchange, rate_s, count)
    finally:
        conn.close()


def raw_reference_ms(port: int, path: str, rate_s: float, count: int) -> dict[str, float]:
    """p50/p99 of a raw keep-alive socket writing a fixed request and reading the fixed answer.

    What a client timing from its own send to its own reading sees with no HTTP library: the endpoint,
    the loopback stack and its own wake-up; what http.client adds above it is its own request building
    and response parsing.
    """
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def exchange() -> None:
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"\r\n\r\nok"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError("benchmark server closed the connection")
                answer += chunk

        return _paced_ms(exchange, rate_s, count)


def server_lateness_ms(port: int) -> dict[str, float]:
    """p50/p99 of the server's own lateness (answer written - head arrived - D) since the last call, in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/server-errors")
    body = conn.getresponse().read().decode()
    conn.close()
    ordered = sorted(int(us) / 1000 for us in body.split(",") if us)
    return {"p50": nearest_rank(ordered, 0.5), "p99": nearest_rank(ordered, 0.99)}


def _verdict(measured_ms: float, delay_ms: int) -> str:
    """measured - D, and whether it is within max(2% of D, 0.5 ms)."""
    error = measured_ms - delay_ms
    bound = max(0.02 * delay_ms, 0.5)
    return f"error {error:+.3f} (bound {bound:.1f}: {'ok' if abs(error) <= bound else 'MISSED'})"


def _fixed_delay(port: int, delay_ms: int) -> None:
    """Three harness runs interleaved with three runs of each reference client at one D; print medians vs D."""
    path, rate, count = f"/delay?ms={delay_ms}", FIXED_RATE_PER_S, 10 * FIXED_RATE_PER_S
    runs: list[dict[str, Any]] = []
    refs, raws = [], []
    for _ in range(3):
        runs.append(drive(port, path, rate, 10)["http"])
        refs.append(reference_ms(port, path, rate, count))
        raws.append(raw_reference_ms(port, path, rate, count))
    server = server_lateness_ms(port)
    by_socket = sum(run["ended_by"]["socket"] for run in runs)
    samples = sum(run["ended_by"]["socket"] + run["ended_by"]["driver"] for run in runs)
    p50 = statistics.median(run["corrected_ms"]["p50"] for run in runs)
    p99 = statistics.median(run["corrected_ms"]["p99"] for run in runs)
    sent_p50 = statistics.median(run["uncorrected_ms"]["p50"] for run in runs)
    raw50, raw99 = (statistics.median(raw[name] for raw in raws) for name in ("p50", "p99"))
    ref50, ref99 = (statistics.median(ref[name] for ref in refs) for name in ("p50", "p99"))
    print(
        f"    D={delay_ms:>3} ms: harness p50 {p50:8.3f} ms, {_verdict(p50, delay_ms)}; "
        f"p99 {p99:8.3f} ms, {_verdict(p99, delay_ms)}"
    )
    print(
        f"              from their own send: raw socket p50 D{raw50 - delay_ms:+.3f}, p99 D{raw99 - delay_ms:+.3f}; "
        f"http.client p50 D{ref50 - delay_ms:+.3f}, p99 D{ref99 - delay_ms:+.3f}; "
        f"harness p50 D{sent_p50 - delay_ms:+.3f}"
    )
    print(
        f"              harness p50 - raw socket {p50 - raw50:+.3f}, - http.client {p50 - ref50:+.3f}; "
        f"server's own lateness p50 {server['p50']:.3f}, p99 {server['p99']:.3f} ms; "
        f"harness samples timed by the socket {by_socket}/{samples}"
    )


def part_a() -> None:
    """Fixed delays: the harness's p50/p99 vs D, beside a reference client and the server's own lateness."""
    rate = FIXED_RATE_PER_S
    print(f"(a) fixed delay D; harness p50/p99 from planned start, median of 3 runs of 10 s at {rate}/s (1 driver);")
    print(f"    references at {rate}/s for 10 s each, interleaved with the runs: a raw socket and a plain http.client;")
    print("    server's own lateness: answer written - request head arrived - D, over all of D's requests")
    with delay_server() as port:
        for delay_ms in DELAYS_MS:
            _fixed_delay(port, delay_ms)


def closed_loop_p99(port: int, rate_s: float, duration_s: float) -> float:
    """A closed-loop client pacing at rate_s, timing from its own send: what coordinated omission reports."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < duration_s:
        time.sleep(max(0.0, start + k / rate_s - time.perf_counter()))
        sent = time.perf_counter()
        conn.request("GET", "/stall-once")
        conn.getresponse().read()
        latencies.append((time.perf_counter() - sent) * 1000)
        k += 1
    conn.close()
    return nearest_rank(sorted(latencies[int(rate_s) :]), 0.99)


def part_b() -> None:
    """A single 1 s stall: corrected vs uncorrected p99, and a closed-loop client's p99."""
    print("(b) endpoint that stalls (the whole server) 1 s once, 5 s after it starts; 50 arrivals/s for 20 s")
    with delay_server() as port:
        stats = drive(port, "/stall-once", 50, 20)
    with delay_server() as port:
        closed = closed_loop_p99(port, 50, 20)
    corrected = stats["http"]["corrected_ms"]["p99"]
    uncorrected = stats["http"]["uncorrected_ms"]["p99"]
    print(f"    open model, from planned start: p99 {corrected:.1f} ms; from actual send: p99 {uncorrected:.1f} ms")
    print(f"    closed-loop client from its own send (coordinated omission): p99 {closed:.1f} ms")


def _sustained(stats: dict[str, Any]) -> bool:
    """>=95% of the plan delivered, <=1% sent more than 0.25 s late, no errors."""
    delivery = stats["delivery"]
    return bool(
        delivery["delivered_ratio"] >= 0.95
        and delivery["late"] <= 0.01 * delivery["planned"]
        and stats["http"]["errors"] == 0
    )


def _rung(port: int, rate: int) -> tuple[bool, list[dict[str, Any]]]:
    """Up to 3 runs of 5 s at rate, stopping once 2 agree; sustained when at least 2 runs were."""
    runs: list[dict[str, Any]] = []
    passed = 0
    while len(runs) - passed < 2 and passed < 2:
        runs.append(drive(port, "/delay?ms=0", rate, 5, max_in_flight=500, workers=LADDER_WORKERS))
        passed += _sustained(runs[-1])
    return passed >= 2, runs


def climb_ladder(port: int) -> tuple[int, int | None]:
    """Run the ladder up to the first rate not sustained; return (highest sustained, first not sustained)."""
    best = 0
    for rate in LADDER_PER_S:
        ok, runs = _rung(port, rate)
        delivered = ", ".join(f"{run['delivery']['delivered_ratio']:.1%}" for run in runs)
        print(
            f"    {rate:>5}/s: {sum(map(_sustained, runs))}/{len(runs)} runs sustained; delivered {delivered}; "
            f"late {max(run['delivery']['late'] for run in runs)}, "
            f"max send lag {max(run['delivery']['max_send_lag_ms'] for run in runs):.0f} ms, "
            f"errors {sum(run['http']['errors'] for run in runs)}, "
            f"median p99 {statistics.median(run['http']['corrected_ms']['p99'] for run in runs):.1f} ms "
            f"-> {'sustained' if ok else 'not sustained'}"
        )
        if not ok:
            return best, rate
        best = rate
    return best, None


def wrk_median_per_s(port: int) -> float:
    """Requests/s of `wrk -t2 -c50 -d5s` on /delay?ms=0, median of 3 runs."""
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
    return statistics.median(runs)


def part_c() -> None:
    """Highest sustained open-model rate vs wrk on the same endpoint and server process."""
    print(
        "(c) highest sustained open-model rate vs wrk, GET /delay?ms=0, sustained in 2 of up to 3 runs of 5 s "
        f"per step;\n    Locust master + {LADDER_WORKERS} worker processes (max_in_flight 500 each), "
        "2 cores shared with the server"
    )
    with delay_server() as port:
        best, failed = climb_ladder(port)
        if shutil.which("wrk") is None:
            print("    wrk not installed (apt-get install -y wrk): no ratio")
            return
        wrk_per_s = wrk_median_per_s(port)
    bracket = f"first not sustained {failed}/s" if failed else "every step sustained (a lower bound)"
    print(
        f"    open model sustained {best}/s ({bracket}); wrk (closed loop, 2 threads, 50 connections) "
        f"{wrk_per_s:.0f}/s (median of 3); ratio {best / wrk_per_s:.3f}"
        + (f" (< {failed / wrk_per_s:.3f})" if failed else "")
    )


if __name__ == "__main__":
    parts = {"a": part_a, "b": part_b, "c": part_c}
    for name in sys.argv[1:] or parts:
        parts[name]()
