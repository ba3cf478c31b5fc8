"""Pure judgement of the stored raw observations: probe health, snapshots, refusals, recovery, verdicts.

Nothing here does I/O. `judge_run` turns one stored run (samples, snapshots, incidents, audit rows,
ledger) into checks; `judge_playbook` folds the repetitions of one playbook into a row of the report.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from typing import Any

from gates.playbooks.config import FileProbe, HttpProbe, PlaybookPolicy, ProcessProbe, SqliteProbe
from gates.playbooks.ledger import reconcile
from gates.playbooks.observe import field
from harness.model import Status, worst

STABLE_S = 1.0


def probe_healthy(probe: Any, seen: dict[str, Any] | None) -> bool:  # noqa: PLR0911 - one answer per probe kind
    """Whether one probe observation is healthy under its declaration."""
    if not seen:
        return False
    if isinstance(probe, HttpProbe):
        return seen.get("status") in probe.status and (not probe.field or seen.get("value") == probe.equals)
    if isinstance(probe, FileProbe):
        return _file_healthy(probe, seen)
    if isinstance(probe, ProcessProbe):
        if not seen.get("alive") or seen.get("state") in {"T", "t", "Z"}:
            return False
        return probe.max_rss_mb is None or float(seen.get("rss_mb", 0)) <= probe.max_rss_mb
    assert isinstance(probe, SqliteProbe)  # noqa: S101 - the config model is a closed union
    if probe.write:
        return seen.get("writable") is True
    rows = seen.get("rows")
    if not rows:
        return False
    value = rows[0][0]
    if probe.max is not None:
        return isinstance(value, int | float) and value <= probe.max
    return bool(value == probe.equals)


def _file_healthy(probe: FileProbe, seen: dict[str, Any]) -> bool:
    """File probe checks; no match is healthy only for `absent` and size bounds."""
    matches = int(seen.get("matches", 0))
    if probe.absent:
        return matches == 0
    if matches == 0:
        return probe.max_age_s is None and probe.mode_forbid is None
    checks = [
        probe.max_bytes is None or int(seen["bytes"]) <= probe.max_bytes,
        probe.max_age_s is None or float(seen["age_s"]) <= probe.max_age_s,
        probe.mode_forbid is None or not int(seen["mode"]) & probe.mode_forbid,
    ]
    return all(checks)


def sample_healthy(policy: PlaybookPolicy, names: tuple[str, ...], sample: dict[str, Any]) -> bool:
    """Whether every named probe of one sample is healthy."""
    return all(probe_healthy(policy.probes[name], sample["obs"].get(name)) for name in names)


def recovered_at(policy: PlaybookPolicy, names: tuple[str, ...], samples: list[dict[str, Any]]) -> float | None:
    """Start (s after the reference time) of the final healthy stretch of samples, if it lasted STABLE_S."""
    start = None
    for sample in samples:
        start = (sample["t"] if start is None else start) if sample_healthy(policy, names, sample) else None
    if start is None or not samples or samples[-1]["t"] - start < STABLE_S:
        return None
    return float(start)


def diff_files(before: dict[str, Any], after: dict[str, Any], ignore: tuple[str, ...]) -> list[str]:
    """Paths added, removed or changed between two file snapshots (ignored globs left out)."""
    changed = []
    for path in sorted(set(before) | set(after)):
        if any(fnmatch(path, pattern) for pattern in ignore):
            continue
        if before.get(path) != after.get(path):
            what = "added" if path not in before else "removed" if path not in after else "changed"
            changed.append(f"{path} {what}")
    return changed


def diff_snapshot(before: dict[str, Any], after: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Every difference between two snapshots: files, processes, SQLite rows, API answers."""
    changes = diff_files(before.get("files", {}), after.get("files", {}), ignore)
    for part in ("processes", "sqlite", "api"):
        if part in before and part in after and before[part] != after[part]:
            keys = before[part] if isinstance(before[part], dict) else {}
            named = [k for k in keys if before[part].get(k) != after[part].get(k)] if keys else [part]
            changes.extend(f"{part}: {name} changed" for name in named)
    return changes


def audit_hits(rows: list[list[Any]], action: str, playbook: str, since: float) -> list[int]:
    """Sequence numbers of audit entries with that action naming the playbook, at or after `since`."""
    return [
        int(row[0])
        for row in rows
        if len(row) >= 4
        and row[2] == action
        and playbook in str(row[3])
        and float(row[4] if len(row) > 4 else since) >= since
    ]


