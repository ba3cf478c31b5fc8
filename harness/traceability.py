"""The traceability matrix (R1): every catalogue requirement -> the checks that evidence it -> their files.

A pure function of the recorded verdicts (results.json), the manifest's file hashes, the checks this
harness version declares (`GateSpec.checks`) and the policy's scope, so `certify verify` rebuilds it
byte for byte. Written into every pack as traceability.json and traceability.md, before the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.checks import CheckOutcome, CheckSpec, check_outcome
from harness.decide import left_out
from harness.evidence import HARNESS, EvidencePack, dump_json
from harness.model import GateResult, Status, worst
from harness.render_matrix import render_matrix_md
from harness.requirements import requirement_catalogue

if TYPE_CHECKING:
    from pathlib import Path

    from harness.policy import LoadedPolicy

MATRIX_JSON = "traceability.json"
MATRIX_MD = "traceability.md"
MATRIX_FORMAT = "release-harness-traceability/1"
UNEVIDENCED = "UNEVIDENCED"
OUT_OF_SCOPE = "OUT_OF_SCOPE"
#: The requirement the matrix itself evidences.
MATRIX_REQUIREMENT = "R1"
#: Requirement statuses outside the completeness figure: out of the policy's scope, or N/A on its terms.
_NOT_COUNTED = (OUT_OF_SCOPE, Status.NOT_APPLICABLE.value)


def declared_checks() -> dict[str, tuple[CheckSpec, ...]]:
    """Per gate id, the checks its implementation in this harness version declares."""
    from harness.baseline import REGRESSION_CHECKS  # noqa: PLC0415
    from harness.registry import all_gates  # noqa: PLC0415 - the registry imports the gates, which import this

    extra = {gate_id: (check,) for gate_id, check in REGRESSION_CHECKS.items()}
    return {gate.spec.id: gate.spec.checks + extra.get(gate.spec.id, ()) for gate in all_gates()}


def gate_hashes(manifest_files: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The sha256 of every gate-written file in a manifest's `files` table (the harness's own files excluded)."""
    return {path: str(entry.get("sha256")) for path, entry in manifest_files.items() if entry.get("gate") != HARNESS}


def _check_row(check: CheckSpec, gate_id: str, result: GateResult | None, hashes: Mapping[str, str]) -> dict[str, Any]:
    """One check's row: its status in this run, why, and its evidence files with their sha256."""
    if result is None:
        outcome = CheckOutcome(Status.NOT_RUN, f"gate {gate_id} was not run in this run", {})
    elif left_out(result):
        outcome = CheckOutcome(Status.NOT_RUN, f"gate {gate_id} was left out by --gates", {})
    elif result.verdict.status is Status.NOT_APPLICABLE:
        outcome = CheckOutcome(Status.NOT_APPLICABLE, result.verdict.reasons[0], {})
    else:
        outcome = check_outcome(check, result.verdict, hashes)
    return {
        "id": check.id,
        "gate": gate_id,
        "title": check.title,
        "status": outcome.status.value,
        "reason": outcome.reason,
        "evidence": [{"path": path, "sha256": digest} for path, digest in outcome.files.items()],
    }


def _scope_reason(requirement_id: str, policy: LoadedPolicy | None) -> str | None:
    """Why a requirement is out of the policy's scope, or None when it is in scope."""
    if policy is None or not policy.policy.policy.requirements:
        return None
    meta = policy.policy.policy
    if requirement_id in meta.requirements:
        return None
    given = meta.out_of_scope.get(requirement_id)
    return f"policy {policy.name} {policy.version}: " + (given or "not among the requirements it holds a target to")


