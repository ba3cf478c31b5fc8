"""`certify policy show` and `certify policy check`: the policy, and a target's deviations, without running anything."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from harness.config import CertifyConfigBase, load_config
from harness.decide import DEVIATION_EXIT
from harness.deviations import DeviationReport, RunArgs
from harness.errors import UsageError
from harness.policy import describe, load_policy
from harness.policy_pack import judge


def add_policy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `certify policy show|check` to the CLI's sub-commands."""
    policy = sub.add_parser("policy", help="show the policy, or check a certify.toml against it (runs nothing)")
    actions = policy.add_subparsers(dest="policy_command", required=True)
    show = actions.add_parser("show", help="print the effective policy (default: the standard policy)")
    show.add_argument("--policy", type=Path, default=None, help="policy file (default: the standard policy)")
    check = actions.add_parser(
        "check",
        help="list the deviations of a target's certify.toml from the policy (exit 0: none blocking; 4: blocking)",
    )
    check.add_argument("--target", type=Path, default=None, help="target directory (default: the reference target)")
    check.add_argument("--policy", type=Path, default=None, help="policy file (default: the standard policy)")
    check.add_argument("--mode", choices=("release", "ci"), default="release", help="the run mode to check")
    check.add_argument("--gates", default=None, help="the --gates selection to check, comma-separated")


def judge_target(
    target: Path, policy_path: Path | None, mode: str, gates: tuple[str, ...] | None
) -> tuple[DeviationReport, CertifyConfigBase]:
    """Deviations of a target under a policy for a run started today, and the effective config."""
    loaded = load_policy(policy_path)
    return judge(loaded, load_config(target), RunArgs(mode, gates, dt.datetime.now(dt.UTC).date()))


def not_certifiable_line(report: DeviationReport) -> str:
    """The first line a reader sees of a run the policy forbids to certify."""
    ids = ", ".join(deviation.id for deviation in report.blocking)
    policy = f"{report.policy['name']} {report.policy['version']}"
    return f"NOT CERTIFIABLE under policy {policy}: unwaived deviation(s) {ids}"


def policy_command(args: argparse.Namespace) -> int:
    """Run `certify policy show` or `certify policy check`."""
    if args.policy_command == "show":
        print("\n".join(describe(load_policy(args.policy))))
        return 0
    from harness.cli import _gate_list, default_target  # noqa: PLC0415 - the CLI imports this module

    target = (args.target or default_target()).resolve()
    if not target.is_dir():
        msg = f"--target {args.target}: not a directory"
        raise UsageError(msg)
    try:
        gates = _gate_list(args.gates) if args.gates is not None else None
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None
    report, _ = judge_target(target, args.policy, args.mode, gates)
    print("\n".join(report.lines()))
    return DEVIATION_EXIT if report.blocking else 0