def _refused(policy: PlaybookPolicy, names: tuple[str, ...], samples: list[dict[str, Any]]) -> bool:
    """A refusal holds when there were samples and none showed the fault healed."""
    return len(samples) >= 2 and not any(sample_healthy(policy, names, s) for s in samples)


def judge_run(policy: PlaybookPolicy, run: dict[str, Any]) -> dict[str, Any]:
    """Checks of one stored run of one playbook."""
    pb = run["playbook"]
    check = policy.playbooks[pb]
    names = tuple(check.probes)
    all_names = (*names, *policy.health)
    out: dict[str, Any] = {"playbook": pb, "rep": run["rep"], "checks": {}, "reasons": []}
    if run.get("start_error"):
        out["checks"]["start"] = "FAIL"
        out["reasons"].append(f"instance did not start: {run['start_error']}")
        return out
    if run.get("not_run"):
        out["checks"]["run"] = Status.NOT_RUN.value
        out["reasons"].append(f"{pb}: not run: {run['not_run']}")
        return out
    checks, reasons = out["checks"], out["reasons"]
    baseline_ok = sample_healthy(policy, names, run.get("baseline") or {"obs": {}})
    detected = any(not sample_healthy(policy, names, s) for s in run.get("observed", []))
    checks["detected"] = "PASS" if baseline_ok and detected else "INCONCLUSIVE"
    if not baseline_ok:
        reasons.append(f"{pb}: probes {', '.join(names)} were unhealthy before injection: they cannot see this fault")
    elif not detected:
        reasons.append(f"{pb}: the harness's probes did not see the injected fault within {check.observe_s:g} s")
    _judge_dry_run(run, checks, reasons)
    _judge_governance(policy, run, names, checks, reasons)
    _judge_heal(policy, run, all_names, out)
    _judge_rollback(policy, run, names, checks, reasons)
    if policy.target_api.audit_verify is not None:
        intact = field((run.get("audit_verify") or {}).get("body"), policy.target_api.audit_intact_field)
        checks["audit_chain"] = "PASS" if intact is True else "FAIL"
        if intact is not True:
            reasons.append(f"{pb}: the audit chain does not verify after the run ({run.get('audit_verify')})")
    _judge_ledger(policy, run, out)
    return out


def _judge_ledger(policy: PlaybookPolicy, run: dict[str, Any], out: dict[str, Any]) -> None:
    """Every unit of work accepted during the run completed exactly once; no [gates.PB.work]: NOT_RUN."""
    pb, checks, reasons = run["playbook"], out["checks"], out["reasons"]
    if policy.work is None:
        out["ledger"] = None
        checks["ledger"] = Status.NOT_RUN.value
        reasons.append(
            f"{pb}: work ledger not run: [gates.PB.work] not declared (no work was submitted during the run "
            "and reconciled by id, so work lost or duplicated while healing is not checked)"
        )
        return
    stored = run.get("ledger") or {}
    ledger = reconcile(stored.get("attempts", []), stored.get("finals", {}), policy.work.model_dump())
    out["ledger"] = {k: (len(v) if isinstance(v, list) else v) for k, v in ledger.items()}
    bad = ledger["lost"] + ledger["duplicated"] + ledger["failed"]
    checks["ledger"] = "PASS" if ledger["accepted"] and not bad else "FAIL" if bad else "INCONCLUSIVE"
    if bad:
        reasons.append(
            f"{pb}: work lost {len(ledger['lost'])}, duplicated {len(ledger['duplicated'])}, failed "
            f"{len(ledger['failed'])} of {ledger['accepted']} accepted (e.g. {', '.join(bad[:3])})"
        )
    elif not ledger["accepted"]:
        reasons.append(f"{pb}: the target accepted no work during the run: nothing to reconcile")


def _judge_dry_run(run: dict[str, Any], checks: dict[str, str], reasons: list[str]) -> None:
    """The dry-run must leave the snapshot unchanged; it must also have answered."""
    dry = run.get("dry_run")
    if dry is None or not run.get("held"):
        checks["dry_run"] = "NOT_RUN"
        reasons.append(f"{run['playbook']}: dry-run not checked: {run.get('dry_run_skip', 'no hold declared')}")
        return
    changes = diff_snapshot(dry["before"], dry["after"])
    churn = fault_churn(dry)
    unexplained = [change for change in changes if not churned(change_subject(change), churn)]
    explained = [change for change in changes if churned(change_subject(change), churn)]
    status = dry["answer"]["status"]
    if status is None or not 200 <= status < 300:
        checks["dry_run"] = "FAIL"
        reasons.append(f"{run['playbook']}: dry-run request answered {status} ({dry['answer']['error']})")
    elif unexplained:
        checks["dry_run"] = "FAIL"
        reasons.append(f"{run['playbook']}: dry-run changed state: {'; '.join(unexplained[:5])}")
    else:
        checks["dry_run"] = "PASS"
        if explained:
            reasons.append(
                f"{run['playbook']}: during the dry-run {'; '.join(explained[:3])}, as in the control windows "
                "without a dry-run (the same file, or a pid file of the same shape: the fault's own churn), so not "
                "held against the dry-run"
            )


