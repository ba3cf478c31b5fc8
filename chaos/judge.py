"""Pure judging of one experiment from its stored outcome and repetition records (used by evaluate and the report)."""

from __future__ import annotations

from typing import Any

from chaos.capacity import TREE_INTERVAL_S
from chaos.experiments import ChaosPolicy, Experiment
from chaos.recovery import analyse, distribution
from harness.model import Status, worst

#: Experiment-level label for a fault that does not exist on this machine (no GPU): not a gate status.
NOT_APPLICABLE = "NOT_APPLICABLE"


def judge_experiment(
    exp: Experiment, outcome: dict[str, Any] | None, records: list[dict[str, Any]], policy: ChaosPolicy
) -> dict[str, Any]:
    """Status, reasons and figures of one experiment."""
    budget = policy.budget_s(exp)
    base: dict[str, Any] = {"id": exp.id, "requirement": exp.requirement, "title": exp.title, "budget_s": budget}
    base.update(fault=exp.fault.type, optional=exp.optional)
    if outcome is None:
        return {**base, "status": Status.NOT_RUN.value, "reasons": [f"{exp.id}: no outcome recorded (not run)"]}
    if outcome["status"] == "not_run":
        return {**base, "status": Status.NOT_RUN.value, "reasons": [f"{exp.id}: not run: {outcome['reason']}"]}
    if outcome["status"] == "not_applicable":
        return {**base, "status": NOT_APPLICABLE, "reasons": [f"{exp.id}: not applicable: {outcome['reason']}"]}
    if outcome["status"] == "start_failed":
        return {
            **base,
            "status": Status.FAIL.value,
            "reasons": [f"{exp.id}: the target did not start: {outcome['reason']}"],
        }
    reps = [analyse(r, policy.healthy_latency_s, policy.stable_s) for r in records]
    statuses, reasons = [], []
    for n, (record, rep) in enumerate(zip(records, reps, strict=True), start=1):
        status, why = _judge_rep(record, rep, budget, policy, exp)
        statuses.append(status)
        if why:
            reasons.append(f"{exp.id} repetition {n}: {why}")
    if len(records) < outcome["repetitions"]:
        statuses.append(Status.INCONCLUSIVE)
        reasons.append(f"{exp.id}: {len(records)} of {outcome['repetitions']} repetitions recorded")
    status = worst(statuses) if statuses else Status.INCONCLUSIVE
    dist = distribution([r["recovery_s"] for r in reps if r.get("recovery_s") is not None])
    figures = {
        "repetitions": len(records),
        "seed": outcome.get("seed"),
        "recovery_s": dist,
        "health_recovery_s": distribution(
            [r["recovery_from_removal_s"] for r in reps if r["recovery_from_removal_s"] is not None]
        ),
        "capacity_restore_s": distribution(
            [
                r["capacity"]["restore_from_removal_s"]
                for r in reps
                if r["capacity"]["restore_from_removal_s"] is not None
            ]
        ),
        "capacity_lost_seen": any(r["capacity"]["lost_at_s"] is not None for r in reps),
        "throughput_ratio_min": min(ratios) if (ratios := [x for x in map(_ratio, reps) if x is not None]) else None,
        "recovery_from_start_s": distribution(
            [r["recovery_from_start_s"] for r in reps if r["recovery_from_start_s"] is not None]
        ),
        "detect_s": [r["detect_s"] for r in reps],
        "impact_s": [r["impact_s"] for r in reps],
        "failed_requests": sum(r["requests"]["failed"] for r in reps),
        "requests_during_fault": sum(r["requests"]["submitted"] for r in reps),
        "accepted": sum(r["accepted"] for r in reps),
        "lost": sum(r["lost"] for r in reps),
        "not_completed": sum(r["not_completed"] for r in reps),
        "duplicated": None if any(r["duplicated"] is None for r in reps) else sum(r["duplicated"] for r in reps),
        "unacknowledged": sum(r["unacknowledged"] for r in reps),
        "fault_s": outcome.get("fault_s"),
    }
    if status is Status.PASS:
        reasons.append(
            f"{exp.id}: {_seen(records, reps, figures['health_recovery_s']['max'], budget, policy.probe_interval_s)}"
            f"{_capacity_seen(figures)} over {len(records)} repetition(s) (p50 / p95 / max recovery "
            f"{_num(dist['median'])} / {_num(dist['p95'])} / {_num(dist['max'])} s); {figures['accepted']} accepted "
            "units of work, none lost or duplicated"
            + (
                f" ({figures['unacknowledged']} more accepted by the target while the client saw no answer)"
                if figures["unacknowledged"]
                else ""
            )
        )
    return {**base, "status": status.value, "reasons": reasons, **figures, "per_repetition": reps}


