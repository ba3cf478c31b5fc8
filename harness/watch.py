"""Auto-regression detection after a run (O8): against the previous complete run of the same target and mode.

Two kinds of event: a gate that PASSed last time and FAILs or errors now (turned red), and a
regression `certify compare` finds between the previous pack and this one (when the previous pack
is still there and verifies). Events become one alert for the hooks (harness/notify.py); nothing
here changes the run's verdict, pack or exit code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.compare_rules import RegressionRules
from harness.history import RunRecord, previous_run, record_events
from harness.notify import ALERT_FORMAT

RED = ("FAIL", "ERROR")


@dataclass
class WatchResult:
    """What the watch saw: the lines to print and, when something turned bad, the alert."""

    lines: list[str] = field(default_factory=list)
    alert: dict[str, Any] | None = None


def turned_red(before: Mapping[str, str], now: Mapping[str, str]) -> list[dict[str, str]]:
    """Gates that PASSed before and FAIL or error now; pure."""
    return [{"gate": g, "was": before[g], "now": now[g]} for g in now if before.get(g) == "PASS" and now[g] in RED]


def _regressions(previous: Path, pack: Path, rules: RegressionRules, lines: list[str]) -> list[dict[str, Any]]:
    """The regressions `certify compare` finds from the previous pack to this one (none when it cannot compare)."""
    from harness.compare import REGRESSION, compare_packs  # noqa: PLC0415 - numpy/scipy only when comparing
    from harness.verify import verify_pack  # noqa: PLC0415 - the verifier imports the gates

    if not previous.is_dir():
        lines.append(f"regression watch: the previous pack {previous} is gone; gate statuses compared from history")
        return []
    report = verify_pack(previous)
    if not report.ok:
        lines.append(f"regression watch: the previous pack {previous} does not verify; its figures are not compared")
        return []
    figures = compare_packs(previous, pack, rules)["figures"]
    return [
        {k: f[k] for k in ("name", "base", "new", "unit", "change", "interval", "blocks")}
        for f in figures
        if f["verdict"] == REGRESSION
    ]


def watch(store: Path, entry: RunRecord, pack: Path, rules: RegressionRules) -> WatchResult:
    """Compare a just-recorded run with the previous one; the alert when a gate turned red or a figure regressed."""
    result = WatchResult()
    previous = previous_run(store, entry)
    if previous is None:
        result.lines.append(f"regression watch: no earlier complete {entry.mode} run of {entry.target} recorded")
        return result
    now = {g["gate"]: g["status"] for g in entry.gates}
    red = turned_red(previous["gates"], now)
    regressions = _regressions(Path(previous["pack"]), pack, rules, result.lines)
    summary = (
        f"regression watch against {previous['run_id']}: {len(red)} gate(s) turned red"
        + (f" ({', '.join(r['gate'] for r in red)})" if red else "")
        + f", {len(regressions)} regression(s)"
        + (
            f" ({', '.join(r['name'] for r in regressions[:5])}{' ...' if len(regressions) > 5 else ''})"
            if regressions
            else ""
        )
    )
    result.lines.append(summary)
    record_events(
        store,
        entry.manifest_sha256,
        previous["run_id"],
        [
            *(("gate_red", r["gate"], f"{r['was']} -> {r['now']}") for r in red),
            *(("regression", r["name"], f"{r['base']} -> {r['new']} {r['unit']} ({r['change']})") for r in regressions),
        ],
    )
    if red or regressions:
        result.alert = {
            "format": ALERT_FORMAT,
            "events": [*(["gate_red"] if red else []), *(["regression"] if regressions else [])],
            "target": entry.target,
            "mode": entry.mode,
            "run": {"id": entry.run_id, "commit": entry.commit, "pack": entry.pack, "exit_code": entry.exit_code},
            "baseline": {"id": previous["run_id"], "commit": previous["commit_sha"], "pack": previous["pack"]},
            "gates_turned_red": red,
            "regressions": regressions,
            "summary": summary,
        }
    return result