def change_subject(change: str) -> str:
    """What a snapshot difference is about, without its verb: a file path, or 'processes: processes'."""
    if change.split(":", 1)[0] in ("processes", "sqlite", "api"):
        return change.removesuffix(" changed")
    return change.rsplit(" ", 1)[0]


def pid_file_shape(subject: str) -> str | None:
    """`pids/worker-#.pid` for `pids/worker-0.pid`: the shape of a pid file's path (None for anything else)."""
    return re.sub(r"\d+", "#", subject) if subject.endswith(".pid") else None


def churned(subject: str, churn: set[str]) -> bool:
    """Whether a dry-run window's change is the fault's own churn: the same subject changed in a control window.

    Pid files count by shape: a fault that crashes workers one after another removes worker-1's pid
    file in one window and worker-0's in the next (seen on guardian's poison-task, 2026-12-07), and
    which worker's turn fell inside the dry-run's 0.08 s is chance, not the dry-run's doing.
    """
    shape = pid_file_shape(subject)
    return subject in churn or (shape is not None and shape in {pid_file_shape(c) for c in churn})


def fault_churn(dry: dict[str, Any]) -> set[str]:
    """Subjects that changed in the control windows beside the dry-run (none recorded: nothing excused)."""
    control = dry.get("control")
    if not control:
        return set()
    changes = diff_snapshot(control["before"], dry["before"]) + diff_snapshot(dry["after"], control["after"])
    return {change_subject(change) for change in changes}


def _judge_governance(
    policy: PlaybookPolicy, run: dict[str, Any], names: tuple[str, ...], checks: dict[str, str], reasons: list[str]
) -> None:
    """Refusals without approval and outside the window: no healing seen, and each one audited."""
    pb, audit = run["playbook"], run.get("audit", {}).get("rows", [])
    for key, why in sorted((run.get("refusal_skip") or {}).items()):
        checks[key] = Status.NOT_RUN.value
        reasons.append(f"{pb}: refusal ({key.replace('_', ' ')}) not checked: {why}")
    for key in ("needs_approval", "outside_window"):
        window = run.get("refusals", {}).get(key)
        if window is None:
            continue
        if not _refused(policy, names, window["samples"]):
            checks[key] = "FAIL"
            reasons.append(f"{pb}: tier {run['tier']} fault was healed {key.replace('_', ' ')} (refusal expected)")
            continue
        action = policy.audit_actions.get(key, "")
        hits = audit_hits(audit, action, pb, window["since"]) if action else []
        checks[key] = "PASS" if hits else "FAIL"
        if not hits:
            reasons.append(f"{pb}: refusal ({key.replace('_', ' ')}) not in the audit log (action {action!r})")


def cleared_elsewhere(
    policy: PlaybookPolicy,
    names: tuple[str, ...],
    run: dict[str, Any],
    mine: list[dict[str, Any]],
    others: list[str],
) -> bool:
    """No incident at all, yet the first sample after the hold was already healthy: not the playbook's work."""
    samples = run.get("samples", [])
    return bool(not mine and not others and samples and sample_healthy(policy, names, samples[0]))


