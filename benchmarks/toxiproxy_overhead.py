"""Overhead of the embedded Toxiproxy server: added round-trip latency and throughput, direct vs proxied.

Both paths are measured in the same run against the same loopback echo server (its own process), with
no toxics on the proxy, in alternating blocks so machine noise hits both alike. Every loop is bounded
by a count. Upstream's Go server claims under 300 µs per hop; this reports what ours adds.
Run: python benchmarks/toxiproxy_overhead.py [--round-trips 2000] [--megabytes 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chaos.toxiproxy_client import ToxiproxyClient, free_loopback_port, stop_toxiproxy  # noqa: E402

ECHO_SERVER = """
import socket, sys, threading
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def echo(conn):
    with conn:
        while data := conn.recv(262144):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""
MESSAGE = b"x" * 64
BLOCKS = 4


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    """Start a loopback server process and wait (bounded) until its port accepts connections."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return process
    stop_toxiproxy(process)
    raise SystemExit(f"server did not start: {argv}")


def connect(port: int) -> socket.socket:
    """A TCP_NODELAY client socket to a loopback port."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> None:
    """Read and discard `size` bytes."""
    remaining = size
    view = bytearray(min(size, 1 << 20))
    while remaining:
        got = sock.recv_into(view, min(len(view), remaining))
        if not got:
            raise ConnectionError("closed early")
        remaining -= got


def round_trips_us(port: int, count: int) -> list[float]:
    """`count` request/response round trips of a 64-byte message on one connection, in microseconds."""
    samples = []
    with connect(port) as sock:
        for _ in range(count):
            started = time.perf_counter_ns()
            sock.sendall(MESSAGE)
            recv_exactly(sock, len(MESSAGE))
            samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def throughput_mb_s(port: int, megabytes: int) -> float:
    """MB/s of streaming `megabytes` MB through the echo server (sent and received concurrently)."""
    block = b"\0" * (1 << 20)
    with connect(port) as sock:
        sender = threading.Thread(target=lambda: [sock.sendall(block) for _ in range(megabytes)], daemon=True)
        started = time.perf_counter()
        sender.start()
        recv_exactly(sock, megabytes * len(block))
        elapsed_s = time.perf_counter() - started
        sender.join(timeout=60)
    return megabytes / elapsed_s


def percentile(samples: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=2000, help="round trips per path")
    parser.add_argument("--megabytes", type=int, default=64, help="MB streamed per throughput sample")
    parser.add_argument("--repeats", type=int, default=3, help="throughput samples per path")
    args = parser.parse_args()
    echo_port, api_port = free_loopback_port(), free_loopback_port()
    echo = start([sys.executable, "-c", ECHO_SERVER, str(echo_port)], echo_port)
    server = start([sys.executable, "-m", "chaos.toxiproxy", "--port", str(api_port)], api_port)
    try:
        client = ToxiproxyClient(f"http://127.0.0.1:{api_port}")
        proxy_port = client.create_proxy("bench", f"127.0.0.1:{echo_port}").port
        paths = {"direct": echo_port, "proxied": proxy_port}
        latency: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(BLOCKS):
            for name, port in paths.items():
                latency[name] += round_trips_us(port, args.round_trips // BLOCKS)
        rates: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):
            for name, port in paths.items():
                rates[name].append(throughput_mb_s(port, args.megabytes))
    finally:
        stop_toxiproxy(server)
        stop_toxiproxy(echo)
    report(latency, rates, args)


def report(latency: dict[str, list[float]], rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    """Print medians, p99s, throughput and the proxied/direct ratios."""
    print(f"embedded toxiproxy overhead ({args.round_trips} round trips of 64 B; {args.repeats} x {args.megabytes} MB)")
    figures = {}
    for name in ("direct", "proxied"):
        figures[name] = (
            statistics.median(latency[name]),
            percentile(latency[name], 0.99),
            statistics.median(rates[name]),
        )
        median_us, p99_us, rate = figures[name]
        print(f"  {name:8} round trip median {median_us:8.1f} us  p99 {p99_us:8.1f} us  throughput {rate:8.1f} MB/s")
    direct, proxied = figures["direct"], figures["proxied"]
    print(
        f"  added    round trip median {proxied[0] - direct[0]:8.1f} us  p99 {proxied[1] - direct[1]:8.1f} us"
        f"  (two hops: client->proxy->echo and back)"
    )
    print(
        f"  ratio    proxied/direct median x{proxied[0] / direct[0]:.2f}  p99 x{proxied[1] / direct[1]:.2f}"
        f"  throughput x{proxied[2] / direct[2]:.2f}"
    )


if __name__ == "__main__":
    main()
