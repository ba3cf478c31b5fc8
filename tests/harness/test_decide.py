"""Tests for harness.decide: collect records and evaluate map to verdicts, and verdicts to exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.context import GateContext
from harness.decide import COLLECT_RECORD, decide, not_implemented, not_selected, overall
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import GateResult, Status, Verdict

FAKE_ID = "FAKE"


class FakePolicy(Policy):
    """Thresholds of the fake gate."""

    max_errors: int = 0


class FakeGate(Gate):
    """A gate whose evaluate judges errors.json against max_errors, and crashes if told to."""

    spec: ClassVar[GateSpec] = GateSpec(id=FAKE_ID, title="Fake", requirements=("T1",))
    policy_model: ClassVar[type[Policy]] = FakePolicy

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Never called: decide works on stored evidence only."""
        raise AssertionError

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """PASS when the recorded error count is within the policy."""
        assert isinstance(policy, FakePolicy)
        errors = int(evidence.read_json("errors.json")["errors"])
        status = Status.PASS if errors <= policy.max_errors else Status.FAIL
        return Verdict.of(status, f"{errors} error(s)")


def evidence_of(root: Path, files: dict[str, Any]) -> Evidence:
    """Write the gate's files as JSON into a pack directory and return the evidence view over them."""
    recorded = []
    for name, content in files.items():
        relpath = f"gates/{FAKE_ID}/{name}"
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        recorded.append(relpath)
    return Evidence(root, FAKE_ID, tuple(sorted(recorded)))


def result(gate: str, status: Status, *, required: bool = True) -> GateResult:
    """A recorded gate result with one reason."""
    return GateResult(
        gate=gate, title=f"Title {gate}", requirements=("R",), required=required,
        verdict=Verdict.of(status, f"{gate} is {status.value}"), duration_s=1.0,
    )


# ---------------------------------------------------------------------------------------------
# decide()
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("not_run", Status.NOT_RUN),
        ("error", Status.ERROR),
        ("timeout", Status.INCONCLUSIVE),
        ("interrupted", Status.ERROR),
        ("target_failed", Status.FAIL),
        ("something-new", Status.ERROR),
        (None, Status.ERROR),
    ],
)
def test_collect_outcome_maps_to_status(tmp_path: Path, outcome: str | None, status: Status) -> None:
    """A collect record that is not "ok" decides the verdict by itself, keeping its reason."""
    record = {"outcome": outcome, "reason": "because"}
    evidence = evidence_of(tmp_path, {COLLECT_RECORD: record, "errors.json": {"errors": 0}})
    verdict = decide(FakeGate(), evidence, FakePolicy())
    assert verdict.status is status
    assert verdict.reasons == ("because",)


def test_outcome_without_reason_names_the_outcome(tmp_path: Path) -> None:
    """A non-ok collect record without a reason still gives a reason naming the outcome."""
    evidence = evidence_of(tmp_path, {COLLECT_RECORD: {"outcome": "timeout"}})
    verdict = decide(FakeGate(), evidence, FakePolicy())
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.reasons == ("collect ended with 'timeout'",)


@pytest.mark.parametrize(("errors", "status"), [(0, Status.PASS), (3, Status.FAIL)])
def test_ok_collect_defers_to_evaluate(tmp_path: Path, errors: int, status: Status) -> None:
    """With an "ok" collect record the verdict is whatever evaluate makes of the evidence and policy."""
    evidence = evidence_of(tmp_path, {COLLECT_RECORD: {"outcome": "ok"}, "errors.json": {"errors": errors}})
    verdict = decide(FakeGate(), evidence, FakePolicy())
    assert verdict.status is status
    assert verdict.reasons == (f"{errors} error(s)",)


def test_policy_changes_the_verdict(tmp_path: Path) -> None:
    """The same evidence judged under a looser policy passes."""
    evidence = evidence_of(tmp_path, {COLLECT_RECORD: {"outcome": "ok"}, "errors.json": {"errors": 3}})
    assert decide(FakeGate(), evidence, FakePolicy(max_errors=5)).status is Status.PASS


def test_evaluate_crash_is_an_error_verdict(tmp_path: Path) -> None:
    """An exception raised by evaluate becomes an ERROR verdict naming it, not a crash of the run."""
    evidence = evidence_of(tmp_path, {COLLECT_RECORD: {"outcome": "ok"}, "errors.json": {"errors": "many"}})
    verdict = decide(FakeGate(), evidence, FakePolicy())
    assert verdict.status is Status.ERROR
    assert verdict.reasons[0].startswith("evaluate failed on the stored evidence: ValueError: ")


def test_evaluate_on_missing_evidence_is_an_error_verdict(tmp_path: Path) -> None:
    """Evidence that evaluate needs but the pack lacks gives an ERROR verdict naming the file."""
    evidence = evidence_of(tmp_path, {COLLECT_RECORD: {"outcome": "ok"}})
    verdict = decide(FakeGate(), evidence, FakePolicy())
    assert verdict.status is Status.ERROR
    assert "PackError" in verdict.reasons[0]
    assert "errors.json" in verdict.reasons[0]


def test_missing_collect_record_is_an_error_verdict(tmp_path: Path) -> None:
    """Without a collect record the evidence is incomplete and the verdict is ERROR."""
    evidence = evidence_of(tmp_path, {"errors.json": {"errors": 0}})
    verdict = decide(FakeGate(), evidence, FakePolicy())
    assert verdict.status is Status.ERROR
    assert "no collect record" in verdict.reasons[0]


