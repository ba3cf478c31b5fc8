"""Measure guardian's submission throughput and latency on this machine.

Starts a real instance (``python -m guardian serve``) plus the stand-in upstream on free ports
in a temporary data dir, drives bounded open-loop submission streams at increasing rates, and
prints sustained submissions/s with exact p50/p99 submit latency computed from the raw samples.
Latency is measured from each request's *scheduled* send time, so a server that falls behind
cannot hide it (no coordinated omission). It then measures end-to-end task latency per kind
from the server's own ``created_at``/``finished_at`` stamps, and stops everything by pid.

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams: httpx's
connection pool becomes the bottleneck once thousands of requests wait on it, which would
measure the client instead of the service.

Run:  python benchmarks/guardian_throughput.py [--quick]
Needs the guardian package installed (``pip install -e examples/guardian``) and httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


class RawHttpPool:
    """A fixed set of keep-alive HTTP/1.1 connections; requests wait FIFO for a free one."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        """Remember the target; ``open()`` connects."""
        self.host, self.port, self.connections = host, port, connections
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue())

    async def open(self) -> None:
        """Open every connection."""
        for _ in range(self.connections):
            self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def close(self) -> None:
        """Close every idle connection."""
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST ``body`` to ``path``; return (status, response body)."""
        reader, writer = await self.idle.get()
        for attempt in (1, 2):
            try:
                status, payload = await self._exchange(reader, writer, path, body)
            except ConnectionError:
                # The server closed this idle keep-alive connection before reading our
                # request (nothing was processed): reconnect once and send it again.
                writer.close()
                reader, writer = await asyncio.open_connection(self.host, self.port)
                if attempt == 2:
                    self.idle.put_nowait((reader, writer))
                    raise
                continue
            except (OSError, ValueError, asyncio.IncompleteReadError):
                writer.close()
                self.idle.put_nowait(await asyncio.open_connection(self.host, self.port))
                raise
            self.idle.put_nowait((reader, writer))
            return status, payload
        raise ConnectionError("unreachable")

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        path: str, body: bytes) -> tuple[int, bytes]:
        """Send one request on an open connection and read the response."""
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed by server before answering")
        status = int(status_line.split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await reader.readexactly(length)


@dataclass(frozen=True)
class StageResult:
    """What one constant-rate stage measured."""

    label: str
    target_per_s: float
    duration_s: float
    sent: int
    accepted: int
    errors: int
    achieved_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(samples: list[float], fraction: float) -> float:
    """Exact nearest-rank percentile of raw samples (nan when empty)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a process in its own session with output to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)


def stop(process: subprocess.Popen[bytes], timeout_s: float = 40.0) -> int:
    """SIGTERM by pid, wait, SIGKILL the group if needed; return the exit code."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    return int(process.returncode)


def wait_ready(base: str, timeout_s: float = 60.0) -> None:
    """Poll /readyz until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} not ready after {timeout_s} s")


async def run_stage(
    pool: RawHttpPool, label: str, rate_per_s: float, duration_s: float,
    body: dict[str, object],
) -> tuple[StageResult, list[str]]:
    """Send ``rate_per_s * duration_s`` submissions on an open-loop schedule."""
    count = max(1, round(rate_per_s * duration_s))
    latencies_ms: list[float] = []
    ids: list[str] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    encoded = json.dumps(body).encode()
    error_kinds: dict[str, int] = {}

    async def one(index: int) -> None:
        nonlocal errors
        scheduled = t0 + index / rate_per_s
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            status, payload = await pool.post_json("/api/tasks", encoded)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            errors += 1
            error_kinds[type(exc).__name__] = error_kinds.get(type(exc).__name__, 0) + 1
            return
        if status == 201:
            latencies_ms.append((loop.time() - scheduled) * 1000)
            ids.append(json.loads(payload)["id"])
        else:
            errors += 1
            error_kinds[f"http_{status}"] = error_kinds.get(f"http_{status}", 0) + 1

    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = loop.time() - t0
    if error_kinds:
        print(f"  {label}: errors by kind {error_kinds}", flush=True)
    result = StageResult(
        label=label, target_per_s=rate_per_s, duration_s=round(elapsed, 2), sent=count,
        accepted=len(latencies_ms), errors=errors,
        achieved_per_s=round(len(latencies_ms) / elapsed, 1),
        p50_ms=round(percentile(latencies_ms, 0.50), 2),
        p99_ms=round(percentile(latencies_ms, 0.99), 2),
        max_ms=round(max(latencies_ms, default=math.nan), 2),
    )
    return result, ids


async def wait_done(client: httpx.AsyncClient, ids: list[str], timeout_s: float) -> list[dict]:
    """Poll until every task is terminal (bounded); return the final records."""
    deadline = time.monotonic() + timeout_s
    pending = list(ids)
    done: list[dict] = []
    while pending and time.monotonic() < deadline:
        still: list[str] = []
        for task_id in pending:
            record = (await client.get(f"/api/tasks/{task_id}")).json()
            if record["status"] in {"completed", "failed", "cancelled"}:
                done.append(record)
            else:
                still.append(task_id)
        pending = still
        if pending:
            await asyncio.sleep(0.2)
    return done


def print_stage(result: StageResult) -> None:
    """Print one stage as a table row, with the host's 1-minute load average after it.

    The load average is printed because the figures are only meaningful on an otherwise idle
    machine: anything else using the CPUs shows up there.
    """
    load_1m = os.getloadavg()[0]
    print(f"{result.label:<22} target {result.target_per_s:>7.2f}/s  achieved "
          f"{result.achieved_per_s:>6.1f}/s  n={result.accepted:>5} err={result.errors:>3}  "
          f"p50 {result.p50_ms:>8.2f} ms  p99 {result.p99_ms:>8.2f} ms  "
          f"max {result.max_ms:>8.2f} ms  load1 {load_1m:.2f}", flush=True)


async def benchmark(base: str, quick: bool, low_rate_s: float) -> dict[str, object]:
    """Run all stages against ``base`` and return the figures."""
    report: dict[str, object] = {"stages": [], "e2e": {}}
    body = {"kind": "orchestrate", "payload": {}}
    host, port = base.removeprefix("http://").split(":")
    pool = RawHttpPool(host, int(port), connections=64)
    await pool.open()
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        await run_stage(pool, "warm-up", 50, 2, body)
        plan = [("low 10/min", 10 / 60, low_rate_s), ("low ~100/min", 100 / 60, low_rate_s)]
        plan += [(f"ramp {rate}/s", rate, 3.0 if quick else 5.0)
                 for rate in (100, 200, 300, 400, 500)]
        plan += [("sustained 300/s", 300, 10.0 if quick else 30.0)]
        for label, rate, duration in plan:
            if duration <= 0:
                continue
            result, _ = await run_stage(pool, label, rate, duration, body)
            report["stages"].append(result.__dict__)  # type: ignore[union-attr]
            print_stage(result)
            await asyncio.sleep(2.0)  # let the workers drain the backlog between stages
        for kind, payload in (("orchestrate", {}), ("compute", {}), ("dependency", {"echo": "b"})):
            result, ids = await run_stage(pool, f"e2e {kind} 20/s", 20, 5.0,
                                          {"kind": kind, "payload": payload})
            records = await wait_done(client, ids, timeout_s=60)
            lat_ms = [(r["finished_at"] - r["created_at"]) * 1000 for r in records
                      if r["status"] == "completed"]
            e2e = {"submitted": len(ids), "completed": len(lat_ms),
                   "p50_ms": round(percentile(lat_ms, 0.5), 1),
                   "p99_ms": round(percentile(lat_ms, 0.99), 1)}
            report["e2e"][kind] = e2e  # type: ignore[index]
            print(f"end-to-end {kind:<12} n={e2e['completed']}/{e2e['submitted']}  "
                  f"p50 {e2e['p50_ms']} ms  p99 {e2e['p99_ms']} ms  "
                  f"load1 {os.getloadavg()[0]:.2f}", flush=True)
    await pool.close()
    return report


def main() -> int:
    """Start the instance, run the benchmark, stop everything; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter stages (smoke run)")
    parser.add_argument("--low-rate-duration-s", type=float, default=60.0,
                        help="duration of the 10/min and 100/min stages (0 skips them)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json-out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    port, upstream_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="guardian-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        upstream = start([sys.executable, "-m", "guardian", "upstream", "--port",
                          str(upstream_port)], Path(tmp) / "upstream.out")
        service = start([sys.executable, "-m", "guardian", "serve", "--port", str(port),
                         "--data-dir", str(data_dir), "--workers", str(args.workers),
                         "--upstream-url", f"http://127.0.0.1:{upstream_port}"],
                        Path(tmp) / "serve.out")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base)
            print(f"guardian benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
                  f"workers={args.workers}, serve pid {service.pid}, "
                  f"load1 at start {os.getloadavg()[0]:.2f}", flush=True)
            report = asyncio.run(benchmark(base, args.quick, args.low_rate_duration_s))
        finally:
            code = stop(service)
            stop(upstream)
            print(f"service stopped, exit code {code}")
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
