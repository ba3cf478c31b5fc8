"""The honest path, repeated: N ci-mode certify runs of the reference target, per gate counts and times.

Run: python benchmarks/honest_repeat.py [N] [--gates PB] [--target DIR] [--out DIR] [--jobs J]

Each run is `certify run --mode ci` in its own process (N defaults to 5; `--gates` repeats just
those gates, e.g. `--gates PB` or `--gates G4`, for a faster look at one). It prints, per gate,
how many runs gave PASS / FAIL / anything else, the gate's duration (median, max) and every
non-PASS reason; then each run's wall time (and the median) and what each run left in TMPDIR.
A gate that PASSes in some runs and not in others on the same commit is a finding: the lines
headed "intermittent" name the experiment, playbook or profile whose status changed, with counts.
The exit code is 0 when every run of every gate PASSed (or was INCONCLUSIVE offline, listed), else 1.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STATUSES = ("PASS", "FAIL", "INCONCLUSIVE", "NOT_RUN", "ERROR")


def sub_items(details: Any, prefix: str = "") -> dict[str, str]:
    """Every (name -> status) pair inside a verdict's details: experiments, playbooks, profiles."""
    found: dict[str, str] = {}
    if isinstance(details, dict):
        status = details.get("status")
        if isinstance(status, str) and status in STATUSES and prefix:
            found[prefix] = status
        for key, value in details.items():
            name = f"{prefix}/{key}" if prefix else str(key)
            if isinstance(value, str) and value in STATUSES and key != "status":
                found[name] = value
            elif isinstance(value, dict | list):
                found.update(sub_items(value, name))
    elif isinstance(details, list):
        for index, value in enumerate(details):
            label = value.get("id", index) if isinstance(value, dict) else index
            found.update(sub_items(value, f"{prefix}/{label}" if prefix else str(label)))
    return found


def tmp_listing(tmp: Path) -> set[str]:
    """Names directly inside the run's TMPDIR."""
    return {entry.name for entry in tmp.iterdir()} if tmp.exists() else set()