def test_not_implemented_is_not_run() -> None:
    """A catalogue gate without an implementation is NOT_RUN, naming the gate and harness version."""
    verdict = not_implemented("G4", "0.1.0")
    assert verdict.status is Status.NOT_RUN
    assert verdict.reasons == ("gate G4 is not implemented in release-harness 0.1.0",)


# ---------------------------------------------------------------------------------------------
# overall()
# ---------------------------------------------------------------------------------------------


def test_all_pass_certifies_with_exit_0() -> None:
    """Every required gate PASSing in a complete release run exits 0 and certifies."""
    results = [result("ID", Status.PASS), result("G1", Status.PASS)]
    assert overall(results, ["ID", "G1"], "release", complete=True) == {
        "exit_code": 0, "certified": True, "blocking": [],
    }


def test_required_fail_exits_1_and_blocks() -> None:
    """A FAILed required gate exits 1, blocks certification and is listed with its reasons."""
    decision = overall([result("ID", Status.PASS), result("G1", Status.FAIL)], ["ID", "G1"], "release", True)
    assert decision["exit_code"] == 1
    assert decision["certified"] is False
    assert decision["blocking"] == [{"gate": "G1", "status": "FAIL", "reasons": ["G1 is FAIL"]}]


def test_non_required_fail_still_exits_1_and_blocks() -> None:
    """A FAIL of a gate the certificate does not require still exits 1 and blocks certification."""
    results = [result("ID", Status.PASS), result("G5", Status.FAIL, required=False)]
    decision = overall(results, ["ID"], "release", True)
    assert decision["exit_code"] == 1
    assert decision["certified"] is False
    assert [item["gate"] for item in decision["blocking"]] == ["G5"]


@pytest.mark.parametrize("status", [Status.INCONCLUSIVE, Status.NOT_RUN, Status.ERROR])
def test_required_gate_without_a_pass_exits_3(status: Status) -> None:
    """A required INCONCLUSIVE, NOT_RUN or ERROR gate exits 3 and blocks certification."""
    decision = overall([result("ID", Status.PASS), result("G1", status)], ["ID", "G1"], "release", True)
    assert decision["exit_code"] == 3
    assert decision["certified"] is False
    assert decision["blocking"] == [{"gate": "G1", "status": status.value, "reasons": [f"G1 is {status.value}"]}]


def test_fail_outranks_inconclusive() -> None:
    """A FAIL anywhere exits 1 even when another required gate is INCONCLUSIVE."""
    results = [result("ID", Status.INCONCLUSIVE), result("G1", Status.FAIL)]
    assert overall(results, ["ID", "G1"], "release", True)["exit_code"] == 1


@pytest.mark.parametrize("status", [Status.INCONCLUSIVE, Status.NOT_RUN, Status.ERROR])
def test_non_required_gate_without_a_pass_does_not_block(status: Status) -> None:
    """A non-required gate that is INCONCLUSIVE, NOT_RUN or ERROR neither changes the exit code nor blocks."""
    results = [result("ID", Status.PASS), result("G2", status, required=False)]
    assert overall(results, ["ID"], "release", True) == {"exit_code": 0, "certified": True, "blocking": []}


def test_incomplete_run_exits_130_and_is_not_certified() -> None:
    """An interrupted run exits 130 and never certifies, however good its results."""
    decision = overall([result("ID", Status.PASS)], ["ID"], "release", complete=False)
    assert decision["exit_code"] == 130
    assert decision["certified"] is False


def test_incomplete_run_exits_130_even_with_a_fail() -> None:
    """Interruption wins over a FAIL when choosing the exit code."""
    assert overall([result("ID", Status.FAIL)], ["ID"], "release", complete=False)["exit_code"] == 130


def test_ci_mode_never_certifies() -> None:
    """A ci run with every gate PASSing exits 0 but is never a certificate."""
    decision = overall([result("ID", Status.PASS)], ["ID"], "ci", complete=True)
    assert decision == {"exit_code": 0, "certified": False, "blocking": []}


def test_required_gate_missing_from_results_blocks_as_not_run() -> None:
    """A required gate left out (--gates) blocks as NOT_RUN; the exit code covers only the gates that ran."""
    decision = overall([result("ID", Status.PASS)], ["ID", "G1"], "release", True)
    assert decision["exit_code"] == 0
    assert decision["certified"] is False
    assert decision["blocking"] == [{"gate": "G1", "status": "NOT_RUN", "reasons": ["not run in this run"]}]


@pytest.mark.parametrize("mode", ["ci", "release"])
def test_required_gate_recorded_as_left_out_blocks_without_changing_the_exit_code(mode: str) -> None:
    """A required gate recorded NOT_RUN because --gates left it out blocks; the exit code covers the gates that ran."""
    left_out = GateResult(
        gate="G1", title="G1", requirements=(), required=True, verdict=not_selected("G1"), duration_s=0.0
    )
    decision = overall([result("ID", Status.PASS), left_out], ["ID", "G1"], mode, True)
    assert decision["exit_code"] == 0
    assert decision["certified"] is False
    assert decision["blocking"] == [
        {"gate": "G1", "status": "NOT_RUN", "reasons": ["required gate G1 was not run: left out by --gates"]}
    ]


def test_no_results_and_no_requirements_certifies_nothing_blocking() -> None:
    """With no required gates and no results the run is complete with exit 0."""
    assert overall([], [], "release", True) == {"exit_code": 0, "certified": True, "blocking": []}