def build_matrix(
    results: Sequence[GateResult],
    hashes: Mapping[str, str],
    policy: LoadedPolicy | None,
    checks: Mapping[str, tuple[CheckSpec, ...]] | None = None,
    not_applicable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The matrix of one run: requirement -> checks -> status -> evidence files; pure.

    A requirement is N/A when the policy allowed the target to declare it so (`not_applicable`: id -> why),
    or when every check evidencing it belongs to a gate declared N/A that names it among its own
    requirements; N/A rows count neither for nor against completeness, and are listed under it.
    """
    declared_na = not_applicable or {}
    declared = declared_checks() if checks is None else checks
    by_gate = {result.gate: result for result in results}
    catalogue = requirement_catalogue()
    rows = []
    for requirement in catalogue.requirements:
        check_rows = [
            _check_row(check, gate_id, by_gate.get(gate_id), hashes)
            for gate_id, gate_checks in declared.items()
            for check in gate_checks
            if requirement.id in check.requirements
        ]
        out_reason = _scope_reason(requirement.id, policy)
        if out_reason is not None:
            status, reason = OUT_OF_SCOPE, out_reason
        elif requirement.id in declared_na:
            status, reason = Status.NOT_APPLICABLE.value, declared_na[requirement.id]
        elif not check_rows:
            status, reason = UNEVIDENCED, f"no check of release-harness evidences {requirement.id} yet"
        else:
            status = worst([Status(row["status"]) for row in check_rows]).value
            reason = f"{sum(row['status'] == 'PASS' for row in check_rows)} of {len(check_rows)} check(s) PASS"
            if status == Status.NOT_APPLICABLE.value:
                status, reason = _na_by_gate(requirement.id, check_rows, by_gate)
        rows.append(
            {
                "id": requirement.id,
                "group": requirement.group,
                "text": requirement.text,
                "figure": requirement.figure,
                "status": status,
                "reason": reason,
                "checks": check_rows,
            }
        )
    _judge_matrix_requirement(rows)
    return {
        "format": MATRIX_FORMAT,
        "catalogue_version": catalogue.version,
        # The policy's identity without its source, which differs between the run and a verify of its pack.
        "policy": {"name": policy.name, "version": policy.version, "sha256": policy.sha256} if policy else None,
        "scope_listed": bool(policy is not None and policy.policy.policy.requirements),
        "completeness": _completeness(rows),
        "without_check": [row["id"] for row in rows if not row["checks"]],
        "requirements": rows,
    }


def _na_by_gate(
    requirement_id: str, check_rows: Sequence[Mapping[str, Any]], by_gate: Mapping[str, GateResult]
) -> tuple[str, str]:
    """Status and reason of a requirement whose every check is N/A because its gate was declared N/A.

    Only a requirement the N/A gate names as its own falls with it. One it merely helps to evidence
    (PB's sandbox checks evidence S5, say) is not shown by anything in this run: NOT_RUN, never a
    silent N/A, unless the target declares the requirement itself not applicable where the policy allows.
    """
    gates = sorted({str(row["gate"]) for row in check_rows})
    if any(requirement_id in by_gate[gate].requirements for gate in gates if gate in by_gate):
        return Status.NOT_APPLICABLE.value, str(check_rows[0]["reason"])
    reason = (
        f"only gate(s) {', '.join(gates)} evidence {requirement_id} here, and they are not applicable; "
        f"their N/A does not cover {requirement_id}, which stays unshown unless declared not applicable itself"
    )
    return Status.NOT_RUN.value, reason


def _judge_matrix_requirement(rows: list[dict[str, Any]]) -> None:
    """R1 is evidenced by the matrix itself: PASS only when every other in-scope requirement is PASS."""
    row = next((r for r in rows if r["id"] == MATRIX_REQUIREMENT), None)
    if row is None or row["status"] == OUT_OF_SCOPE:
        return
    others = [r for r in rows if r["id"] != MATRIX_REQUIREMENT and r["status"] not in _NOT_COUNTED]
    short = [r["id"] for r in others if r["status"] != Status.PASS.value]
    row["checks"] = [
        {
            "id": "matrix.complete",
            "gate": "-",
            "title": "traceability matrix, every in-scope requirement evidenced and PASS",
            "status": Status.FAIL.value if short else Status.PASS.value,
            "reason": f"not PASS: {', '.join(short)}" if short else f"all {len(others)} other requirements PASS",
            "evidence": [],
        }
    ]
    row["status"] = row["checks"][0]["status"]
    row["reason"] = f"{len(others) - len(short)} of {len(others)} other in-scope requirements PASS"


def _completeness(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Evidenced and PASS over in scope (N/A rows aside), with the ids that are in scope and not PASS."""
    in_scope = [row for row in rows if row["status"] not in _NOT_COUNTED]
    passed = [row for row in in_scope if row["status"] == Status.PASS.value]
    done: dict[str, Any] = {
        "passed": len(passed),
        "in_scope": len(in_scope),
        "percent": round(100.0 * len(passed) / len(in_scope), 1) if in_scope else 100.0,
        "not_passed": [row["id"] for row in in_scope if row["status"] != Status.PASS.value],
        "unevidenced": [row["id"] for row in in_scope if row["status"] == UNEVIDENCED],
    }
    not_applicable = [row["id"] for row in rows if row["status"] == Status.NOT_APPLICABLE.value]
    if not_applicable:  # absent otherwise, so the matrices of packs from before N/A rebuild byte for byte
        done["not_applicable"] = not_applicable
    return done


def decision_facts(matrix: Mapping[str, Any]) -> dict[str, Any]:
    """What the run's overall decision records of the matrix (and what CERTIFIED rests on)."""
    done = matrix["completeness"]
    return {
        "percent": done["percent"],
        "passed": done["passed"],
        "in_scope": done["in_scope"],
        "not_passed": list(done["not_passed"]),
        "scope_listed": bool(matrix["scope_listed"]),
    }


def write_matrix(
    pack: EvidencePack,
    results: Sequence[GateResult],
    policy: LoadedPolicy,
    not_applicable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build the run's matrix, write traceability.json and .md into the pack; return its decision facts."""
    matrix = build_matrix(results, pack.gate_hashes(), policy, not_applicable=not_applicable)
    pack.write_json(MATRIX_JSON, matrix)
    pack.write_text(MATRIX_MD, render_matrix_md(matrix))
    return decision_facts(matrix)


def recheck_matrix(
    root: Path,
    results: Sequence[GateResult],
    manifest: Mapping[str, Any],
    policy: LoadedPolicy | None,
    problems: list[str],
    *,
    not_applicable: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """For `certify verify`: rebuild the matrix, note what differs; its decision facts (None: no matrix)."""
    path = root / MATRIX_JSON
    if not path.is_file():
        return None
    matrix = build_matrix(results, gate_hashes(manifest.get("files", {})), policy, not_applicable=not_applicable)
    if path.read_bytes() != dump_json(matrix):
        problems.append(f"changed: {MATRIX_JSON} (differs from the matrix rebuilt from results.json and the manifest)")
    md = root / MATRIX_MD
    if not md.is_file() or md.read_text(encoding="utf-8") != render_matrix_md(matrix):
        problems.append(f"changed: {MATRIX_MD} (differs from a re-render of the rebuilt matrix)")
    return decision_facts(matrix)
