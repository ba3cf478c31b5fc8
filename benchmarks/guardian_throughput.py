"""Measure guardian's submission throughput and latency on this machine.

Starts a real instance (``python -m guardian serve``) plus the stand-in upstream on free ports
in a temporary data dir, drives bounded open-loop submission streams at increasing rates, and
prints sustained submissions/s with exact p50/p99 submit latency computed from the raw samples.
Latency is measured from each request's *scheduled* send time, so a server that falls behind
cannot hide it (no coordinated omission). It then measures end-to-end task latency per kind
from the server's own ``created_at``/``finished_at`` stamps, and stops everything by pid.

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
    client: httpx.AsyncClient, label: str, rate_per_s: float, duration_s: float,
    body: dict[str, object],
) -> tuple[StageResult, list[str]]:
    """Send ``rate_per_s * duration_s`` submissions on an open-loop schedule."""
    count = max(1, round(rate_per_s * duration_s))
    latencies_ms: list[float] = []
    ids: list[str] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(index: int) -> None:
        nonlocal errors
        scheduled = t0 + index / rate_per_s
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            response = await client.post("/api/tasks", json=body)
        except httpx.HTTPError:
            errors += 1
            return
        if response.status_code == 201:
            latencies_ms.append((loop.time() - scheduled) * 1000)
            ids.append(response.json()["id"])
        else:
            errors += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = loop.time() - t0
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
            (done if record["status"] in {"completed", "failed", "cancelled"} else still).append(
                record if record["status"] in {"completed", "failed", "cancelled"} else task_id)
        pending = still
        if pending:
            await asyncio.sleep(0.2)
    return done


def print_stage(result: StageResult) -> None:
    """Print one stage as a table row."""
    print(f"{result.label:<26} target {result.target_per_s:>8.2f}/s  achieved "
          f"{result.achieved_per_s:>7.1f}/s  n={result.accepted:>6} errors={result.errors:>3}  "
          f"p50 {result.p50_ms:>7.2f} ms  p99 {result.p99_ms:>7.2f} ms  max {result.max_ms:>7.2f} ms",
          flush=True)


async def benchmark(base: str, quick: bool, low_rate_s: float) -> dict[str, object]:
    """Run all stages against ``base`` and return the figures."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    report: dict[str, object] = {"stages": [], "e2e": {}}
    body = {"kind": "orchestrate", "payload": {}}
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        await run_stage(client, "warm-up", 50, 2, body)
        plan = [("low 10/min", 10 / 60, low_rate_s), ("low ~100/min", 100 / 60, low_rate_s)]
        plan += [(f"ramp {rate}/s", rate, 3.0 if quick else 5.0)
                 for rate in (100, 200, 300, 400, 500)]
        plan += [("sustained 300/s", 300, 10.0 if quick else 30.0)]
        for label, rate, duration in plan:
            if duration <= 0:
                continue
            result, _ = await run_stage(client, label, rate, duration, body)
            report["stages"].append(result.__dict__)  # type: ignore[union-attr]
            print_stage(result)
            await asyncio.sleep(2.0)  # let the workers drain the backlog between stages
        for kind, payload in (("orchestrate", {}), ("compute", {}), ("dependency", {"echo": "b"})):
            result, ids = await run_stage(client, f"e2e {kind} 20/s", 20, 5.0,
                                          {"kind": kind, "payload": payload})
            records = await wait_done(client, ids, timeout_s=60)
            lat_ms = [(r["finished_at"] - r["created_at"]) * 1000 for r in records
                      if r["status"] == "completed"]
            e2e = {"submitted": len(ids), "completed": len(lat_ms),
                   "p50_ms": round(percentile(lat_ms, 0.5), 1),
                   "p99_ms": round(percentile(lat_ms, 0.99), 1)}
            report["e2e"][kind] = e2e  # type: ignore[index]
            print(f"end-to-end {kind:<12} n={e2e['completed']}/{e2e['submitted']}  "
                  f"p50 {e2e['p50_ms']} ms  p99 {e2e['p99_ms']} ms", flush=True)
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
                  f"workers={args.workers}, serve pid {service.pid}", flush=True)
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
