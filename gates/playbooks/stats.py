"""Pure cross-check of what the target says about its own healing against what the harness saw.

Two checks per run (requirements H5, H6, O3):
- the stats endpoint (runs, outcomes, MTTR count and max) must agree with the target's incident list,
  read just before and just after it: a stubbed or constant stats answer disagrees;
- the incident the run caused must fit the harness's own timeline: detected no earlier than the
  injection, resolved no earlier than the last probe sample that still saw the fault and no later than
  the harness saw it final. A target claiming a faster MTTR than the probes allow is caught here.
"""

from __future__ import annotations

from typing import Any

from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.judge import recovered_at, sample_healthy
from gates.playbooks.learning import learning_findings
from gates.playbooks.observe import field

SLACK_S = 1.0
"""Clock and sampling slack for the timeline bounds (probe samples are 0.25 s apart, one host clock)."""


def _counts(policy: PlaybookPolicy, incidents: list[dict[str, Any]]) -> dict[str, float]:
    """What the stats should say for one incident list: total, per status, healed recoveries and their max."""
    api = policy.target_api
    counts: dict[str, float] = {"incidents": float(len(incidents))}
    recoveries = []
    for item in incidents:
        status = str(item.get(api.incident_status_field))
        counts[f"outcome {status}"] = counts.get(f"outcome {status}", 0.0) + 1
        if status in api.healed and item.get(api.incident_recovery_field) is not None:
            recoveries.append(float(item[api.incident_recovery_field]))
    counts["recoveries"] = float(len(recoveries))
    counts["recovery max"] = max(recoveries, default=0.0)
    return counts


def _claimed(policy: PlaybookPolicy, body: Any) -> dict[str, float | None]:
    """The figures the stats answer claims, by the same keys as `_counts` (None: field absent)."""
    api = policy.target_api
    claimed: dict[str, float | None] = {}
    for key, path in (
        ("incidents", api.stats_incidents_field),
        ("recoveries", api.stats_recovery_count_field),
        ("recovery max", api.stats_recovery_max_field),
    ):
        if path:
            value = field(body, path)
            claimed[key] = float(value) if isinstance(value, int | float) else None
    outcomes = field(body, api.stats_outcomes_field) if api.stats_outcomes_field else None
    if isinstance(outcomes, dict):
        claimed |= {f"outcome {k}": float(v) for k, v in outcomes.items() if isinstance(v, int | float)}
    if claimed.get("recovery max") is None and claimed.get("recoveries") == 0:
        claimed["recovery max"] = 0.0
    return claimed


def stats_findings(policy: PlaybookPolicy, run: dict[str, Any]) -> tuple[str, list[str], list[dict[str, Any]]]:
    """Status (PASS/FAIL/NOT_RUN/n/a), reasons and the comparison rows of the stats-endpoint cross-check."""
    pb = run["playbook"]
    if policy.target_api.stats is None:
        return "n/a", [], []
    closing = run.get("stats_read")
    if not closing:
        return "NOT_RUN", [f"{pb}: healer stats not read (the run ended before its closing facts)"], []
    body = (closing.get("stats") or {}).get("body")
    if not isinstance(body, dict):
        return "FAIL", [f"{pb}: the stats endpoint gave no JSON object ({closing.get('stats')})"], []
    low, high = _counts(policy, closing["before"]), _counts(policy, closing["after"])
    claimed = _claimed(policy, body)
    rows, reasons = [], []
    for key in sorted(set(low) | set(high) | set(claimed)):
        if key not in claimed and key.startswith("outcome ") and not policy.target_api.stats_outcomes_field:
            continue
        if key in ("incidents", "recoveries", "recovery max") and key not in claimed:
            continue
        a, b = low.get(key, 0.0), high.get(key, 0.0)
        value = claimed.get(key, 0.0)
        tolerance = 0.01 if key == "recovery max" else 0.0
        ok = value is not None and min(a, b) - tolerance <= value <= max(a, b) + tolerance
        rows.append({"figure": key, "stats": value, "incident_list": [a, b] if a != b else a, "ok": ok})
        if not ok:
            listed = f"{a:g}" if a == b else f"{a:g}..{b:g}"
            reasons.append(f"{pb}: healer stats say {key} = {value}, its incident list says {listed}")
    return ("FAIL" if reasons else "PASS"), reasons, rows


def timeline_findings(policy: PlaybookPolicy, run: dict[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
    """Status, reasons and figures of the caused incident's detected/resolved times against the probes."""
    api, pb = policy.target_api, run["playbook"]
    if not (api.incident_detected_field and api.incident_resolved_field):
        return "n/a", [], {}
    healed = [
        i
        for i in run.get("incidents", [])
        if i.get(api.incident_playbook_field) == pb and i.get(api.incident_status_field) in api.healed
    ]
    if not healed or "inject_at" not in run:
        return "n/a", [], {}
    incident = healed[0]
    detected, resolved = incident.get(api.incident_detected_field), incident.get(api.incident_resolved_field)
    if not isinstance(detected, int | float) or not isinstance(resolved, int | float):
        return "FAIL", [f"{pb}: incident {incident.get(api.incident_id_field)} has no numeric detected/resolved"], {}
    names = policy.playbooks[pb].probes
    samples = [*run.get("observed", []), *run.get("samples", [])]
    last_fault = max((s["at"] for s in samples if not sample_healthy(policy, names, s)), default=None)
    if recovered_at(policy, names, run.get("samples", [])) is None:
        last_fault = None
    seen_final = (run.get("final_seen_at") or {}).get(str(incident.get(api.incident_id_field)))
    facts = {"inject_at": run["inject_at"], "detected_at": detected, "resolved_at": resolved}
    facts |= {"last_fault_sample_at": last_fault, "final_seen_at": seen_final}
    reasons = []
    if detected < run["inject_at"] - SLACK_S:
        reasons.append(f"{pb}: the target dates its detection {run['inject_at'] - detected:.1f} s before the injection")
    if last_fault is not None and resolved < last_fault - SLACK_S:
        reasons.append(
            f"{pb}: the target says resolved {last_fault - resolved:.1f} s before the harness's probes last saw "
            "the fault: its MTTR is shorter than what happened"
        )
    if seen_final is not None and resolved > seen_final + SLACK_S:
        reasons.append(f"{pb}: the target's resolution time is {resolved - seen_final:.1f} s after it reported it")
    return ("FAIL" if reasons else "PASS"), reasons, facts


def judge_claims(policy: PlaybookPolicy, run: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """Add the `stats` and `timeline` checks (and their figures) to one judged run; return it."""
    if run.get("start_error") or run.get("not_run"):
        return out
    status, reasons, rows = stats_findings(policy, run)
    out["checks"]["stats"] = status
    out["reasons"].extend(reasons)
    out["stats_rows"] = rows
    status, reasons, facts = timeline_findings(policy, run)
    out["checks"]["timeline"] = status
    out["reasons"].extend(reasons)
    out["timeline"] = facts
    status, reasons, rows = learning_findings(policy, run)
    out["checks"]["learning"] = status
    out["reasons"].extend(reasons)
    out["learning_rows"] = rows
    return out
