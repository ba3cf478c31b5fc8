"""Pure judging of one experiment from its stored outcome and repetition records (used by evaluate and the report)."""

from __future__ import annotations

from typing import Any

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
        status, why = _judge_rep(record, rep, budget)
        statuses.append(status)
        if why:
            reasons.append(f"{exp.id} repetition {n}: {why}")
    if len(records) < outcome["repetitions"]:
        statuses.append(Status.INCONCLUSIVE)
        reasons.append(f"{exp.id}: {len(records)} of {outcome['repetitions']} repetitions recorded")
    recoveries = [r["recovery_from_removal_s"] for r in reps if r["recovery_from_removal_s"] is not None]
    status = worst(statuses) if statuses else Status.INCONCLUSIVE
    dist = distribution(recoveries)
    figures = {
        "repetitions": len(records),
        "recovery_s": dist,
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
            f"{exp.id}: {_seen(records, reps, dist['max'], budget, policy.probe_interval_s)} over {len(records)} "
            f"repetition(s); {figures['accepted']} accepted units of work, none lost or duplicated"
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
    for record in records:
        fault = record["fault"]
        start, end = fault.get("injected_at_s"), fault.get("removed_at_s")
        if start is not None and end is not None:
            probes += sum(1 for sample in record["samples"] if start <= sample["t_s"] <= end)
    return (
        f"no outage seen: {probes} probe(s) every {interval_s * 1000:g} ms (as recorded) during the fault window "
        f"all found it ready and working (budget {budget:g} s)"
    )


def _judge_rep(record: dict[str, Any], rep: dict[str, Any], budget_s: float) -> tuple[Status, str]:
    """One repetition's status and sentence (empty when it passed)."""
    fault = record["fault"]
    if record["outcome"] != "ran":
        return Status.INCONCLUSIVE, record.get("reason", "did not run")
    if fault.get("error"):
        return Status.INCONCLUSIVE, f"the fault could not be injected: {fault['error']}"
    if fault.get("rollback_error"):
        return Status.INCONCLUSIVE, f"the fault's rollback failed: {fault['rollback_error']}"
    problems, status = [], Status.PASS
    rec = rep["recovery_from_removal_s"]
    if rec is None:
        status = Status.FAIL
        problems.append(
            f"not recovered: no stable healthy streak ({rep['unhealthy_probes']} of {rep['probes_after_injection']} "
            f"probes unhealthy after injection) within the {budget_s:g} s budget"
            + (
                "; readiness answered 2xx throughout, so the health endpoint never showed it"
                if rep["detect_s"] is None
                else ""
            )
        )
    elif rec > budget_s:
        status = Status.FAIL
        problems.append(f"recovered after {rec:g} s > budget {budget_s:g} s")
    if rep["lost"]:
        status = Status.FAIL
        problems.append(f"{rep['lost']} accepted unit(s) of work lost (e.g. {', '.join(rep['lost_ids'][:3])})")
    if rep["not_completed"]:
        status = Status.FAIL
        problems.append(
            f"{rep['not_completed']} accepted unit(s) of work failed or unfinished after the drain "
            f"(e.g. {', '.join(rep['not_completed_ids'][:3])})"
        )
    if rep["duplicated"]:
        status = Status.FAIL
        problems.append(f"{rep['duplicated']} duplicate completion(s)")
    elif rep["duplicated"] is None and status is Status.PASS:
        status = Status.INCONCLUSIVE
        problems.append("duplicates not observable: configure tasks.completions_field or tasks.completions_metric")
    return status, "; ".join(problems)