def _judge_heal(policy: PlaybookPolicy, run: dict[str, Any], names: tuple[str, ...], out: dict[str, Any]) -> None:
    """Healed by the right playbook only, health back by the harness's probes, within budget."""
    pb, api = run["playbook"], policy.target_api
    checks, reasons = out["checks"], out["reasons"]
    budget_s = policy.playbooks[pb].recovery_budget_s or policy.recovery_budget_s
    mine = [i for i in run.get("incidents", []) if i.get(api.incident_playbook_field) == pb]
    others = sorted({str(i.get(api.incident_playbook_field)) for i in run.get("incidents", [])} - {pb})
    healed = [i for i in mine if i.get(api.incident_status_field) in api.healed]
    out["target_recovery_s"] = healed[0].get(api.incident_recovery_field) if healed else None
    checks["right_playbook"] = "PASS" if healed and not others else "FAIL"
    if cleared_elsewhere(policy, names, run, mine, others):
        checks["right_playbook"] = "INCONCLUSIVE"
        reasons.append(
            f"{pb}: the fault was already gone when the harness released the healer and no incident of {pb} "
            "was opened: something else cleared it (e.g. a supervisor), so the playbook was not exercised"
        )
    elif not healed:
        seen = ", ".join(f"#{i.get(api.incident_id_field)} {i.get(api.incident_status_field)}" for i in mine)
        reasons.append(f"{pb}: no incident of {pb} reached {'/'.join(api.healed)} (seen: {seen or 'none'})")
    if others:
        reasons.append(f"{pb}: other playbooks fired during its run: {', '.join(others)}")
    at = recovered_at(policy, names, run.get("samples", []))
    out["recovery_s"] = None if at is None else round(at, 3)
    if at is None:
        checks["recovered"] = "FAIL"
        reasons.append(f"{pb}: the harness's probes did not see health back within {budget_s:g} s")
    elif at > budget_s:
        checks["recovered"] = "FAIL"
        reasons.append(f"{pb}: recovery took {at:.1f} s > budget {budget_s:g} s")
    else:
        checks["recovered"] = "PASS"


def _judge_rollback(
    policy: PlaybookPolicy, run: dict[str, Any], names: tuple[str, ...], checks: dict[str, str], reasons: list[str]
) -> None:
    """After rollback the state must equal the snapshot taken before execute."""
    pb, check = run["playbook"], policy.playbooks[run["playbook"]]
    rb = run.get("rollback")
    if check.rollback == "none":
        checks["rollback"] = "n/a"
        return
    if rb is None:
        checks["rollback"] = "NOT_RUN"
        reasons.append(f"{pb}: rollback not checked: {run.get('rollback_skip', 'not requested')}")
        return
    if rb["state"] not in policy.target_api.rollback_done:
        checks["rollback"] = "FAIL"
        reasons.append(f"{pb}: rollback request ended {rb['state']!r}")
        return
    before = (run.get("dry_run") or {}).get("before") or run.get("pre_execute")
    if not run.get("held") or before is None:
        checks["rollback"] = "NOT_RUN"
        reasons.append(f"{pb}: rollback not compared: no snapshot could be taken before execute (no hold)")
        return
    ignore = (*policy.rollback_ignore, *check.rollback_ignore)
    changes = diff_files(before["files"], rb["after"]["files"], ignore)
    for query in sorted(rb["after"].get("sqlite", {})):
        if before.get("sqlite", {}).get(query) != rb["after"]["sqlite"][query]:
            changes.append(f"sqlite: {query!r} differs")
    names = tuple(check.rollback_probes) or names
    for name in names:
        was = probe_healthy(policy.probes[name], before.get("probes", {}).get(name))
        now = probe_healthy(policy.probes[name], rb["probe"]["obs"].get(name))
        if was != now:
            state = "healthy" if now else "unhealthy"
            changes.append(f"probe {name} {state} after rollback, {'healthy' if was else 'unhealthy'} before execute")
    checks["rollback"] = "FAIL" if changes else "PASS"
    if changes:
        reasons.append(f"{pb}: state after rollback differs from before execute: {'; '.join(changes[:5])}")


def judge_playbook(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold the judged repetitions of one playbook into its report row."""
    statuses: list[Status] = []
    checks: dict[str, str] = {}
    for run in runs:
        for name, value in run["checks"].items():
            order = ["FAIL", "NOT_RUN", "INCONCLUSIVE", "PASS", "n/a"]
            current = checks.get(name, "n/a")
            checks[name] = min(current, value, key=order.index)
    for value in checks.values():
        if value != "n/a":
            statuses.append(Status(value))
    recoveries = [r["recovery_s"] for r in runs if r.get("recovery_s") is not None]
    verdict = worst(statuses) if statuses else Status.INCONCLUSIVE
    if checks.get("detected") == "INCONCLUSIVE" and verdict is not Status.FAIL:
        verdict = Status.INCONCLUSIVE
    return {
        "checks": checks,
        "verdict": verdict.value,
        "recovery_s": recoveries,
        "target_recovery_s": [r.get("target_recovery_s") for r in runs],
        "ledger": [r.get("ledger") for r in runs],
        "reasons": [reason for r in runs for reason in r["reasons"]],
    }