def _seen(
    records: list[dict[str, Any]], reps: list[dict[str, Any]], worst_s: float | None, budget: float, interval_s: float
) -> str:
    """What the harness saw of a passed experiment: an outage and its recovery, or no outage at all (#25)."""
    if (worst_s or 0) > 0 or any(rep.get("impact_s") is not None for rep in reps):
        return f"recovered in at most {worst_s or 0:g} s after the fault was removed (budget {budget:g} s)"
    probes = 0
    interval_s = float(records[0].get("settings", {}).get("probe_interval_s", interval_s)) if records else interval_s
    instant = False
    for record in records:
        fault = record["fault"]
        start, end = fault.get("injected_at_s"), fault.get("removed_at_s")
        if start is not None and end is not None:
            if end - start < interval_s:  # a kill has no window: count the probes from it to the observation's end
                instant = True
                end = max((sample["t_s"] for sample in record["samples"]), default=end)
            probes += sum(1 for sample in record["samples"] if start <= sample["t_s"] <= end)
    where = "from the fault to the end of observation" if instant else "during the fault window"
    return (
        f"no outage seen: {probes} probe(s) every {interval_s * 1000:g} ms (as recorded) {where} "
        f"all found it ready and working (budget {budget:g} s)"
    )


def _num(value: float | None) -> str:
    """A figure for a sentence ('-' when absent)."""
    return "-" if value is None else f"{value:g}"


def _ratio(rep: dict[str, Any]) -> float | None:
    """After/before completion rate of a repetition's capacity bursts (None when not measured)."""
    before, after = rep["capacity"]["rate_before"], rep["capacity"]["rate_after"]
    if not before or not after or not before["rate_per_s"]:
        return None
    return round(float(after["rate_per_s"]) / float(before["rate_per_s"]), 3)


def _capacity_seen(figures: dict[str, Any]) -> str:
    """The capacity half of a passed experiment's sentence."""
    restore = figures["capacity_restore_s"]
    ratio = figures["throughput_ratio_min"]
    if restore["max"] is None:
        text = "; no role's process count declared"
    elif figures["capacity_lost_seen"]:
        text = f"; capacity (every role's process count, new pids where killed) back after at most {restore['max']:g} s"
    else:
        text = (
            "; every role's process count was at its pre-fault value (new pids where killed) at every count of "
            f"the process tree after the fault (every {TREE_INTERVAL_S:g} s)"
        )
    if ratio is not None:
        text += f", throughput after recovery at least {ratio:.0%} of the pre-fault rate"
    return text


def _counts(roles: dict[str, list[int]] | None) -> str:
    """Role counts with their pids, for a sentence."""
    return ", ".join(f"{name} {len(pids)} {pids}" for name, pids in sorted((roles or {}).items())) or "none"


def _fault_unseen(exp: Experiment, record: dict[str, Any], cap: dict[str, Any]) -> str:
    """Why the harness could not see the fault take effect ('' when it did)."""
    facts = record["fault"].get("inject") or {}
    if exp.fault.type != "kill":
        return ""
    if facts.get("gone") is False:
        return (
            f"the fault was not seen to take effect: pid {facts.get('pid')} ({facts.get('pid_file')}) was still "
            f"alive after the {facts.get('signal')}"
        )
    if cap["killed_role"] is not None and cap["killed_seen_gone"] is False:
        return (
            f"the fault was not seen to take effect: pid {facts.get('pid')} of role {cap['killed_role']} never "
            "left the process tree"
        )
    return ""


def _judge_capacity(
    exp: Experiment, rep: dict[str, Any], budget_s: float, policy: ChaosPolicy
) -> tuple[list[Status], list[str]]:
    """The capacity half of a repetition (#25): role counts back, the target's own counts, throughput."""
    cap, statuses, problems = rep["capacity"], [], []
    if not cap["roles_declared"]:
        if exp.fault.type == "kill":
            statuses.append(Status.INCONCLUSIVE)
            problems.append(
                "capacity not observable: no [gates.G4.roles] declared, so a killed process that never comes back "
                "would go unseen"
            )
    else:
        declared = {name: role.count for name, role in policy.roles.items() if role.count is not None}
        off = {n: len((cap["before"] or {}).get(n, [])) for n, c in declared.items()}
        off = {n: c for n, c in off.items() if c != declared[n]}
        if cap["before"] is None or off:
            statuses.append(Status.INCONCLUSIVE)
            problems.append(
                "steady state not met: "
                + ", ".join(
                    f"role {n} had {c} process(es) before the fault, {declared[n]} declared" for n, c in off.items()
                )
                if off
                else "steady state not met: the process tree was not counted before the fault"
            )
        elif cap["restored_at_s"] is None:
            statuses.append(Status.FAIL)
            problems.append(
                f"capacity not restored within the {budget_s:g} s budget: {_short(cap)} at the end of observation "
                f"(before the fault: {_counts(cap['before'])})"
            )
        elif cap["restore_from_removal_s"] > budget_s:
            statuses.append(Status.FAIL)
            problems.append(f"capacity restored after {cap['restore_from_removal_s']:g} s > budget {budget_s:g} s")
    for when in ("before", "after"):
        for line in cap[f"metrics_{when}"]:
            statuses.append(Status.FAIL)
            problems.append(f"{when} the fault, {line}")
    before, after = cap["rate_before"], cap["rate_after"]
    spec = policy.capacity
    if before is None or after is None:
        statuses.append(Status.INCONCLUSIVE)
        problems.append("throughput not measured (no capacity burst recorded)")
    elif before["window_s"] is None or before["completed"] < before["size"]:
        statuses.append(Status.INCONCLUSIVE)
        problems.append(
            f"throughput not measured: only {before['completed']} of {before['size']} units of the pre-fault "
            "burst completed"
        )
    elif before["window_s"] < spec.min_window_s:
        statuses.append(Status.INCONCLUSIVE)
        problems.append(
            f"throughput not measured: the pre-fault burst of {before['size']} completed in {before['window_s']:g} s "
            f"(< capacity.min_window_s {spec.min_window_s:g} s); use a heavier capacity.work body or a bigger burst"
        )
    elif after["rate_per_s"] < spec.min_fraction * before["rate_per_s"]:
        statuses.append(Status.FAIL)
        problems.append(
            f"throughput after recovery {after['rate_per_s']:g}/s ({after['completed']} of {after['size']} in "
            f"{_num(after['window_s'])} s) is {after['rate_per_s'] / before['rate_per_s']:.0%} of the pre-fault "
            f"{before['rate_per_s']:g}/s (< capacity.min_fraction {spec.min_fraction:g})"
            + ("; the better of two bursts after recovery" if cap.get("confirmed") else "")
            + _backlog_note(cap.get("backlog"))
        )
    return statuses, problems


