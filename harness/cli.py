"""The `certify` command: the only place that prints errors and chooses exit codes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from harness.interrupts import deferred, exit_now


def _interrupted(signum: int, frame: FrameType | None) -> None:
    """SIGTERM, outside the startup and until a run installs its own handlers, is an interruption like Ctrl-C."""
    del signum, frame
    raise KeyboardInterrupt


# The imports below take a second or two on a busy machine: a SIGINT or SIGTERM arriving then is only
# noted (harness.interrupts says why), and still ends in "interrupted" (130), not in death by signal.
try:
    with deferred():
        from harness import __version__, attest_cli, policy_cli
        from harness.advisory_cli import add_advisory_db_parser, advisory_db_command
        from harness.compare_cli import add_compare_parser, compare_command
        from harness.config import json_schema
        from harness.errors import HarnessError, UsageError
        from harness.evidence import ATTESTATIONS
        from harness.history_cli import (
            add_health_parser,
            add_history_argument,
            add_history_parser,
            health_command,
            history_command,
            record_finished_run,
        )
        from harness.init_cli import add_init_parser, init_command
        from harness.policy import load_policy
        from harness.policy_cli import add_policy_parser as _add_policy_parser
        from harness.progress import make_reporter
        from harness.registry import catalogue
        from harness.report_cli import add_report_parser, report_command
        from harness.runner import Runner, RunOptions, RunOutcome
        from harness.soak_cli import add_soak_parser, soak_command
        from harness.verify import verify_pack
except KeyboardInterrupt:
    print("certify: interrupted", file=sys.stderr)
    exit_now(130)
signal.signal(signal.SIGTERM, _interrupted)

EXIT_CODES = """exit codes:
  0    every required gate PASSed (verify: the pack checks out)
  1    a gate FAILed, a target that cannot be installed or started included (verify: a file, verdict or
       signed statement does not match; with --key, a signature is bad, untrusted or missing)
  2    usage or config error (bad argument, bad certify.toml, unusable output directory, a key file
       that is missing or not an ed25519 PEM key)
  3    a required gate is INCONCLUSIVE, NOT_RUN or ERROR
  4    the run deviates from the policy (a looser threshold, a required gate left out, a --gates subset
       in release mode, a self-granted waiver, ...) and no policy waiver accepts it: never certified,
       whatever the gates say (`certify policy check` lists the deviations before a run)
  5    certify advisory-db update: the advisory database could not be fetched or verified (the
       previous copy is unchanged)
  130  interrupted (SIGINT/SIGTERM): the pack is marked INCOMPLETE and has no certificate
  141  stdout was closed by its reader (`certify policy show | head`); nothing else went wrong
