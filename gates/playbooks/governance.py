"""The governance instance: the playbook list, out-of-bounds parameters and a run forced past the watchdog.

Collect-side; the stored record is judged by `judge_governance` (pure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from gates.playbooks import sandbox
from gates.playbooks.at_rest import collect_at_rest, judge_at_rest
from gates.playbooks.audit_chain import judge_chain
from gates.playbooks.config import PlaybookPolicy, SqliteSnapshot
from gates.playbooks.instances import PlaybookInstances
from gates.playbooks.judge import audit_hits
from gates.playbooks.observe import call, field, query_rows
from gates.playbooks.scenario import SAMPLE_S, window_epochs
from harness.errors import TargetError
from harness.model import Status


def collect_governance(
    instances: PlaybookInstances,
    policy: PlaybookPolicy,
    cancel: threading.Event,
    on_list: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """List the playbooks, send out-of-bounds parameters, force a watchdog abort; the raw record.

    `on_list` gets the list answer as soon as it is read, so the playbook runs need not wait for
    the parameter and watchdog checks.
    """
    api = policy.target_api
    env = policy.watchdog.instance_env if policy.watchdog else {}
    record: dict[str, Any] = {"params": [], "watchdog": None, "started_at": round(time.time(), 3)}
    try:
        with instances.running("PB-governance", env) as instance:
            port = instance.port
            record["list"] = call(port, api.list_playbooks)
            if on_list is not None:
                on_list(record["list"])
            if policy.sandbox is not None:
                listed = field(record["list"]["body"], api.list_items)
                items = listed if isinstance(listed, list) else []
                record["sandbox"] = sandbox.observe(
                    instance.service.pid, instance.data_dir, items, policy.sandbox, instance.user.record()
                )
            if api.clock is not None:
                record["clock"] = call(port, api.clock, body={api.clock_field: window_epochs(policy)[0]})
            for case in policy.params:
                if api.dry_run is None:  # judged NOT_RUN, naming the key
                    break
                since = time.time()
                answer = call(port, api.dry_run, {"id": case.playbook}, case.params)
                record["params"].append(
                    {"playbook": case.playbook, "params": case.params, "since": since, "answer": answer}
                )
            if policy.watchdog is not None:
                skip = _watchdog_skip(policy, record["list"])
                record["watchdog"] = {"skip": skip} if skip else _force_watchdog(port, policy, cancel)
            if policy.audit is not None:
                record["audit"] = query_rows(instance.data_dir, policy.audit)
            if policy.audit_chain is not None:
                chain = policy.audit_chain
                snapshot = SqliteSnapshot(database=chain.database, query=chain.query)
                record["audit_chain"] = query_rows(instance.data_dir, snapshot)
            if api.audit_verify is not None:
                record["audit_verify"] = call(port, api.audit_verify)
            if policy.at_rest is not None:
                record["at_rest"] = collect_at_rest(port, instance.data_dir, policy.at_rest)
    except TargetError as exc:
        record["start_error"] = exc.message[-600:]
    record["ended_at"] = round(time.time(), 3)
    return record


def _watchdog_skip(policy: PlaybookPolicy, listed: dict[str, Any]) -> str:
    """Why the watchdog run cannot be forced: its playbook needs an approval the target gives no way to grant."""
    api, check = policy.target_api, policy.watchdog
    assert check is not None  # noqa: S101 - checked by the caller
    items = field(listed.get("body"), api.list_items)
    tiers = [
        int(item.get(api.tier_field) or 1)
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict) and str(item.get(api.id_field)) == check.playbook
    ]
    missing = [name for name in ("approvals", "approve") if getattr(api, name) is None]
    if tiers and tiers[0] >= 2 and missing:
        return f"{check.playbook} is tier {tiers[0]} and [gates.PB.api] {' and '.join(missing)} not declared"
    return ""


def _force_watchdog(port: int, policy: PlaybookPolicy, cancel: threading.Event) -> dict[str, Any]:
    """Inject the watchdog playbook's fault, approve it when asked, wait for its incident to be final."""
    api, check = policy.target_api, policy.watchdog
    assert check is not None  # noqa: S101 - checked by the caller
    since = time.time()
    options = {**(api.inject.body or {}), **check.options}
    inject = call(port, api.inject, {"id": check.playbook}, options)
    approved = None
    last: dict[str, Any] | None = None
    deadline = time.monotonic() + check.timeout_s
    while time.monotonic() < deadline and not cancel.is_set():
        if approved is None and api.approvals is not None and api.approve is not None:
            for item in field(call(port, api.approvals)["body"], api.approvals_items) or []:
                if item.get(api.approval_playbook_field) == check.playbook:
                    approved = call(port, api.approve, {"approval_id": item.get(api.approval_id_field)})
        items = field(call(port, api.incidents)["body"], api.incidents_items) or []
        mine = [i for i in items if i.get(api.incident_playbook_field) == check.playbook]
        last = mine[0] if mine else None
        if last is not None and last.get(api.incident_status_field) in api.final:
            break
        time.sleep(SAMPLE_S)
    return {"since": since, "inject": inject, "approved": approved, "incident": last}


