"""Harness overhead (run wall time minus time inside gate tools) and verify time of a 100 MB pack.

Targets (issue 2): overhead under 2 s; `certify verify` of a 100 MB pack under 2 s.
Run: python benchmarks/overhead.py [--repeats 5]. Prints medians; the machine is shared, so
single figures are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.harness.packs import certify_argv, certify_env, committed_copy  # noqa: E402


def _tool_seconds(pack: Path) -> float:
    """Sum of the durations of every tool run recorded in the pack (gates ran one at a time)."""
    return sum(json.loads(p.read_text())["duration_s"] for p in pack.glob("gates/*/runs/*.json"))


def overhead(work: Path, target: Path, repeats: int) -> list[float]:
    """Harness overhead per run of four trivial gates with --jobs 1 (tools run one after another)."""
    figures = []
    for index in range(repeats):
        out = work / f"overhead-{index}"
        argv = certify_argv("run", "--target", str(target), "--gates", "ID,SLEEPY,ENVDUMP", "--jobs", "1",
                            "--out", str(out), "--cache-dir", str(work / "venvs"))
        start = time.perf_counter()
        subprocess.run(argv, env=certify_env(SLEEPY_SECONDS="0.2"), check=True, capture_output=True, timeout=300)
        wall = time.perf_counter() - start
        figures.append(wall - _tool_seconds(out))
    return figures


def verify_times(work: Path, target: Path, repeats: int) -> tuple[int, list[float]]:
    """Size of a 100 MB pack and the wall time of `certify verify` on it."""
    out = work / "bulk"
    argv = certify_argv("run", "--target", str(target), "--gates", "ID,BULK", "--out", str(out),
                        "--cache-dir", str(work / "venvs"))
    subprocess.run(argv, env=certify_env(BULK_MB="100"), check=True, capture_output=True, timeout=600)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    figures = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            certify_argv("verify", str(out)), env=certify_env(), capture_output=True, timeout=300, check=False
        )
        figures.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"verify failed: {done.stdout!r}")
    return size, figures


def main() -> None:
    """Print the two figures with their targets."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    try:
        target = committed_copy("sleepy", work / "sleepy")
        runs = overhead(work, target, args.repeats)
        print(f"harness overhead (3 trivial gates, --jobs 1): median {statistics.median(runs):.2f} s, "
              f"min {min(runs):.2f} s, max {max(runs):.2f} s over {len(runs)} runs (target < 2 s)")
        size, times = verify_times(work, target, args.repeats)
        print(f"certify verify of a {size / 1e6:.0f} MB pack: median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} runs (target < 2 s)")
    finally:
        if not os.environ.get("KEEP_BENCH"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