"""


def default_target() -> Path:
    """The current directory when it holds a certify.toml, else the bundled reference target (from a checkout)."""
    if (Path.cwd() / "certify.toml").is_file():
        return Path.cwd()
    bundled = Path(__file__).resolve().parent.parent / "examples" / "guardian"
    return bundled if (bundled / "certify.toml").is_file() else Path.cwd()


def _gate_list(text: str) -> tuple[str, ...]:
    """Parse --gates G1,G5 into known gate ids."""
    gates = tuple(part.strip() for part in text.split(",") if part.strip())
    if not gates:
        msg = "--gates: empty list"
        raise argparse.ArgumentTypeError(msg)
    known = catalogue()
    unknown = [gate for gate in gates if gate not in known]
    if unknown:
        msg = f"--gates: unknown gate {', '.join(unknown)}; known: {', '.join(known)}"
        raise argparse.ArgumentTypeError(msg)
    return gates


#: Gates at once by default: on a 2-core host the gates that share the machine mostly wait on their services.
DEFAULT_JOBS = 4


def _positive(text: str) -> int:
    """Parse a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="certify",
        description="Run release gates against a service and write a verifiable evidence pack.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"release-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run gates and write an evidence pack",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the gates of a target's certify.toml and write an evidence pack "
        "(and, in release mode, a production-readiness certificate).",
    )
    run.add_argument(
        "--target",
        type=Path,
        default=None,
        help="target directory holding certify.toml (default: the current directory if it holds one, else the "
        "bundled reference target examples/guardian)",
    )
    run.add_argument(
        "--gates",
        type=_gate_list,
        default=None,
        help="comma-separated gate ids (default: the certificate's required gates); see `certify gates`",
    )
    run.add_argument(
        "--mode",
        choices=("release", "ci"),
        default="release",
        help="release: full durations, may certify; ci: scaled durations, merge-gate report only",
    )
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="pack directory (default: release/artifacts/<UTC time>-<short commit>/); must be new or empty",
    )
    run.add_argument(
        "--jobs",
        type=_positive,
        default=DEFAULT_JOBS,
        help=f"gates run this many at once, except those that run alone (G2/G3) (default {DEFAULT_JOBS})",
    )
    run.add_argument(
        "--policy",
        type=Path,
        default=None,
        help="the certifier's policy file (default: the standard policy shipped with the harness)",
    )
    attest_cli.add_sign_key_argument(run)
    add_history_argument(run)
    run.add_argument(
        "--baseline",
        default=None,
        metavar="PACK",
        help="also judge G1, G2 and G4 for regression against this verified pack (or newest-certified / "
        "newest-passing from the run history), when the policy names no baseline of its own",
    )
    run.add_argument(
        "--plan", action="store_true", help="print the plan (gates, profiles, durations) and exit without running"
    )
    run.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where target venvs are kept (default: ~/.cache/release-harness/venvs; as root "
        "/var/cache/release-harness/venvs, which the service user can read)",
    )
    verify = sub.add_parser(
        "verify",
        help="re-check an evidence pack offline",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("pack", type=Path, help="pack directory")
    verify.add_argument(
        "--policy", type=Path, default=None, help="re-judge under this policy file (default: the pack's own copy)"
    )
    attest_cli.add_key_arguments(verify)
    attest_cli.add_attest_parsers(sub)
    _add_policy_parser(sub)
    e2e = sub.add_parser("e2e", help="E2E helpers: refresh the target's visual baselines on purpose")
    e2e.add_argument(
        "--update-baselines",
        action="store_true",
        required=True,
        help="run the E2E gate alone and, if every journey passed, write its screenshots as baselines",
    )
    e2e.add_argument("--target", type=Path, default=None, help="target directory (default: the reference target)")
    e2e.add_argument("--cache-dir", type=Path, default=None, help="where target venvs are kept")
    add_advisory_db_parser(sub)
    add_history_parser(sub)
    add_health_parser(sub)
    add_compare_parser(sub)
    add_report_parser(sub)
    add_init_parser(sub)
    add_soak_parser(sub)
    schema = sub.add_parser(
        "schema",
        help="print the JSON Schema of certify.toml (or of the policy file), for editors",
        description="The JSON Schema generated from the very models the loader validates with. Point taplo or "
        "Even Better TOML at a written copy with a first line `#:schema ./certify.schema.json`.",
    )
    schema.add_argument("--json", action="store_true", help="JSON Schema (the only format; accepted for clarity)")
    schema.add_argument(
        "--of", choices=("config", "policy"), default="config", help="certify.toml (default) or a policy file"
    )
    schema.add_argument(
        "--out", type=Path, default=None, help="write certify.schema.json and policy.schema.json into DIR instead"
    )
    sub.add_parser("gates", help="list the gate catalogue and which gates this version implements")
    return parser


def _baseline_plan_line(args: argparse.Namespace) -> list[str]:
    """The plan's line naming the baseline the run would judge regression against (resolved when it starts)."""
    from harness.policy import load_policy  # noqa: PLC0415

    named = load_policy(args.policy).policy.regression.baseline
    spec = named or args.baseline
    if spec is None:
        return []
    return [f"baseline: {spec} ({'named by the policy' if named else '--baseline'}; verified when the run starts)"]


def default_venv_cache() -> Path:
    """Where target venvs are kept: $XDG_CACHE_HOME or ~/.cache; as root /var/cache (/root is 0700).

    A root harness starts the service as an unprivileged user (S5), who must read the venv.
    """
    if "XDG_CACHE_HOME" in os.environ:
        return Path(os.environ["XDG_CACHE_HOME"]) / "release-harness" / "venvs"
    if os.geteuid() == 0:
        return Path("/var/cache/release-harness/venvs")
    return Path.home() / ".cache" / "release-harness" / "venvs"


def run_reported(options: RunOptions) -> tuple[Runner, RunOutcome]:
    """Build the runner (interrupts deferred: see harness.interrupts) and run it with a progress reporter."""
    with deferred():  # reading the config builds models
        runner = Runner(options, reporter := make_reporter())
    try:
        return runner, runner.run()
    finally:
        reporter.close()


def _run(args: argparse.Namespace) -> int:
    """Certify run."""
    target = (args.target or default_target()).resolve()
    if not target.is_dir():
        msg = f"--target {args.target}: not a directory"
        raise UsageError(msg)
    cache = args.cache_dir or default_venv_cache()
    options = RunOptions(
        target_dir=target,
        gates=args.gates,
        mode=args.mode,
        out=args.out,
        jobs=args.jobs,
        cache_dir=cache.resolve(),
        policy=args.policy,
        signer=None if args.plan else attest_cli.run_signer(args),
        baseline=args.baseline,
        history=args.history,
    )
    if args.plan:
        from harness.plan import make_plan  # noqa: PLC0415

        with deferred():  # reading the config builds models: see harness.interrupts
            report, config = policy_cli.judge_target(target, args.policy, args.mode, args.gates)
        plan = make_plan(config, args.gates or config.certificate.required_gates, args.mode, args.jobs, target)
        print("\n".join([*report.lines(), *_baseline_plan_line(args), *plan.describe()]))
        return 0
    runner, outcome = run_reported(options)
    print(f"pack: {outcome.pack_root}")
    record_finished_run(outcome.pack_root, args.history, runner.target_config.notify, runner.policy.policy.regression)
    if options.signer is not None and outcome.complete:
        print(f"signed: {outcome.pack_root / ATTESTATIONS} (key id {options.signer.public_key.keyid})")
    if not outcome.complete:
        print("run interrupted: pack marked INCOMPLETE, no certificate written", file=sys.stderr)
    elif runner.deviations.blocking:
        print(policy_cli.not_certifiable_line(runner.deviations))
    elif args.mode == "release":
        print("CERTIFIED" if outcome.certified else "NOT CERTIFIED (see production_readiness_certificate.md)")
    else:
        print(f"merge gate: {'PASS' if outcome.exit_code == 0 else 'BLOCKED'} (see merge_gate_report.md)")
    return outcome.exit_code


def _verify(args: argparse.Namespace) -> int:
    """Certify verify PACK."""
    report = verify_pack(args.pack, load_policy(args.policy) if args.policy is not None else None)
    attest_cli.check_signatures(args, report)
    for problem in report.problems:
        print(problem)
    if report.ok:
        print(
            f"ok: {report.checked_files} files and {report.checked_gates} verdicts match"
            + "".join(f"; {note}" for note in report.notes)
        )
        return 0
    for note in report.notes:
        print(note)
    print(f"FAILED: {len(report.problems)} problem(s) in {args.pack}", file=sys.stderr)
    return 1


def _e2e(args: argparse.Namespace) -> int:
    """certify e2e --update-baselines."""
    from e2e import update_baselines  # noqa: PLC0415 - only this command needs it

    argv = ["--target", str((args.target or default_target()).resolve())]
    if args.cache_dir is not None:
        argv += ["--cache-dir", str(args.cache_dir)]
    return update_baselines.main(argv)


def _schema(args: argparse.Namespace) -> int:
    """certify schema [--of config|policy] [--out DIR]."""
    from harness.evidence import atomic_write  # noqa: PLC0415
    from harness.policy import policy_schema  # noqa: PLC0415

    schemas = {"certify.schema.json": json_schema(), "policy.schema.json": policy_schema()}
    if args.out is None:
        chosen = "certify.schema.json" if args.of == "config" else "policy.schema.json"
        print(json.dumps(schemas[chosen], indent=2, sort_keys=True))
        return 0
    if args.out.exists() and not args.out.is_dir():
        msg = f"--out {args.out}: exists and is not a directory"
        raise UsageError(msg)
    for name, schema in schemas.items():
        atomic_write(args.out / name, (json.dumps(schema, indent=2, sort_keys=True) + "\n").encode())
        print(f"wrote {args.out / name}")
    return 0


def _gates(args: argparse.Namespace) -> int:
    """certify gates."""
    del args
    from harness.registry import implemented  # noqa: PLC0415 - loads every gate module

    for gate_id, (title, requirements) in catalogue().items():
        state = "implemented" if implemented(gate_id) else "not implemented yet (NOT_RUN)"
        print(f"{gate_id:<4} {title:<42} {','.join(requirements):<28} {state}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `certify` console script."""
    try:
        with deferred():  # building the parser imports the gates: see harness.interrupts
            args = build_parser().parse_args(argv)
        commands = {
            "run": _run,
            "verify": _verify,
            "gates": _gates,
            "e2e": _e2e,
            "schema": _schema,
            "policy": policy_cli.policy_command,
            "advisory-db": advisory_db_command,
            "history": history_command,
            "health-report": health_command,
            "compare": compare_command,
            "report": report_command,
            "init": init_command,
            "soak": soak_command,
            "keygen": attest_cli.keygen_command,
            "verify-attestation": attest_cli.verify_attestation_command,
        }
        return commands[args.command](args)
    except HarnessError as exc:
        print(f"certify: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("certify: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`certify policy show | head`): no traceback, and no second
        # error when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def entry() -> None:
    """The console script: `main`, then exit with its code.

    Once main has returned the outcome is decided and written; a SIGTERM or Ctrl-C arriving after it,
    or the flag a caught interrupt can leave in the interpreter, must not turn a finished run's exit
    code into death by signal.
    """
    code = main()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_now(code)


if __name__ == "__main__":
    entry()