def judge_governance(policy: PlaybookPolicy, record: dict[str, Any]) -> dict[str, Any]:
    """Pure: params cases rejected (and audited where declared), the watchdog abort seen and audited, chain intact."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    audit = (record.get("audit") or {}).get("rows", [])
    for case, spec in zip(record.get("params", []), policy.params, strict=False):
        name = f"params {case['playbook']} {sorted(case['params'])}"
        status = case["answer"]["status"]
        if status is None or not 400 <= status < 500:
            checks[name] = "FAIL"
            reasons.append(f"out-of-bounds parameters {case['params']} for {case['playbook']} answered {status}")
        elif not spec.audit_action:
            checks[name] = "INCONCLUSIVE"
            reasons.append(f"{name}: rejected ({status}) but the target declares no audit entry for the refusal")
        elif audit_hits(audit, spec.audit_action, case["playbook"], case["since"]):
            checks[name] = "PASS"
        else:
            checks[name] = "FAIL"
            reasons.append(f"{name}: rejected ({status}) but not in the audit log")
    if not policy.params:
        checks["params"] = "NOT_RUN"
        reasons.append("no out-of-bounds parameter cases declared ([gates.PB] params)")
    elif policy.target_api.dry_run is None:
        checks["params"] = "NOT_RUN"
        reasons.append("out-of-bounds parameters not sent: [gates.PB.api] dry_run not declared")
    _judge_watchdog(policy, record, audit, checks, reasons)
    verify = record.get("audit_verify")
    if policy.target_api.audit_verify is not None:
        intact = field((verify or {}).get("body"), policy.target_api.audit_intact_field)
        checks["audit chain (governance instance)"] = "PASS" if intact is True else "FAIL"
        if intact is not True:
            reasons.append(f"audit chain verification answered {verify}")
    judge_chain(policy.audit_chain, record, checks, reasons)
    sandbox.judge_sandbox(policy.sandbox, record, checks, reasons)
    judge_at_rest(policy.at_rest, record, checks, reasons)
    return {"checks": checks, "reasons": reasons}


def _judge_watchdog(
    policy: PlaybookPolicy, record: dict[str, Any], audit: list[list[Any]], checks: dict[str, str], reasons: list[str]
) -> None:
    """A run forced past the watchdog must end with the expected status and an audit entry."""
    check, seen = policy.watchdog, record.get("watchdog")
    if check is None:
        checks["watchdog"] = Status.NOT_RUN.value
        reasons.append("watchdog not checked: the target declares no way to force a run past it ([gates.PB] watchdog)")
        return
    skip = (seen or {}).get("skip")
    if skip:
        checks["watchdog"] = Status.NOT_RUN.value
        reasons.append(f"watchdog not checked: {skip}")
        return
    incident = (seen or {}).get("incident") or {}
    status = incident.get(policy.target_api.incident_status_field)
    hits = audit_hits(audit, check.audit_action, check.playbook, (seen or {}).get("since", 0.0))
    if status in check.expect_status and hits:
        checks["watchdog"] = "PASS"
    else:
        checks["watchdog"] = "FAIL"
        reasons.append(
            f"watchdog: {check.playbook} forced past the watchdog ended {status!r} "
            f"(expected {'/'.join(check.expect_status)}); audit entries {check.audit_action!r}: {len(hits)}"
        )
