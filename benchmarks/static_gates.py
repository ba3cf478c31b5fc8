"""Static gates G1, G5, G7, G8 on the reference target: each gate's time, and the run's wall time vs their sum.

Run: python benchmarks/static_gates.py [--jobs 4] [--repeats 3]. Prints medians over the repeats;
the four gates run concurrently, so wall time below the sum is the point of the figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GATES = ("G1", "G5", "G7", "G8")


def tracked_copy(dest: Path) -> Path:
    """Copy the tracked files of examples/guardian into a fresh committed repository."""
    listed = subprocess.run(["git", "ls-files", "examples/guardian"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    for name in listed:
        target = dest / Path(name).relative_to("examples/guardian")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    for argv in (["git", "init", "-q"], ["git", "add", "-A"],
                 ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qm", "copy"]):
        subprocess.run(argv, cwd=dest, check=True, capture_output=True)
    return dest


def one_run(target: Path, out: Path, jobs: int) -> tuple[float, dict[str, float], dict[str, str]]:
    """Wall time, per-gate durations and statuses of one concurrent run of the four gates."""
    argv = [sys.executable, "-m", "harness.cli", "run", "--target", str(target), "--gates", ",".join(GATES),
            "--mode", "ci", "--jobs", str(jobs), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=1800, check=False, env={**_env(), "CI": "true"})
    wall = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())["results"]
    return wall, {r["gate"]: r["duration_s"] for r in results}, {r["gate"]: r["verdict"]["status"] for r in results}


def _env() -> dict[str, str]:
    """The current environment."""
    import os  # noqa: PLC0415

    return dict(os.environ)


def main() -> None:
    """Print per-gate medians, the median sum and the median wall time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-static-"))
    try:
        target = tracked_copy(work / "guardian")
        one_run(target, work / "warmup", args.jobs)  # creates the cached venv; not measured
        walls, per_gate, statuses = [], {gate: [] for gate in GATES}, {}
        for index in range(args.repeats):
            wall, durations, statuses = one_run(target, work / f"run-{index}", args.jobs)
            walls.append(wall)
            for gate in GATES:
                per_gate[gate].append(durations[gate])
        for gate in GATES:
            print(f"{gate}: median {statistics.median(per_gate[gate]):.1f} s ({statuses[gate]})")
        total = statistics.median([sum(per_gate[g][i] for g in GATES) for i in range(args.repeats)])
        wall = statistics.median(walls)
        print(f"sum of gate times: median {total:.1f} s; run wall time: median {wall:.1f} s "
              f"(--jobs {args.jobs}, {args.repeats} runs); wall/sum = {wall / total:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
