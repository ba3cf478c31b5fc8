"""Pure judging of the C6 rollback drill from its stored record (gates/G4/rollback/drill.json).

Times are seconds on the drill's clock. From the record alone:
- harness detection: the first probe started after the deploy began that was unhealthy, or the first
  work submission after it that was not accepted, whichever came first;
- alert detection: the first read after the deploy at which the target's alert gauge was > 0;
- canary live: the first read after the deploy naming another version than the one before it;
- back: the first read naming the old version again, after the rollback command ended (automatic:
  after the canary was seen live);
- restored: the latest of back, the start of the final healthy probe streak after back (lasting
  `stable_s`, as `chaos.recovery.recovery` defines it) and the alert resolved (every read from then on
  at 0); deploy-to-restored is restored minus the deploy command's start.
The verdict: PASS when the canary went live, both detections happened, the rollback ran (or, automatic,
happened), the service was restored within `budget_s`, and no accepted unit of work was lost, left
uncompleted or completed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.ledger import reconcile_counts
from chaos.probe import healthy
from chaos.recovery import accepted_ids, duplicates_by_metric, recovery, unacknowledged
from harness.model import Status, worst

#: The drill's label in G4's details and measurement names.
DRILL = "rollback drill"


def _first(items: list[dict[str, Any]], since_s: float | None, test: Any) -> float | None:
    """Pure: t_s of the first item at or after `since_s` that passes `test` (None when none does)."""
    if since_s is None:
        return None
    return next((item["t_s"] for item in items if item["t_s"] >= since_s and test(item)), None)


def drill_facts(
    record: dict[str, Any],
    healthy_latency_s: float,
    stable_s: float,
    *,
    in_flight_since_s: Sequence[float] = (),
    now_s: float | None = None,
) -> dict[str, Any]:
    """Detection, rollback and restore moments of a drill record (None where it did not happen).

    `in_flight_since_s`/`now_s`: probes not finished yet, known only to the drill while it observes
    (chaos.recovery.recovery); the stored record has none.
    """
    deploy = record.get("deploy") or {}
    rollback = record.get("rollback") or {}
    t0 = deploy.get("started_at_s")
    old = (record.get("version_before") or {}).get("version")
    completed = set(record["tasks"]["completed"])
    reads = sorted(record.get("reads", []), key=lambda r: r["t_s"])
    samples = sorted(record.get("samples", []), key=lambda s: s["t_s"])
    probe_bad = _first(samples, t0, lambda s: not healthy(s, completed, healthy_latency_s))
    work_bad = _first(record.get("work", []), t0, lambda a: a["id"] is None)
    found = [t for t in (probe_bad, work_bad) if t is not None]
    live = _first(reads, t0, lambda r: r["version"] is not None and r["version"] != old)
    automatic = bool((record.get("drill") or {}).get("automatic"))
    back_since = live if automatic else rollback.get("ended_at_s")
    back = _first(reads, back_since, lambda r: r["version"] == old)
    facts: dict[str, Any] = {
        "deploy_at_s": t0,
        "harness_detected_at_s": min(found) if found else None,
        "alert_fired_at_s": _first(reads, t0, lambda r: (r["alert"] or 0) > 0),
        "canary_live_at_s": live,
        "canary_version": next((r["version"] for r in reads if r["t_s"] == live), None),
        "back_at_s": back,
        "final_version": reads[-1]["version"] if reads else None,
        "healthy_at_s": None,
        "alert_resolved_at_s": None,
        "restored_at_s": None,
    }
    if back is None:
        return facts
    rec = recovery(
        samples,
        back,
        back,
        completed=completed,
        healthy_latency_s=healthy_latency_s,
        stable_s=stable_s,
        in_flight_since_s=in_flight_since_s,
        now_s=now_s,
    )
    facts["healthy_at_s"] = rec["recovered_at_s"]
    quiet = [r for r in reads if r["t_s"] >= back]
    while quiet and (quiet[0]["alert"] is None or quiet[0]["alert"] > 0):
        quiet.pop(0)
    if quiet and all(r["alert"] is not None and r["alert"] <= 0 for r in quiet) and quiet[-1]["version"] == old:
        facts["alert_resolved_at_s"] = quiet[0]["t_s"]
    if facts["healthy_at_s"] is not None and facts["alert_resolved_at_s"] is not None:
        facts["restored_at_s"] = round(max(back, facts["healthy_at_s"], facts["alert_resolved_at_s"]), 3)
    return facts


def _since(facts: dict[str, Any], key: str) -> float | None:
    """Seconds from the deploy's start to a moment (None when it did not happen)."""
    at, t0 = facts[key], facts["deploy_at_s"]
    return None if at is None or t0 is None else round(at - t0, 3)


