"""H14: the target's learning aggregates and scheduler counters, recomputed by the harness from its own logs.

Collect side (`read_learning`, called with each run's closing facts): the incident list (the
target's learning log of outcomes) is read before and after the learning endpoint, and the audit
log before and after the scheduler-counters endpoint, so a value written between the reads is
still bracketed. Judge side (`learning_findings`, pure): per window (24 h, 7 d, all time) the
outcome counts the endpoint claims must lie between the counts the harness recomputes from the two
incident lists (incidents detected within the window before the read); each declared counter must
lie between the number of its audit action in the two audit reads. A stubbed or constant answer
disagrees.
"""

from __future__ import annotations

import time
from typing import Any

from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.observe import field


def read_learning(scenario: Any) -> dict[str, Any] | None:
    """The closing reads of H14 for one run (None when the target declares neither endpoint)."""
    from gates.playbooks.observe import call, query_rows  # noqa: PLC0415 - collect-only helpers

    api = scenario.api
    if api.learning is None and api.scheduler_counters is None:
        return None
    out: dict[str, Any] = {}
    if api.learning is not None:
        before = scenario.incidents()
        read_at = time.time()
        answer = call(scenario.port, api.learning)
        out["learning"] = {"before": before, "answer": answer, "read_at": round(read_at, 3)}
        out["learning"]["after"] = scenario.incidents()
    if api.scheduler_counters is not None and scenario.policy.audit is not None:
        data_dir = scenario.instance.data_dir
        audit_before = query_rows(data_dir, scenario.policy.audit)
        answer = call(scenario.port, api.scheduler_counters)
        out["counters"] = {"audit_before": audit_before, "answer": answer}
        out["counters"]["audit_after"] = query_rows(data_dir, scenario.policy.audit)
    return out


def _window_counts(policy: PlaybookPolicy, incidents: list[dict[str, Any]], since: float) -> dict[str, float]:
    """Outcome counts of the incidents detected at or after `since`."""
    api = policy.target_api
    counts: dict[str, float] = {}
    for item in incidents:
        detected = item.get(api.incident_detected_field)
        if isinstance(detected, int | float) and detected >= since:
            status = str(item.get(api.incident_status_field))
            counts[status] = counts.get(status, 0.0) + 1
    return counts


def _learning_rows(policy: PlaybookPolicy, read: dict[str, Any], pb: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and reasons of the learning-aggregate comparison."""
    api = policy.target_api
    body = (read.get("answer") or {}).get("body")
    if not isinstance(body, dict):
        return [], [f"{pb}: the learning endpoint gave no JSON object ({read.get('answer')})"]
    rows, reasons = [], []
    for window, span_s in api.learning_windows.items():
        since = read["read_at"] - span_s if span_s > 0 else float("-inf")
        low = _window_counts(policy, read["before"], since)
        high = _window_counts(policy, read["after"], since)
        claimed = field(body.get(window), api.learning_outcomes_field) if isinstance(body.get(window), dict) else None
        if not isinstance(claimed, dict):
            reasons.append(f"{pb}: learning window {window!r} has no {api.learning_outcomes_field!r} counts")
            continue
        for status in sorted(set(low) | set(high) | {str(k) for k in claimed}):
            a, b, value = low.get(status, 0.0), high.get(status, 0.0), claimed.get(status, 0)
            ok = isinstance(value, int | float) and min(a, b) <= value <= max(a, b)
            rows.append({"window": window, "outcome": status, "api": value, "recomputed": [a, b] if a != b else a})
            rows[-1]["ok"] = ok
            if not ok:
                listed = f"{a:g}" if a == b else f"{a:g}..{b:g}"
                reasons.append(f"{pb}: learning {window} says {status} = {value}, its incident list says {listed}")
    return rows, reasons


def _audit_count(read: dict[str, Any], action: str) -> float | None:
    """How many audit rows carry `action` (row[2]); None when the audit could not be read."""
    if "rows" not in read:
        return None
    return float(sum(1 for row in read["rows"] if len(row) > 2 and row[2] == action))


def _counter_rows(policy: PlaybookPolicy, read: dict[str, Any], pb: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and reasons of the scheduler-counter comparison."""
    body = (read.get("answer") or {}).get("body")
    if not isinstance(body, dict):
        return [], [f"{pb}: the scheduler-counters endpoint gave no JSON object ({read.get('answer')})"]
    rows, reasons = [], []
    for counter, action in sorted(policy.target_api.counter_audit_actions.items()):
        a, b = _audit_count(read["audit_before"], action), _audit_count(read["audit_after"], action)
        if a is None or b is None:
            reasons.append(f"{pb}: the audit log could not be read to recompute {counter}")
            continue
        value = body.get(counter)
        ok = isinstance(value, int | float) and a <= value <= b
        rows.append({"counter": counter, "audit_action": action, "api": value, "audit": a if a == b else [a, b]})
        rows[-1]["ok"] = ok
        if not ok:
            listed = f"{a:g}" if a == b else f"{a:g}..{b:g}"
            reasons.append(
                f"{pb}: scheduler counter {counter} = {value}, the audit log has {listed} {action!r} entries"
            )
    return rows, reasons


def learning_findings(policy: PlaybookPolicy, run: dict[str, Any]) -> tuple[str, list[str], list[dict[str, Any]]]:
    """Status (PASS/FAIL/NOT_RUN/n/a), reasons and rows of the H14 cross-check of one run."""
    api, pb = policy.target_api, run["playbook"]
    if api.learning is None and api.scheduler_counters is None:
        return "n/a", [], []
    read = run.get("learning_read")
    if not read:
        return "NOT_RUN", [f"{pb}: learning log and counters not read (the run ended before its closing facts)"], []
    rows, reasons = [], []
    if "learning" in read:
        more, why = _learning_rows(policy, read["learning"], pb)
        rows += more
        reasons += why
    if api.scheduler_counters is not None and "counters" not in read:
        reasons.append(f"{pb}: scheduler counters declared but no [gates.PB] audit query to recompute them from")
    elif "counters" in read:
        more, why = _counter_rows(policy, read["counters"], pb)
        rows += more
        reasons += why
    if not rows and not reasons:
        return "INCONCLUSIVE", [f"{pb}: nothing to compare (no outcome and no declared counter)"], []
    return ("FAIL" if reasons else "PASS"), reasons, rows