def one_run(args: argparse.Namespace, index: int, out_root: Path, tmp: Path) -> dict[str, Any]:
    """One certify run: its wall time, exit code, per-gate verdicts and durations, and TMPDIR leftovers."""
    out = out_root / f"run-{index:02d}"
    argv = [sys.executable, "-m", "harness.cli", "run", "--mode", "ci", "--target", str(args.target)]
    argv += ["--out", str(out), "--jobs", str(args.jobs)]
    if args.gates:
        argv += ["--gates", args.gates]
    before = tmp_listing(tmp)
    env = {**os.environ, "CI": "true", "TMPDIR": str(tmp)}
    start = time.perf_counter()
    with (out_root / f"run-{index:02d}.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            returncode = proc.wait(timeout=args.timeout_s)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            # The run stops its own children and removes its work dir on SIGTERM; SIGKILL would not.
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            raise
    wall = time.perf_counter() - start
    run: dict[str, Any] = {"index": index, "wall_s": wall, "exit": returncode, "gates": {}}
    results_file = out / "results.json"
    selected = set(args.gates.split(",")) if args.gates else None
    if results_file.exists():
        for result in json.loads(results_file.read_text())["results"]:
            if selected is not None and result["gate"] not in selected:
                continue  # a required gate left out by --gates: NOT_RUN by design, not a finding
            verdict = result["verdict"]
            run["gates"][result["gate"]] = {
                "status": verdict["status"],
                "duration_s": result["duration_s"],
                "reasons": verdict.get("reasons", []),
                "items": sub_items(verdict.get("details") or {}),
            }
    run["leftovers"] = sorted(tmp_listing(tmp) - before)
    return run


def gate_table(runs: list[dict[str, Any]]) -> list[str]:
    """Per gate: status counts and duration median/max over the runs."""
    gates = list(dict.fromkeys(gate for run in runs for gate in run["gates"]))
    lines = [f"{'gate':<5} {'PASS':>4} {'FAIL':>4} {'other':>5}  {'median s':>9} {'max s':>7}"]
    for gate in gates:
        seen = [run["gates"][gate] for run in runs if gate in run["gates"]]
        counts = collections.Counter(item["status"] for item in seen)
        other = sum(n for status, n in counts.items() if status not in ("PASS", "FAIL"))
        durations = [item["duration_s"] for item in seen]
        lines.append(
            f"{gate:<5} {counts['PASS']:>4} {counts['FAIL']:>4} {other:>5}  "
            f"{statistics.median(durations):>9.1f} {max(durations):>7.1f}"
        )
    return lines


def non_pass(runs: list[dict[str, Any]]) -> list[str]:
    """Every non-PASS verdict with its run and its first reasons."""
    lines = []
    for run in runs:
        for gate, item in run["gates"].items():
            if item["status"] != "PASS":
                reasons = "; ".join(item["reasons"][:3]) or "(no reason)"
                lines.append(f"run {run['index']} {gate} {item['status']}: {reasons}")
    return lines


def intermittent(runs: list[dict[str, Any]]) -> list[str]:
    """Gates and their sub-items whose status differed between runs, with the counts of each status."""
    lines = []
    by_gate: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for run in runs:
        for gate, item in run["gates"].items():
            by_gate[gate].append(item)
    for gate, items in by_gate.items():
        if len({item["status"] for item in items}) < 2:
            continue
        counts = collections.Counter(item["status"] for item in items)
        lines.append(f"intermittent {gate}: {dict(counts)}")
        names = dict.fromkeys(name for item in items for name in item["items"])
        for name in names:
            statuses = collections.Counter(item["items"].get(name, "absent") for item in items)
            if len(statuses) > 1:
                lines.append(f"  {gate} {name}: {dict(statuses)}")
    return lines


def _stop(signum: int, frame: object) -> None:
    """SIGTERM ends the benchmark like Ctrl-C, so its scratch TMPDIR is still removed."""
    del signum, frame
    raise KeyboardInterrupt


def main() -> int:
    """Run the repetitions and print the figures; 1 when any gate FAILed or errored in any run."""
    signal.signal(signal.SIGTERM, _stop)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="?", type=int, default=5, help="how many certify runs (default 5)")
    parser.add_argument("--gates", default="", help="repeat only these gates (comma-separated), e.g. PB")
    parser.add_argument("--target", type=Path, default=REPO / "examples" / "guardian")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="where the packs go (default release/artifacts/)")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="longest one run may take")
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_root = (args.out or REPO / "release" / "artifacts" / f"honest-repeat-{stamp}").resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    runs = []
    with tempfile.TemporaryDirectory(prefix="honest-repeat-tmp-") as scratch:
        for index in range(1, args.runs + 1):
            run = one_run(args, index, out_root, Path(scratch))
            runs.append(run)
            statuses = " ".join(f"{gate}={item['status']}" for gate, item in run["gates"].items())
            print(f"run {index}: {run['wall_s']:.0f} s, exit {run['exit']}: {statuses}", flush=True)
    print(f"\n{len(runs)} run(s) of {args.gates or 'every gate'} on {args.target} (packs: {out_root})")
    print("\n".join(gate_table(runs)))
    walls = [run["wall_s"] for run in runs]
    print(
        f"wall s: {', '.join(f'{w:.0f}' for w in walls)}; median {statistics.median(walls):.0f}, max {max(walls):.0f}"
    )
    for run in runs:
        left = ", ".join(run["leftovers"]) or "nothing"
        print(f"run {run['index']} left in TMPDIR: {left}")
    for line in [*intermittent(runs), *non_pass(runs)]:
        print(line)
    (out_root / "honest_repeat.json").write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    failed = any(item["status"] in ("FAIL", "ERROR") for run in runs for item in run["gates"].values())
    return 1 if failed or any(run["leftovers"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
