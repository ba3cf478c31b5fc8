"""H3: the target's top failure modes, each traced to a playbook the gate verified end to end.

A failure mode is verified when the playbook it names was listed by the target, declared with probes,
and its PB runs PASSed with two confirmations: the target's own verify hook passed (its incident
reached a healed status, which guardian and the fixtures set only after verify) and the harness's
own probes saw health back (the `recovered` check). Pure: it reads the judged playbook rows.
"""

from __future__ import annotations

from typing import Any

from gates.playbooks.config import PlaybookPolicy

#: Detail key of the count check (the others are `mode <id>`).
COUNT = "declared"


def _mode_row(mode: Any, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One failure mode's row: the playbook's verdict, the two confirmations and why not when not."""
    row = rows.get(mode.playbook)
    out = {"id": mode.id, "title": mode.title, "playbook": mode.playbook, "verify_hook": "-", "harness_probe": "-"}
    if row is None:
        return {
            **out,
            "status": "FAIL",
            "reason": f"failure mode {mode.id}: playbook {mode.playbook!r} does not exist "
            "(the target does not list it)",
        }
    checks = row.get("checks", {})
    out |= {"verify_hook": checks.get("right_playbook", "NOT_RUN"), "harness_probe": checks.get("recovered", "NOT_RUN")}
    if row["verdict"] == "PASS" and out["verify_hook"] == "PASS" and out["harness_probe"] == "PASS":
        return {**out, "status": "PASS", "reason": ""}
    status = (
        "FAIL"
        if row["verdict"] == "FAIL" or "FAIL" in (out["verify_hook"], out["harness_probe"])
        else (row["verdict"] if row["verdict"] != "PASS" else "INCONCLUSIVE")
    )
    return {
        **out,
        "status": status,
        "reason": f"failure mode {mode.id}: playbook {mode.playbook} is {row['verdict']} in PB (target verify "
        f"{out['verify_hook']}, harness probe {out['harness_probe']})",
    }


def judge_failure_modes(policy: PlaybookPolicy, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The traceability of the declared failure modes: a row each, the count check, statuses and reasons."""
    by_id = {row["id"]: row for row in rows}
    modes = [_mode_row(mode, by_id) for mode in policy.failure_modes]
    ids = [mode.id for mode in policy.failure_modes]
    distinct = len(set(ids))
    reasons = [row["reason"] for row in modes if row["reason"]]
    count_ok = distinct >= policy.min_failure_modes and distinct == len(ids)
    if distinct < policy.min_failure_modes:
        reasons.insert(
            0,
            f"certify.toml [[gates.PB.failure_modes]] declares {distinct} distinct failure mode(s), "
            f"fewer than the {policy.min_failure_modes} required (requirement H3)",
        )
    if distinct != len(ids):
        reasons.insert(0, "certify.toml [[gates.PB.failure_modes]] declares an id more than once")
    checks = {COUNT: "PASS" if count_ok else "FAIL", **{f"mode {row['id']}": row["status"] for row in modes}}
    return {
        "declared": len(ids),
        "required": policy.min_failure_modes,
        "modes": modes,
        "checks": checks,
        "reasons": reasons,
    }
