"""Turning stored evidence into verdicts, and verdicts into the run's overall decision; all pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.baseline import with_regression
from harness.compare_rules import RegressionRules
from harness.errors import PackError
from harness.gate import Evidence, Gate, Policy
from harness.model import GateResult, Status, Verdict

COLLECT_RECORD = "collect.json"
#: Exit code of a run with an unwaived deviation from the policy (README, "Exit codes").
DEVIATION_EXIT = 4
OUTCOME_STATUS = {
    "not_run": Status.NOT_RUN,
    "error": Status.ERROR,
    "timeout": Status.INCONCLUSIVE,
    "interrupted": Status.ERROR,
    "target_failed": Status.FAIL,
}


def decide(gate: Gate, evidence: Evidence, policy: Policy, rules: RegressionRules | None = None) -> Verdict:
    """The verdict of one gate from its evidence: the collect record first, then the gate's evaluate.

    With the policy's regression rules, a gate whose evidence holds a baseline (harness/baseline.py)
    also has its regression check merged in.
    """
    if not evidence.exists(COLLECT_RECORD):
        return Verdict.of(Status.ERROR, "the gate left no collect record; its evidence is incomplete")
    try:
        record = evidence.read_json(COLLECT_RECORD)
        outcome = record.get("outcome")
    except (PackError, AttributeError) as exc:
        return Verdict.of(Status.ERROR, f"the collect record is unreadable: {exc}")
    if outcome != "ok":
        status = OUTCOME_STATUS.get(str(outcome), Status.ERROR)
        return Verdict.of(status, str(record.get("reason") or f"collect ended with {outcome!r}"))
    try:
        return with_regression(gate.spec.id, gate.evaluate(evidence, policy), evidence, rules)
    except Exception as exc:
        return Verdict.of(Status.ERROR, f"evaluate failed on the stored evidence: {type(exc).__name__}: {exc}")


def not_implemented(gate_id: str, version: str) -> Verdict:
    """The verdict of a catalogue gate this harness version does not implement yet."""
    return Verdict.of(Status.NOT_RUN, f"gate {gate_id} is not implemented in release-harness {version}")


def not_selected(gate_id: str) -> Verdict:
    """The verdict of a required gate the run left out (--gates): recorded, never omitted."""
    return Verdict.of(Status.NOT_RUN, f"required gate {gate_id} was not run: left out by --gates")


def not_applicable(gate_id: str, reason: str, terms: str, policy_label: str) -> Verdict:
    """The verdict of a gate the target declared not applicable, as the policy allows: N/A with both reasons."""
    return Verdict.of(
        Status.NOT_APPLICABLE,
        f"{gate_id} is not applicable: {reason} (policy {policy_label} allows that on the terms: {terms})",
    )


def left_out(result: GateResult) -> bool:
    """Whether a result is the record of a required gate the run left out (--gates) rather than a gate that ran."""
    return result.verdict == not_selected(result.gate)


def overall(
    results: Sequence[GateResult],
    required_gates: Sequence[str],
    mode: str,
    complete: bool,
    blocking_deviations: Sequence[str] = (),
    *,
    traceability: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Exit code, certification and blocking gates of a run (see README, "Exit codes").

    An unwaived deviation from the policy (by id) makes a complete run exit 4 and never certify,
    whatever its gates say; the ids are recorded under `deviations` (absent when there are none,
    as in packs from before policies). `traceability` (the matrix's decision facts, absent in packs
    from before the matrix) is recorded; in release mode under a policy that lists requirements,
    CERTIFIED needs every in-scope requirement evidenced and PASS, and a run short of it exits 3.
    """
    blocking = _blocking(results, required_gates)
    # A required gate left out by --gates is recorded (NOT_RUN, blocking) but did not run: the
    # exit code covers only the gates that ran (README, "--gates").
    ran = [result for result in results if not left_out(result)]
    statuses = [result.verdict.status for result in ran]
    if not complete:
        exit_code = 130
    elif blocking_deviations:
        exit_code = DEVIATION_EXIT
    elif Status.FAIL in statuses:
        exit_code = 1
    elif any(r.required and r.verdict.status is not Status.PASS for r in ran):
        exit_code = 3
    else:
        exit_code = 0
    matrix_short = bool(
        traceability is not None and mode == "release" and traceability["scope_listed"] and traceability["not_passed"]
    )
    if matrix_short and exit_code == 0:
        exit_code = 3
    certified = complete and mode == "release" and not blocking and not blocking_deviations and not matrix_short
    decision: dict[str, Any] = {"exit_code": exit_code, "certified": certified, "blocking": blocking}
    if blocking_deviations:
        decision["deviations"] = list(blocking_deviations)
    if traceability is not None:
        decision["traceability"] = dict(traceability)
    return decision


def _blocking(results: Sequence[GateResult], required_gates: Sequence[str]) -> list[dict[str, Any]]:
    """The gates between a run and a certificate: required ones not PASS, and any FAIL."""
    by_gate = {result.gate: result for result in results}
    blocking: list[dict[str, Any]] = []
    for gate_id in required_gates:
        result = by_gate.get(gate_id)
        if result is None:
            blocking.append({"gate": gate_id, "status": Status.NOT_RUN.value, "reasons": ["not run in this run"]})
        elif result.verdict.status is not Status.PASS:
            blocking.append(
                {
                    "gate": gate_id,
                    "status": result.verdict.status.value,
                    "reasons": list(result.verdict.reasons),
                }
            )
    for result in results:
        if result.verdict.status is Status.FAIL and result.gate not in required_gates:
            blocking.append({"gate": result.gate, "status": "FAIL", "reasons": list(result.verdict.reasons)})
    return blocking
