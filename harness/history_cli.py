"""`certify history`: the runs recorded in the local history store, and recording after a run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.compare_rules import RegressionRules
from harness.config import NotifySection
from harness.errors import UsageError
from harness.history import DEFAULT_STORE, STORE_NAME, HistoryError, history_lines, last_runs, record

EXIT_CODES = """exit codes:
  0    the runs were printed (or the pack was recorded, or was already there)
  2    usage error: no history at that path, a store that is not a run history, a pack that is not one
"""


def add_history_argument(run: argparse.ArgumentParser) -> None:
    """`certify run --history PATH`: where the finished run is recorded."""
    run.add_argument(
        "--history",
        type=Path,
        default=None,
        help=f"the run history to append this run to (default: {STORE_NAME} in the folder that holds the pack)",
    )


def add_history_parser(sub: Any) -> None:
    """Register `certify history [--last N] [--target NAME] [--json]` and `certify history add PACK`."""
    history = sub.add_parser(
        "history",
        help="list the runs recorded in the run history",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Every finished `certify run` appends one record (run id, commit, mode, policy, each gate's "
        "status and figures, pack path and manifest digest) to a SQLite run history next to its pack.",
    )
    history.add_argument(
        "--history", type=Path, default=DEFAULT_STORE, help=f"the run history to read (default: {DEFAULT_STORE})"
    )
    history.add_argument("--last", type=_count, default=20, help="how many of the newest runs to list (default 20)")
    history.add_argument("--target", default=None, help="only the runs of this target name")
    history.add_argument("--json", action="store_true", help="print the runs as JSON instead of lines")
    history.add_argument(
        "--html", type=Path, default=None, help="also write FILE: the listed runs' tables and a trend chart per figure"
    )
    actions = history.add_subparsers(dest="history_action")
    add = actions.add_parser("add", help="record an existing pack (a pack already recorded is left as it is)")
    add.add_argument("pack", type=Path, help="pack directory of a finished run")
    add.add_argument("--history", type=Path, default=argparse.SUPPRESS, help="the run history to append to")


def add_health_parser(sub: Any) -> None:
    """Register `certify health-report [--days N] [--history FILE] [--out DIR]`."""
    health = sub.add_parser(
        "health-report",
        help="the health report of the last N days of the run history (O7)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs and outcomes, per gate its pass rate and flaky commits, per judged figure its trend, "
        "and every gate turned red or regression the watch recorded; writes health_report.json and .md.",
    )
    health.add_argument("--days", type=_count, default=7, help="the period, ending now (default 7)")
    health.add_argument(
        "--history", type=Path, default=DEFAULT_STORE, help=f"the run history to read (default: {DEFAULT_STORE})"
    )
    health.add_argument("--out", type=Path, default=Path("."), help="where the report is written (default: here)")


def health_command(args: argparse.Namespace) -> int:
    """certify health-report: read the history, write health_report.json/.md, print the headline."""
    import datetime as dt  # noqa: PLC0415

    from harness.evidence import atomic_write  # noqa: PLC0415
    from harness.health import build_health, health_html, health_markdown  # noqa: PLC0415 - scipy only here
    from harness.history import runs_since  # noqa: PLC0415

    if args.out.exists() and not args.out.is_dir():
        msg = f"--out {args.out}: exists and is not a directory"
        raise UsageError(msg)
    now = dt.datetime.now(dt.UTC)
    since = (now - dt.timedelta(days=args.days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    report = build_health(*runs_since(args.history, since), args.days, now)
    atomic_write(args.out / "health_report.json", (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    atomic_write(args.out / "health_report.md", health_markdown(report).encode())
    atomic_write(args.out / "health_report.html", health_html(report).encode())
    red = sum(e["kind"] == "gate_red" for e in report["events"])
    regressions = sum(e["kind"] == "regression" for e in report["events"])
    print(
        f"health report: {report['runs']} run(s) in {args.days} day(s), {red} gate(s) turned red, "
        f"{regressions} regression(s), {len(report['flaky'])} flaky gate(s): {args.out / 'health_report.md'}"
    )
    return 0


def _count(text: str) -> int:
    """A positive whole number of runs."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"not a positive whole number: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def history_command(args: argparse.Namespace) -> int:
    """certify history [add PACK]."""
    if args.history_action == "add":
        if not args.pack.is_dir():
            msg = f"{args.pack}: not a directory"
            raise UsageError(msg)
        entry, added = record(args.history, args.pack)
        print(f"{'recorded' if added else 'already recorded'}: {entry.run_id} in {args.history}")
        return 0
    runs = last_runs(args.history, args.last, args.target)
    if args.html is not None:
        _write_history_html(args.history, runs, args.html)
    if args.json:
        print(json.dumps(runs, indent=2, sort_keys=True))
    else:
        print("\n".join(history_lines(runs)))
    return 0


def _write_history_html(store: Path, runs: list[dict[str, Any]], out: Path) -> None:
    """The listed runs as the health report's page: outcomes, gates, trends (oldest first), events."""
    import datetime as dt  # noqa: PLC0415

    from harness.evidence import atomic_write  # noqa: PLC0415
    from harness.health import build_health, health_html  # noqa: PLC0415
    from harness.history import runs_since  # noqa: PLC0415

    if out.is_dir():
        msg = f"--html {out}: is a directory; give the file to write"
        raise UsageError(msg)
    listed = {run["manifest_sha256"] for run in runs}
    all_runs, figures, events = runs_since(store, "")
    chosen = [run for run in all_runs if run["manifest_sha256"] in listed]
    title = f"Run history: the last {len(chosen)} run(s)"
    report = build_health(
        chosen,
        [f for f in figures if f["manifest_sha256"] in listed],
        [e for e in events if e["manifest_sha256"] in listed],
        0,
        dt.datetime.now(dt.UTC),
        title=title,
    )
    atomic_write(out, health_html(report).encode())
    print(f"wrote {out}")


def record_finished_run(pack_root: Path, store: Path | None, hooks: NotifySection, rules: RegressionRules) -> None:
    """After `certify run`: record the pack, compare with the previous run, alert the hooks if it got worse.

    Everything here is reported in lines and never changes the run's verdict or exit code.
    """
    from harness.notify import notify  # noqa: PLC0415
    from harness.watch import watch  # noqa: PLC0415

    path = store if store is not None else pack_root.parent / STORE_NAME
    try:
        entry, _ = record(path, pack_root)
    except HistoryError as exc:
        print(f"history: this run was not recorded: {exc.message}", file=sys.stderr)
        return
    print(f"history: {entry.run_id} recorded in {path}")
    if entry.state != "COMPLETE":
        return
    try:
        seen = watch(path, entry, pack_root, rules)
    except HistoryError as exc:
        print(f"regression watch: not done: {exc.message}", file=sys.stderr)
        return
    for line in seen.lines:
        print(line)
    if seen.alert is not None:
        for outcome in notify(seen.alert, hooks):
            print(outcome.line(), file=sys.stdout if outcome.delivered else sys.stderr)
