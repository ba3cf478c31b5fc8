"""Noise control of `certify compare`: N+1 G2 runs of one unchanged target, N consecutive comparisons.

Run: python benchmarks/compare_noise.py [N] [--target DIR] [--gates G2] [--out DIR] [--reuse]

Each run is `certify run --mode ci --gates G2` of the same commit in its own process (N defaults
to 10, the reference target by default). Each pack is compared with the one before it under the
standard policy's [regression] rules. A comparison of two runs of unchanged code that reports a
regression is a false alarm: the figure printed is how many of the N comparisons had none (the
regression issue asks for at least 9 of 10), with every false alarm's figure and interval, the
median of each run's wall time, and the median time of one comparison. `--reuse` compares the packs
an earlier invocation left in --out instead of running again (to re-judge them under changed rules).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.compare import REGRESSION, compare_packs  # noqa: E402
from harness.policy import standard_policy  # noqa: E402


def run_pack(target: Path, gates: str, out: Path, cache: Path) -> float:
    """One ci run of the gates into out; its wall time (a run that fails to write a pack stops the benchmark)."""
    started = time.monotonic()
    argv = [sys.executable, "-m", "harness.cli", "run", "--target", str(target), "--gates", gates]
    argv += ["--mode", "ci", "--out", str(out), "--cache-dir", str(cache)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
    if not (out / "manifest.json").is_file():
        sys.exit(f"run into {out} wrote no pack (exit {done.returncode}): {done.stderr[-500:]}")
    return time.monotonic() - started


def main() -> int:
    """Run, compare consecutive packs, print the false-alarm count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10)
    parser.add_argument("--target", type=Path, default=REPO / "examples" / "guardian")
    parser.add_argument("--gates", default="G2")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="compare the packs already in --out")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="compare-noise-"))
    cache = Path.home() / ".cache" / "release-harness" / "venvs"
    rules = standard_policy().policy.regression
    packs, walls, compare_s, clean = [], [], [], 0
    for index in range(args.n + 1):
        pack = out / f"run{index:02d}"
        if not (args.reuse and (pack / "manifest.json").is_file()):
            walls.append(run_pack(args.target.resolve(), args.gates, pack, cache))
        packs.append(pack)
        if index == 0:
            continue
        started = time.monotonic()
        report = compare_packs(packs[-2], pack, rules)
        compare_s.append(time.monotonic() - started)
        alarms = [f for f in report["figures"] if f["verdict"] == REGRESSION]
        clean += not alarms
        for f in alarms:
            print(f"run{index - 1:02d} -> run{index:02d}: false alarm {f['name']} {f['base']} -> {f['new']} "
                  f"{f['unit']}, interval {f['interval']}, blocks={f['blocks']}")  # fmt: skip
        print(f"run{index - 1:02d} -> run{index:02d}: {len(report['figures'])} figures, {len(alarms)} regression(s)")
    print(f"comparisons without a regression: {clean} of {args.n}")
    wall, one = statistics.median(walls or [0.0]), statistics.median(compare_s)
    print(f"run wall time median {wall:.1f} s; one comparison median {one:.2f} s")
    print(f"packs kept in {out}")
    return 0 if clean >= 0.9 * args.n else 1


if __name__ == "__main__":
    sys.exit(main())
