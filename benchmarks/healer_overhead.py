"""Does guardian's healer slow the service down? Submit p99 with the healer off vs on, in one run.

Alternates instances (off, on, off, on, ...; each a fresh `python -m guardian serve` with the stand-in
upstream, `--healer` added for "on"), lets start-up settle (the healer's first backup and ticks),
then drives the same open-loop submission stream at each and computes exact p50/p99 submit latency
from each request's scheduled send time. Prints every round, the median p99 per arm and the ratio
(target: healer on within 10 % of off). Every process started is stopped by pid.

Run:  python benchmarks/healer_overhead.py [--rounds 3] [--rate 100] [--seconds 20]
Needs guardian installed (`pip install -e examples/guardian`) and httpx.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from guardian_throughput import RawHttpPool, free_port, run_stage, start, stop, wait_ready

SETTLE_S = 8.0


async def measure(port: int, rate: float, seconds: float) -> tuple[float, float, int, int]:
    """One warm-up and one measured stream; return (p50 ms, p99 ms, accepted, errors)."""
    pool = RawHttpPool("127.0.0.1", port, connections=32)
    await pool.open()
    try:
        body = {"kind": "orchestrate", "payload": {"steps": 1, "cost_ms": 1}}
        await run_stage(pool, "warm-up", rate, 2.0, body)
        await asyncio.sleep(1.0)
        result, _ = await run_stage(pool, "measured", rate, seconds, body)
    finally:
        await pool.close()
    return result.p50_ms, result.p99_ms, result.accepted, result.errors


def one_round(healer: bool, rate: float, seconds: float) -> tuple[float, float, int, int]:
    """Start an instance (healer on or off), settle, measure, stop everything."""
    port, upstream_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="guardian-healer-bench-") as tmp:
        upstream = start(
            [sys.executable, "-m", "guardian", "upstream", "--port", str(upstream_port)], Path(tmp) / "upstream.out"
        )
        argv = [sys.executable, "-m", "guardian", "serve", "--port", str(port), "--data-dir", str(Path(tmp) / "d")]
        argv += ["--workers", "2", "--upstream-url", f"http://127.0.0.1:{upstream_port}"]
        service = start(argv + (["--healer"] if healer else []), Path(tmp) / "serve.out")
        try:
            wait_ready(f"http://127.0.0.1:{port}")
            time.sleep(SETTLE_S)
            return asyncio.run(measure(port, rate, seconds))
        finally:
            stop(service)
            stop(upstream)


def main() -> int:
    """Run the alternating rounds and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per arm (alternating)")
    parser.add_argument("--rate", type=float, default=100.0, help="submissions per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured stream length per round")
    args = parser.parse_args()
    print(
        f"submit latency, {args.rate:g}/s for {args.seconds:g} s per round, {args.rounds} rounds per arm, "
        f"alternating; load1 at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    p99s: dict[bool, list[float]] = {False: [], True: []}
    for index in range(args.rounds * 2):
        healer = index % 2 == 1
        p50, p99, accepted, errors = one_round(healer, args.rate, args.seconds)
        p99s[healer].append(p99)
        print(
            f"  round {index // 2 + 1} healer {'on ' if healer else 'off'}: n={accepted} errors={errors} "
            f"p50 {p50:.2f} ms p99 {p99:.2f} ms load1 {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    off, on = statistics.median(p99s[False]), statistics.median(p99s[True])
    ratio = on / off if off else float("nan")
    print(
        f"median p99: healer off {off:.2f} ms, on {on:.2f} ms; ratio on/off {ratio:.2f} "
        f"(target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
