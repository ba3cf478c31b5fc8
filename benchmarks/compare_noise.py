"""Noise control of `certify compare`: N+1 G2 runs of one unchanged target, N consecutive comparisons.

Run: python benchmarks/compare_noise.py [N] [--target DIR] [--gates G2] [--out DIR] [--reuse] [--power MS]

Each run is `certify run --mode ci --gates G2` of the same commit in its own process (N defaults
to 10, the reference target by default). Each pack is compared with the one before it under the
standard policy's [regression] rules. A comparison of two runs of unchanged code that reports a
regression is a false alarm: the figure printed is how many of the N comparisons had none (the
regression issue asks for at least 9 of 10), with every false alarm's figure and interval, the
median of each run's wall time, and the median time of one comparison. A comparison in which a
profile's latency was "not compared: host busy" (either run's host above the policy's
max_host_other_cpu_pct / max_host_steal_pct) is counted apart: neither clean nor a false alarm,
undecided. Each run's host figures (median other-CPU and steal per profile, % of one core) are
printed; packs from before host recording print "host load not recorded". `--reuse` compares the
packs an earlier invocation left in --out instead of running again (to re-judge them under changed
rules; packs from before host recording included).
`--power MS` also adds MS milliseconds to every sample of one request of the newer pack of each pair,
one request at a time, and counts how many of those real-sized shifts the rules catch (power).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.compare import REGRESSION, _latency_figures, _profiles, compare_packs  # noqa: E402
from harness.compare_bootstrap import block_length  # noqa: E402
from harness.compare_host import HOST_BUSY, host_load  # noqa: E402
from harness.compare_rules import RegressionRules  # noqa: E402
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


def power(base: Path, new: Path, added_ms: float, rules: RegressionRules) -> tuple[int, int]:
    """(caught, tried): each request of each profile both packs hold, its new samples shifted by added_ms."""
    caught = tried = 0
    old_p, new_p = _profiles(base), _profiles(new)
    for pid in sorted(old_p.keys() & new_p.keys()):
        for request in sorted(old_p[pid][0].keys() & new_p[pid][0].keys()):
            (old_t, old_ms), (new_t, new_ms) = old_p[pid][0][request], new_p[pid][0][request]
            blocks = (block_length(old_t, rules.block_s), block_length(new_t, rules.block_s))
            shifted = [ms + added_ms for ms in new_ms]
            figures = _latency_figures(f"{pid} {request}", old_ms, shifted, rules, blocks)
            caught += any(f.verdict == REGRESSION and f.blocks for f in figures)
            tried += 1
    return caught, tried


def host_figures(pack: Path) -> str:
    """One line of a pack's host figures per G2 profile: median other-CPU and steal (% of one core)."""
    load = pack / "gates" / "G2" / "load"
    index = json.loads((load / "index.json").read_text(encoding="utf-8")) if (load / "index.json").is_file() else {}
    parts = []
    for pid in index.get("profiles", []):
        record = json.loads((load / pid / "profile.json").read_text(encoding="utf-8"))
        host = host_load(record)
        parts.append(f"{pid} " + (f"other {host.other_cpu_pct:g} steal {host.steal_pct:g}" if host else "not recorded"))
    if parts and all(part.endswith("not recorded") for part in parts):
        return "host load not recorded"
    return "host % of one core: " + ("; ".join(parts) or "no G2 profiles")


def main() -> int:
    """Run, compare consecutive packs, print the false-alarm count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=10)
    parser.add_argument("--target", type=Path, default=REPO / "examples" / "guardian")
    parser.add_argument("--gates", default="G2")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="compare the packs already in --out")
    parser.add_argument("--power", type=float, default=0.0, metavar="MS", help="also count shifts of MS caught")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="compare-noise-"))
    cache = Path.home() / ".cache" / "release-harness" / "venvs"
    rules = standard_policy().policy.regression
    packs, walls, compare_s, clean, busy, caught = [], [], [], 0, 0, [0, 0]
    for index in range(args.n + 1):
        pack = out / f"run{index:02d}"
        if not (args.reuse and (pack / "manifest.json").is_file()):
            walls.append(run_pack(args.target.resolve(), args.gates, pack, cache))
        packs.append(pack)
        print(f"run{index:02d}: {host_figures(pack)}")
        if index == 0:
            continue
        started = time.monotonic()
        report = compare_packs(packs[-2], pack, rules)
        compare_s.append(time.monotonic() - started)
        pair = f"run{index - 1:02d} -> run{index:02d}"
        alarms = [f for f in report["figures"] if f["verdict"] == REGRESSION]
        undecided = [f for f in report["figures"] if f["verdict"] == HOST_BUSY]
        clean += not alarms and not undecided
        busy += not alarms and bool(undecided)
        for f in alarms:
            print(f"{pair}: false alarm {f['name']} {f['base']} -> {f['new']} "
                  f"{f['unit']}, interval {f['interval']}, blocks={f['blocks']}")  # fmt: skip
        for row in report["host"]:
            if row["state"] == "busy":
                print(f"{pair}: {row['profile']} not compared, {row['why']}")
        print(
            f"{pair}: {len(report['figures'])} figures, {len(alarms)} regression(s), "
            f"{len(undecided)} not compared (host busy)"
        )
        if args.power > 0:
            found, tried = power(packs[-2], pack, args.power, rules)
            caught = [caught[0] + found, caught[1] + tried]
    print(f"comparisons without a regression: {clean} of {args.n} (no significant change throughout)")
    print(f"comparisons not decided, host busy (no regression among the compared figures): {busy} of {args.n}")
    print(f"comparisons with a false alarm: {args.n - clean - busy} of {args.n}")
    if args.power > 0:
        print(f"power: +{args.power:g} ms on one request of the newer pack caught in {caught[0]} of {caught[1]}")
    one = statistics.median(compare_s)
    wall = f"run wall time median {statistics.median(walls):.1f} s" if walls else "runs reused (none run now)"
    print(f"{wall}; one comparison median {one:.2f} s")
    print(f"packs kept in {out}")
    return 0 if clean >= 0.9 * args.n else 1


if __name__ == "__main__":
    sys.exit(main())