def _ledger(record: dict[str, Any]) -> dict[str, Any]:
    """Accepted, lost, not completed and duplicated units of work, recomputed by id."""
    finals = record.get("reconciliation", {}).get("finals", {})
    counts = reconcile_counts(accepted_ids(record), finals, record["tasks"])
    unseen = unacknowledged(record, counts["accepted"])
    by_metric = duplicates_by_metric(record, len(counts["completed"]), unseen)
    by_field = counts["duplicated_by_field"] if record["tasks"].get("completions_field") else None
    observed = [value for value in (by_field, by_metric) if value is not None]
    return {
        "accepted": counts["accepted"],
        "completed": len(counts["completed"]),
        "lost": len(counts["lost"]) + len(counts["unreadable"]),
        "not_completed": len(counts["failed"]) + len(counts["unfinished"]),
        "duplicated": max(observed) if observed else None,
        "unacknowledged": unseen,
        "lost_ids": (counts["lost"] + counts["unreadable"])[:5],
        "not_completed_ids": (counts["failed"] + counts["unfinished"])[:5],
    }


def judge_drill(
    record: dict[str, Any] | None, budget_s: float, healthy_latency_s: float, stable_s: float
) -> dict[str, Any]:
    """Status, reasons and figures of the drill (the record as stored; None: the drill left no record)."""
    base: dict[str, Any] = {"id": DRILL, "budget_s": budget_s}
    if record is None:
        return {**base, "status": Status.NOT_RUN.value, "reasons": [f"{DRILL}: no record (not run)"]}
    if record.get("outcome") == "start_failed":
        return {
            **base,
            "status": Status.FAIL.value,
            "reasons": [f"{DRILL}: the target did not start: {record['reason']}"],
        }
    facts = drill_facts(record, healthy_latency_s, stable_s)
    ledger = _ledger(record)
    figures = {
        **base,
        "version_before": (record.get("version_before") or {}).get("version"),
        "canary_version": facts["canary_version"],
        "final_version": facts["final_version"],
        "automatic": bool(record["drill"].get("automatic")),
        "harness_detect_s": _since(facts, "harness_detected_at_s"),
        "alert_detect_s": _since(facts, "alert_fired_at_s"),
        "rollback_started_s": None
        if not record.get("rollback")
        else round(record["rollback"]["started_at_s"] - facts["deploy_at_s"], 3),
        "back_s": _since(facts, "back_at_s"),
        "alert_resolved_s": _since(facts, "alert_resolved_at_s"),
        "restored_s": _since(facts, "restored_at_s"),
        **ledger,
    }
    statuses, problems = _judge(record, facts, figures, budget_s)
    status = worst(statuses)
    if status is Status.PASS:
        problems.append(
            f"{DRILL}: canary {figures['canary_version']} seen failing by the harness after "
            f"{figures['harness_detect_s']:g} s and by the target's alert after {figures['alert_detect_s']:g} s; "
            + (
                "rolled back by the target itself"
                if figures["automatic"]
                else f"rollback ran at {figures['rollback_started_s']:g} s"
            )
            + f"; {figures['version_before']} back and restored {figures['restored_s']:g} s after the deploy "
            f"(budget {budget_s:g} s); {ledger['accepted']} accepted units of work, each completed exactly once"
        )
    else:
        problems = [f"{DRILL}: {p}" for p in problems]
    return {**figures, "status": status.value, "reasons": problems}


def _judge(
    record: dict[str, Any], facts: dict[str, Any], fig: dict[str, Any], budget_s: float
) -> tuple[list[Status], list[str]]:
    """The drill's statuses and the sentences of whatever was short."""
    early = _judge_start(record, facts, fig)
    if early is not None:  # nothing else to judge, but accepted work still counts
        found = [early, *_judge_ledger(fig)]
        return [status for status, _why in found], [why for _status, why in found]
    found = [_judge_alert(record, facts, fig, budget_s), _judge_restore(record, facts, fig, budget_s)]
    found += _judge_ledger(fig)
    statuses = [Status.PASS] + [status for status, _why in found if status is not Status.PASS]
    problems = [why for status, why in found if status is not Status.PASS]
    if fig["restored_s"] is None and worst(statuses) is Status.PASS:
        statuses.append(Status.FAIL)
        problems.append(f"not restored within the {budget_s:g} s budget (the rollback never ran)")
    if fig["duplicated"] is None and worst(statuses) is Status.PASS:
        statuses.append(Status.INCONCLUSIVE)
        problems.append("duplicates not observable: configure tasks.completions_field or tasks.completions_metric")
    return statuses, problems


Finding = tuple[Status, str]
OK: Finding = (Status.PASS, "")


def _judge_start(record: dict[str, Any], facts: dict[str, Any], fig: dict[str, Any]) -> Finding | None:
    """Why the drill shows nothing at all (no steady state, a failed deploy, no canary, no failure), or None."""
    drill = record["drill"]
    if record["outcome"] != "ran":
        return Status.INCONCLUSIVE, record.get("reason", "did not run")
    deploy = record["deploy"]
    if deploy is None or deploy["returncode"] != 0:
        why = "timed out" if deploy and deploy["timed_out"] else f"exited {deploy and deploy['returncode']}"
        return Status.FAIL, f"the deploy command {why} (output in {deploy and deploy['stderr']})"
    if facts["canary_live_at_s"] is None:
        return Status.FAIL, (
            f"the deploy command exited 0 but GET {drill['version_path']} never named another version than "
            f"{fig['version_before']}: nothing was deployed"
        )
    if facts["harness_detected_at_s"] is None:
        return Status.INCONCLUSIVE, (
            f"the harness's probes and work stream never saw canary {fig['canary_version']} fail: it is not a bad "
            "canary, so the drill shows no detection or rollback"
        )
    return None


