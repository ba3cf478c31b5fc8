"""`certify soak`: the SOAK gate alone against a target, for --hours, or resumed from a pack's recorded hours."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from harness.errors import UsageError

#: `certify soak`'s exit code from the SOAK verdict (3: INCONCLUSIVE, NOT_RUN or ERROR, as for a run).
SOAK_EXIT_CODES = {"PASS": 0, "FAIL": 1}
#: Longest soak one command may ask for: the loop's catalogue week and a day's margin.
MAX_HOURS = 8 * 24.0


def _hours(text: str) -> float:
    """Parse --hours: a positive number of hours, at most MAX_HOURS."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_HOURS):
        msg = f"--hours: expected a number of hours > 0 and <= {MAX_HOURS:g}, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def add_soak_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `certify soak`."""
    soak = sub.add_parser(
        "soak",
        help="run the long soak (P4 load and the self-healing loop) alone and write an evidence pack",
        description="The SOAK gate alone: P4 soak load and the target's playbooks healing faults the harness "
        "injects, for --hours, with hourly figures in soak_report.md. Shorter than the policy's soak "
        "(8 h P4, 7 days for the loop) is marked abbreviated and never counts as the soak. "
        "--resume PACK continues a soak whose harness stopped, from the hours PACK recorded, into a new pack. "
        "Exit code: 0 SOAK PASS, 1 FAIL, 3 INCONCLUSIVE/NOT_RUN/ERROR (an abbreviated release soak), 2 usage, "
        "130 interrupted (resume it).",
    )
    soak.add_argument("--target", type=Path, default=None, help="target directory (default: the reference target)")
    soak.add_argument("--hours", type=_hours, default=None, help="hours to soak (default: the policy's for the mode)")
    soak.add_argument("--resume", type=Path, default=None, metavar="PACK", help="continue the soak recorded in PACK")
    soak.add_argument("--mode", choices=("release", "ci"), default="release", help="release (default) or ci")
    soak.add_argument("--out", type=Path, default=None, help="pack directory (must be new or empty)")
    soak.add_argument("--policy", type=Path, default=None, help="the certifier's policy file")
    soak.add_argument("--cache-dir", type=Path, default=None, help="where target venvs are kept")


def resume_facts(pack: Path) -> tuple[Path | None, str | None]:
    """The target directory and mode a soak pack was run with (from its run.json), for --resume."""
    try:
        run = json.loads((pack / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"--resume {pack}: no run.json; not an evidence pack"
        raise UsageError(msg) from None
    except (OSError, ValueError) as exc:
        msg = f"--resume {pack}: run.json is unreadable: {exc}"
        raise UsageError(msg) from None
    target = (run.get("target") or {}).get("dir")
    return (Path(target) if target else None), run.get("mode")


def hourly_lines(summary_path: Path) -> list[str]:
    """One line per soak segment (hour) from soak_report.json: latency, errors, RSS and fds, heals."""
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    lines = []
    for hour in summary.get("hours", []):
        rss = [hour.get(k) for k in ("rss_start_kb", "rss_end_kb")]
        lines.append(
            f"  segment {hour['index']}: {hour['wall_s']:.0f} s, {hour['requests']} requests, {hour['errors']} failed, "
            f"p50/p90/p99 {hour['p50_ms']}/{hour['p90_ms']}/{hour['p99_ms']} ms, service RSS "
            + ("-" if None in rss else f"{rss[0] / 1024:.1f}->{rss[1] / 1024:.1f} MiB")
            + f", fds {hour['fds_start']}->{hour['fds_end']}"
            + f", {hour['incidents_healed']}/{hour['faults_injected']} faults healed"
        )
    return lines


def soak_command(args: argparse.Namespace) -> int:
    """certify soak [--hours H] [--resume PACK]: a run of the SOAK gate alone."""
    from gates.soak_run import SoakRequest, load_resumable, set_request  # noqa: PLC0415 - imports the gates
    from harness import cli  # noqa: PLC0415 - the run command's machinery
    from harness.runner import RunOptions  # noqa: PLC0415

    resume = args.resume.resolve() if args.resume is not None else None
    target = args.target
    mode = args.mode
    if resume is not None:
        recorded_target, recorded_mode = resume_facts(resume)
        target = target or recorded_target
        mode = recorded_mode or mode
    target = (target or cli.default_target()).resolve()
    if not target.is_dir():
        msg = f"--target {target}: not a directory"
        raise UsageError(msg)
    hours = args.hours
    if resume is not None and hours is None:
        hours = load_resumable(resume)["plan"]["requested_hours"]
    set_request(SoakRequest(hours=hours, resume_from=resume))
    options = RunOptions(
        target_dir=target,
        gates=("SOAK",),
        mode=mode,
        out=args.out,
        jobs=1,
        cache_dir=(args.cache_dir or cli.default_venv_cache()).resolve(),
        policy=args.policy,
    )
    runner, outcome = cli.run_reported(options)
    print(f"pack: {outcome.pack_root}")
    report = outcome.pack_root / "soak_report.md"
    if report.is_file():
        print(f"soak report: {report}")
        for line in hourly_lines(outcome.pack_root / "soak_report.json"):
            print(line)
    if not outcome.complete:
        print(f"soak interrupted: continue it with `certify soak --resume {outcome.pack_root}`")
    result = runner.results.get("SOAK")
    if result is None or not outcome.complete:
        return outcome.exit_code
    print(f"SOAK {result.verdict.status.value}: " + "; ".join(result.verdict.reasons[:3]))
    # The soak's own verdict decides: the gates it leaves out are not what `certify soak` asked about.
    return SOAK_EXIT_CODES.get(result.verdict.status.value, 3)
