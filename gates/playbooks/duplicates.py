"""H12: the duplicate approval-request guard, seen with the harness's own eyes on an instance of its own.

One approval-needing fault is caused three times, each after the previous incident closed unapproved,
with the target's governance clock set first to T0, then to T0 + window - margin (inside the window),
then to T0 + window + margin (past it). After each injection the harness waits for the target to decide
(an accepted or refused request in its audit log) and reads every approval request through the API.

The judge (pure) wants: the first request accepted (a new approval, audited); the second refused (no new
approval for the same service and diagnosis) and audited; the third accepted again. A target that accepts
the duplicate, or refuses without an audit entry, FAILs naming the approval and the clock it was made at.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from gates.playbooks.judge import audit_hits
from gates.playbooks.observe import call, field, query_rows
from harness.errors import TargetError

if TYPE_CHECKING:
    from pathlib import Path

    from gates.playbooks.config import DuplicateGuardCheck, PlaybookPolicy
    from gates.playbooks.instances import PlaybookInstances
    from harness.lifecycle import Instance

POLL_S = 0.5
#: The three requests: (name, clock offset from T0 in windows and margins).
STEPS = (("first", 0, 0), ("inside", 1, -1), ("after", 1, 1))


def step_offsets_s(check: DuplicateGuardCheck) -> dict[str, float]:
    """Clock offset of each request from the first one (pure)."""
    return {name: windows * check.window_s + margins * check.margin_s for name, windows, margins in STEPS}


def _audit(data_dir: Path, policy: PlaybookPolicy) -> list[list[Any]]:
    """The audit log's rows now ([] when none is declared or it cannot be read)."""
    if policy.audit is None:
        return []
    rows: list[list[Any]] = query_rows(data_dir, policy.audit).get("rows", [])
    return rows


def _decided(policy: PlaybookPolicy, rows: list[list[Any]], since: float) -> bool:
    """Whether the audit log shows the target accepted or refused a request for the playbook since `since`."""
    check = policy.duplicates
    assert check is not None  # noqa: S101 - only run when declared
    actions = (check.accepted_audit_action, check.refused_audit_action)
    return any(audit_hits(rows, action, check.playbook, since) for action in actions)


def _closed(policy: PlaybookPolicy, port: int, since: float) -> dict[str, Any] | None:
    """The playbook's newest incident detected since `since` once it is final (None while open or absent)."""
    api, check = policy.target_api, policy.duplicates
    assert check is not None  # noqa: S101 - only run when declared
    items = field(call(port, api.incidents)["body"], api.incidents_items) or []
    mine = [i for i in items if isinstance(i, dict) and i.get(api.incident_playbook_field) == check.playbook]
    newest = max(mine, key=lambda i: float(i.get(api.incident_detected_field) or 0.0), default=None)
    if newest is None or float(newest.get(api.incident_detected_field) or 0.0) < since - 1.0:
        return None
    return newest if newest.get(api.incident_status_field) in api.final else None


def _step(
    policy: PlaybookPolicy, instance: Instance, epoch: float, last: bool, cancel: threading.Event
) -> dict[str, Any]:
    """Set the clock, inject, wait for the decision, read the approvals, wait for the incident to close."""
    api, check = policy.target_api, policy.duplicates
    assert check is not None  # noqa: S101 - checked by the caller
    assert api.clock is not None  # noqa: S101 - checked by the caller
    port, data_dir = instance.port, instance.data_dir
    record: dict[str, Any] = {"epoch": epoch}
    record["clock"] = call(port, api.clock, body={api.clock_field: epoch})
    record["since"] = since = time.time()
    options = {**(api.inject.body or {}), **check.options}
    record["inject"] = call(port, api.inject, {"id": check.playbook}, options)
    deadline = time.monotonic() + check.step_timeout_s
    while time.monotonic() < deadline and not cancel.is_set() and not _decided(policy, _audit(data_dir, policy), since):
        time.sleep(POLL_S)
    record["decided_after_s"] = round(time.time() - since, 3)
    record["approvals"] = call(port, check.approvals)
    if last:
        return record
    closed = None
    deadline = time.monotonic() + check.step_timeout_s
    while time.monotonic() < deadline and not cancel.is_set():
        closed = _closed(policy, port, since)
        if closed is not None:
            break
        time.sleep(POLL_S)
    record["closed"] = closed
    record["closed_after_s"] = round(time.time() - since, 3)
    return record


def collect_duplicates(
    instances: PlaybookInstances, policy: PlaybookPolicy, cancel: threading.Event
) -> dict[str, Any] | None:
    """The duplicates instance: approvals before, three requests with the clock moved, the audit log after."""
    check, api = policy.duplicates, policy.target_api
    if check is None:
        return None
    if api.clock is None:
        return {"error": "[gates.PB.api] clock is unset: the governance clock cannot be moved past the window"}
    record: dict[str, Any] = {"steps": [], "started_at": round(time.time(), 3)}
    try:
        with instances.running("PB-duplicates") as instance:
            record["instance"] = instance.name
            record["before"] = call(instance.port, check.approvals)
            t0 = round(time.time(), 3)
            offsets = step_offsets_s(check)
            for index, (name, _, _) in enumerate(STEPS):
                if cancel.is_set():
                    break
                step = _step(policy, instance, t0 + offsets[name], index == len(STEPS) - 1, cancel)
                record["steps"].append({"name": name, "offset_s": offsets[name], **step})
            record["clock_cleared"] = call(instance.port, api.clock, body={api.clock_field: None})
            record["audit"] = query_rows(instance.data_dir, policy.audit) if policy.audit else None
    except TargetError as exc:
        record["start_error"] = exc.message[-600:]
    record["ended_at"] = round(time.time(), 3)
    return record


