"""Refresh a target's visual baselines on purpose: `python -m e2e.update_baselines --target DIR`.

Runs the E2E gate alone (`certify run --gates E2E --mode ci`) into a fresh pack, refuses when a
journey failed (a broken page must not become the new baseline), then copies each visual
checkpoint's screenshot to `<baselines>/<journey>/<name>.png`, records the browser and fonts that drew
them in `<baselines>/rendering.json` (see e2e/rendering.py), and prints what changed. Review the
new images and commit them with the change that explains them. (`certify e2e --update-baselines`
is meant to call this.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from e2e import rendering
from gates.e2e import parse_junit
from harness.config import load_config
from harness.errors import HarnessError


def refresh(target: Path, pack: Path) -> list[str]:
    """Copy the visual checkpoints of a finished E2E pack into the target's baselines; return the lines to print."""
    gate = pack / "gates" / "E2E"
    if not (gate / "visual.json").is_file():
        reasons = json.loads((pack / "results.json").read_text(encoding="utf-8"))["results"][0]["verdict"]["reasons"]
        msg = "the E2E gate recorded no visual checkpoint: " + "; ".join(reasons)
        raise HarnessError(msg)
    failed = []
    for phase in json.loads((gate / "phases.json").read_text(encoding="utf-8")):
        if phase["junit"] is None:
            failed.append(f"the {phase['phase']} journeys left no JUnit report (exit {phase['returncode']})")
            continue
        cases = parse_junit((gate / phase["junit"]).read_text(encoding="utf-8"))
        failed += [f"{case['id']}: {case['message']}" for case in cases if case["outcome"] in ("failed", "error")]
    if failed:
        msg = "journeys failed, baselines not updated: " + "; ".join(failed)
        raise HarnessError(msg)
    policy = load_config(target).policy("E2E")
    lines = []
    drawn_with = json.loads((gate / "context.json").read_text(encoding="utf-8")).get("rendering")
    if drawn_with:
        record = target / policy.baselines / rendering.RECORD
        new_record = rendering.record_bytes(drawn_with)
        if not record.is_file() or record.read_bytes() != new_record:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_bytes(new_record)
            lines.append(f"recorded {record}: {rendering.describe(drawn_with)}")
    for entry in json.loads((gate / "visual.json").read_text(encoding="utf-8")):
        destination = target / policy.baselines / entry["journey"] / f"{entry['name']}.png"
        destination.parent.mkdir(parents=True, exist_ok=True)
        new = (pack / entry["actual"]).read_bytes()
        if destination.is_file() and destination.read_bytes() == new:
            lines.append(f"unchanged {destination}")
            continue
        state = "updated" if destination.is_file() else "created"
        destination.write_bytes(new)
        lines.append(f"{state} {destination}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the journeys and refresh the baselines; exit 0 when they were written."""
    parser = argparse.ArgumentParser(prog="python -m e2e.update_baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=Path(), help="target directory holding certify.toml")
    parser.add_argument("--cache-dir", type=Path, help="where target venvs are kept (passed to certify run)")
    parser.add_argument("--keep-pack", type=Path, help="write the E2E pack here instead of a temporary directory")
    args = parser.parse_args(argv)
    target = args.target.resolve()
    with tempfile.TemporaryDirectory(prefix="e2e-baselines-") as scratch:
        pack = (args.keep_pack or Path(scratch) / "pack").resolve()
        command = [sys.executable, "-m", "harness.cli", "run", "--target", str(target), "--gates", "E2E"]
        command += ["--mode", "ci", "--out", str(pack)]
        if args.cache_dir:
            command += ["--cache-dir", str(args.cache_dir)]
        subprocess.run(command, check=False, timeout=1800)
        try:
            lines = refresh(target, pack)
        except (HarnessError, OSError, KeyError, IndexError) as exc:
            sys.stderr.write(f"e2e.update_baselines: {exc}\n")
            return 1
    sys.stdout.write("".join(line + "\n" for line in lines) or "no visual checkpoint\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