def _judge_alert(record: dict[str, Any], facts: dict[str, Any], fig: dict[str, Any], budget_s: float) -> Finding:
    """The target's own detection: its alert gauge exposed, quiet before the deploy, firing after it."""
    metric, before = record["drill"]["alert_metric"], (record.get("alert_before") or {}).get("alert")
    if before is None and facts["alert_fired_at_s"] is None:
        return Status.FAIL, f"the target's alert {metric} is not exposed at {record['settings']['metrics']}"
    if facts["alert_fired_at_s"] is None:
        return Status.FAIL, (
            f"the target's alert {metric} never fired within {budget_s:g} s of the deploy, though the harness saw "
            f"canary {fig['canary_version']} failing after {fig['harness_detect_s']:g} s"
        )
    if before not in (None, 0, 0.0):
        return Status.INCONCLUSIVE, f"the target's alert {metric} was already firing before the deploy"
    return OK


def _judge_restore(record: dict[str, Any], facts: dict[str, Any], fig: dict[str, Any], budget_s: float) -> Finding:
    """The rollback: its command exited 0, the old version came back, probes healthy and alert resolved in time."""
    drill, rollback = record["drill"], record["rollback"]
    if not drill["automatic"] and rollback is not None and rollback["returncode"] != 0:
        return Status.FAIL, f"the rollback command exited {rollback['returncode']} (output in {rollback['stderr']})"
    if facts["back_at_s"] is None and (drill["automatic"] or rollback is not None):
        who = "the target's automatic rollback" if drill["automatic"] else "the rollback command exited 0 but it"
        return Status.FAIL, (
            f"{who} did not restore {fig['version_before']}: GET {drill['version_path']} still named "
            f"{fig['final_version']} {budget_s:g} s after the deploy"
        )
    if facts["back_at_s"] is not None and fig["restored_s"] is None:
        stable_s = record["settings"]["stable_s"]
        part = "the alert never resolved" if facts["healthy_at_s"] is not None else f"no {stable_s:g} s healthy"
        return Status.FAIL, f"{fig['version_before']} came back after {fig['back_s']:g} s but not the service: {part}"
    if fig["restored_s"] is not None and fig["restored_s"] > budget_s:
        return Status.FAIL, f"restored {fig['restored_s']:g} s after the deploy > budget {budget_s:g} s"
    return OK


def _judge_ledger(fig: dict[str, Any]) -> list[Finding]:
    """Every accepted unit of work completed exactly once."""
    found = []
    if fig["lost"]:
        found.append((Status.FAIL, f"{fig['lost']} accepted unit(s) of work lost (e.g. {', '.join(fig['lost_ids'])})"))
    if fig["not_completed"]:
        found.append(
            (
                Status.FAIL,
                f"{fig['not_completed']} accepted unit(s) of work failed or unfinished after the drain "
                f"(e.g. {', '.join(fig['not_completed_ids'])})",
            )
        )
    if fig["duplicated"]:
        found.append((Status.FAIL, f"{fig['duplicated']} duplicate completion(s)"))
    return found


def _cell(value: Any, unit: str = "") -> str:
    """A figure for the write-up ('-' when absent)."""
    return "-" if value is None else f"{value:g}{unit}" if isinstance(value, float | int) else str(value)


def render_drill(judged: dict[str, Any]) -> str:
    """chaos/rollback-drill.md: the drill's verdict, its moments after the deploy and its ledger (pure)."""
    rows = [
        (
            "version before / canary / at the end",
            f"{_cell(judged.get('version_before'))} / "
            f"{_cell(judged.get('canary_version'))} / {_cell(judged.get('final_version'))}",
        ),
        ("rollback", "automatic (the target's own)" if judged.get("automatic") else "the declared command"),
        ("harness detection", _cell(judged.get("harness_detect_s"), " s")),
        ("target's alert fired", _cell(judged.get("alert_detect_s"), " s")),
        ("rollback command started", _cell(judged.get("rollback_started_s"), " s")),
        ("old version back", _cell(judged.get("back_s"), " s")),
        ("alert resolved", _cell(judged.get("alert_resolved_s"), " s")),
        ("restored (deploy to restored)", f"{_cell(judged.get('restored_s'), ' s')} (budget {judged['budget_s']:g} s)"),
        ("accepted / completed", f"{_cell(judged.get('accepted'))} / {_cell(judged.get('completed'))}"),
        (
            "lost / not completed / duplicated",
            f"{_cell(judged.get('lost'))} / {_cell(judged.get('not_completed'))} / {_cell(judged.get('duplicated'))}",
        ),
    ]
    lines = [f"# C6 bad-deploy rollback drill: {judged['status']}", "", "Seconds after the deploy command started.", ""]
    lines += ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), ""]
    lines += [f"- {reason}" for reason in judged["reasons"]]
    return "\n".join(lines) + "\n"