def _backlog_note(backlog: dict[str, Any] | None) -> str:
    """'; 12 of 40 earlier units still open after waiting 30 s' when the burst began beside a backlog."""
    if not backlog or not backlog.get("open"):
        return ""
    return f"; {backlog['open']} of {backlog['ids']} earlier units still open after waiting {backlog['waited_s']:g} s"


def _short(cap: dict[str, Any]) -> str:
    """The roles whose final count differs from the pre-fault one, e.g. 'role worker has 1 of 2 processes'."""
    before, final = cap["before"] or {}, cap["final"] or {}
    parts = [
        f"role {name} has {len(final.get(name, []))} of {len(pids)} process(es) {final.get(name, [])}"
        for name, pids in sorted(before.items())
        if len(final.get(name, [])) != len(pids)
    ]
    return "; ".join(parts) or f"the killed pid is still counted ({_counts(final)})"


def _judge_health(rep: dict[str, Any], budget_s: float) -> tuple[list[Status], list[str]]:
    """The health half of a repetition: a stable healthy streak of probes within the budget."""
    rec = rep["recovery_from_removal_s"]
    if rec is None:
        return [Status.FAIL], [
            f"not recovered: no stable healthy streak ({rep['unhealthy_probes']} of {rep['probes_after_injection']} "
            f"probes unhealthy after injection) within the {budget_s:g} s budget"
            + (
                "; readiness answered 2xx throughout, so the health endpoint never showed it"
                if rep["detect_s"] is None
                else ""
            )
        ]
    if rec > budget_s:
        return [Status.FAIL], [f"recovered after {rec:g} s > budget {budget_s:g} s"]
    return [], []


def _judge_rep(
    record: dict[str, Any], rep: dict[str, Any], budget_s: float, policy: ChaosPolicy, exp: Experiment
) -> tuple[Status, str]:
    """One repetition's status and sentence (empty when it passed)."""
    fault = record["fault"]
    if record["outcome"] != "ran":
        return Status.INCONCLUSIVE, record.get("reason", "did not run")
    if fault.get("error"):
        return Status.INCONCLUSIVE, f"the fault could not be injected: {fault['error']}"
    if fault.get("rollback_error"):
        return Status.INCONCLUSIVE, f"the fault's rollback failed: {fault['rollback_error']}"
    problems, statuses = [], [Status.PASS]
    unseen = _fault_unseen(exp, record, rep["capacity"])
    if unseen:  # nothing after it is a recovery (or a failure to recover) from this fault
        statuses.append(Status.INCONCLUSIVE)
        problems.append(unseen)
    else:
        for part in (_judge_health(rep, budget_s), _judge_capacity(exp, rep, budget_s, policy)):
            statuses += part[0]
            problems += part[1]
    if rep["lost"]:
        statuses.append(Status.FAIL)
        problems.append(f"{rep['lost']} accepted unit(s) of work lost (e.g. {', '.join(rep['lost_ids'][:3])})")
    if rep["not_completed"]:
        statuses.append(Status.FAIL)
        problems.append(
            f"{rep['not_completed']} accepted unit(s) of work failed or unfinished after the drain "
            f"(e.g. {', '.join(rep['not_completed_ids'][:3])})"
        )
    if rep["duplicated"]:
        statuses.append(Status.FAIL)
        problems.append(f"{rep['duplicated']} duplicate completion(s)")
    elif rep["duplicated"] is None and worst(statuses) is Status.PASS:
        statuses.append(Status.INCONCLUSIVE)
        problems.append("duplicates not observable: configure tasks.completions_field or tasks.completions_metric")
    return worst(statuses), "; ".join(problems)