def _approvals(policy: PlaybookPolicy, answer: dict[str, Any] | None) -> dict[Any, Any]:
    """Approval id -> approval, from one approvals answer (pure)."""
    items = field((answer or {}).get("body"), policy.target_api.approvals_items)
    return {
        item.get(policy.target_api.approval_id_field): item
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    }


def _new_for(
    check: DuplicateGuardCheck, seen: dict[Any, Any], now: dict[Any, Any], key: tuple[Any, Any] | None
) -> list[dict[str, Any]]:
    """Approvals in `now` not in `seen`, for the service and diagnosis `key` (any, when key is None)."""
    fresh = [item for approval_id, item in now.items() if approval_id not in seen]
    if key is None:
        return fresh
    return [item for item in fresh if (item.get(check.service_field), item.get(check.diagnosis_field)) == key]


def _not_judged(policy: PlaybookPolicy, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The single-check verdict of a record that cannot be judged step by step (None: it can). Pure."""
    if record is None:
        status, why = "NOT_RUN", "no duplicates record"
    elif record.get("error") or record.get("start_error"):
        status, why = "FAIL", record.get("error") or f"instance did not start: {record['start_error']}"
    elif {step["name"] for step in record.get("steps", [])} != {name for name, _, _ in STEPS}:
        status, why = "FAIL", f"steps run: {', '.join(s['name'] for s in record['steps']) or 'none'} (interrupted)"
    elif policy.audit is None:
        status, why = "INCONCLUSIVE", "no [gates.PB] audit declared: a refusal cannot be shown audited"
    else:
        return None
    return {"checks": {"H12 duplicate guard": status}, "reasons": [f"H12: {why}"], "steps": [], "key": None}


def judge_duplicates(policy: PlaybookPolicy, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The four H12 checks from the stored record; None when H12 is not declared. Pure."""
    check = policy.duplicates
    if check is None:
        return None
    early = _not_judged(policy, record)
    if early is not None or record is None:
        return early
    steps = {step["name"]: step for step in record["steps"]}
    audit = (record.get("audit") or {}).get("rows", [])
    id_field = policy.target_api.approval_id_field
    checks: dict[str, str] = {}
    reasons: list[str] = []
    first = _approvals(policy, steps["first"]["approvals"])
    created = _new_for(check, _approvals(policy, record.get("before")), first, None)
    key = (created[0].get(check.service_field), created[0].get(check.diagnosis_field)) if created else None
    accepted = audit_hits(audit, check.accepted_audit_action, check.playbook, steps["first"]["since"])
    checks["H12 first request accepted"] = "PASS" if created and accepted else "FAIL"
    if not created:
        reasons.append(f"H12: the first {check.playbook} fault created no approval request")
    elif not accepted:
        reasons.append(f"H12: approval {created[0].get(id_field)} is not audited as {check.accepted_audit_action!r}")
    what = f"service {key[0]!r}, diagnosis {key[1]!r}" if key else "its service and diagnosis"
    inside = _approvals(policy, steps["inside"]["approvals"])
    duplicate = _new_for(check, first, inside, key) if key else []
    checks["H12 duplicate refused"] = "PASS" if key and not duplicate else "FAIL"
    if duplicate:
        ids = ", ".join(str(item.get(id_field)) for item in duplicate)
        offset = steps["inside"]["offset_s"]
        reasons.append(f"H12: a second request for {what} {offset:g} s after the first was accepted: approval {ids}")
    refused = audit_hits(audit, check.refused_audit_action, check.playbook, steps["inside"]["since"])
    checks["H12 refusal audited"] = "PASS" if key and not duplicate and refused else "FAIL"
    if key and not duplicate and not refused:
        reasons.append(f"H12: the second request was refused but no {check.refused_audit_action!r} entry names it")
    again = _new_for(check, inside, _approvals(policy, steps["after"]["approvals"]), key) if key else []
    checks["H12 accepted after the window"] = "PASS" if again else "FAIL"
    if not again:
        past = steps["after"]["offset_s"]
        reasons.append(f"H12: no new approval for {what} {past:g} s after the first (window {check.window_s:g} s)")
    t0 = float(steps["first"].get("epoch") or 0.0)
    fresh = {"first": created, "inside": duplicate, "after": again}
    rows = [_step_row(check, steps[name], name, _requested(check, id_field, fresh[name], t0)) for name, _, _ in STEPS]
    return {"checks": checks, "reasons": reasons, "steps": rows, "key": list(key) if key else None}


def _requested(check: DuplicateGuardCheck, id_field: str, approvals: list[dict[str, Any]], t0: float) -> list[Any]:
    """[id, requested_at - T0] of each new approval: the clock the target filed it at, as it says (pure)."""
    rows = []
    for item in approvals:
        at = item.get(check.requested_at_field) if check.requested_at_field else None
        rows.append([item.get(id_field), round(float(at) - t0, 3) if isinstance(at, int | float) else None])
    return rows


def _step_row(check: DuplicateGuardCheck, step: dict[str, Any], name: str, new: list[Any]) -> dict[str, Any]:
    """One request's reported figures (pure)."""
    closed = step.get("closed") or {}
    return {
        "name": name,
        "offset_s": step["offset_s"],
        "inject_status": (step.get("inject") or {}).get("status"),
        "decided_after_s": step.get("decided_after_s"),
        "closed_status": closed.get("status") if closed else None,
        "closed_after_s": step.get("closed_after_s"),
        "new_approvals": new,
        "window_s": check.window_s,
    }
