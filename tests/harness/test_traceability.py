"""The traceability matrix as a pure function: declarations, check statuses, scope, R1 and the decision."""

from __future__ import annotations

import pytest

from harness.checks import CheckSpec, check_outcome
from harness.decide import overall
from harness.model import GateResult, Measurement, Status, Verdict
from harness.policy import LoadedPolicy, parse_policy
from harness.policy_pack import unselected_results
from harness.registry import all_gates
from harness.requirements import requirement_catalogue
from harness.traceability import OUT_OF_SCOPE, UNEVIDENCED, build_matrix, decision_facts, declared_checks

CHECK = CheckSpec(
    id="G9.latency",
    title="p99 latency",
    requirements=("G2",),
    measurements=("P1 p99 *",),
    evidence=("load_test_results/P1.json",),
)
MANIFEST = {"load_test_results/P1.json": "ab" * 32, "gates/G9/collect.json": "cd" * 32}


def _verdict(passed: bool | None, status: Status = Status.PASS) -> Verdict:
    """A verdict with one matching and one unrelated measurement."""
    return Verdict(
        status=status,
        measurements=(
            Measurement(name="P1 p99 HTTP latency (from planned start)", value=1.0, passed=passed),
            Measurement(name="P2 p99 HTTP latency (from planned start)", value=1.0, passed=False),
        ),
    )


def _result(gate: str, verdict: Verdict) -> GateResult:
    """A recorded result of one gate."""
    return GateResult(gate=gate, title=gate, requirements=(), required=True, verdict=verdict, duration_s=1.0)


def _policy(requirements: list[str], out_of_scope: dict[str, str] | None = None) -> LoadedPolicy:
    """A minimal policy holding a target to the given requirement ids."""
    reasons = "".join(f'{key} = "{value}"\n' for key, value in (out_of_scope or {}).items())
    raw = (
        f'[policy]\nname = "scoped"\nversion = "1"\nrequired_gates = ["ID"]\nrequirements = {requirements!r}\n'.replace(
            "'", '"'
        )
        + ("[policy.out_of_scope]\n" + reasons if reasons else "")
    )
    return parse_policy(raw.encode(), "scoped.toml")


def test_the_catalogue_ships_every_requirement_id() -> None:
    """The shipped catalogue holds the 68 ids of requirements.md, each with text and group."""
    catalogue = requirement_catalogue()
    expected = [
        *(f"G{n}" for n in range(1, 9)),
        *(f"P{n}" for n in range(1, 6)),
        *(f"C{n}" for n in range(1, 7)),
        *(f"S{n}" for n in range(1, 9)),
        *(f"O{n}" for n in range(1, 9)),
        *(f"D{n}" for n in range(1, 5)),
        *(f"X{n}" for n in range(1, 6)),
        *(f"E{n}" for n in range(1, 5)),
        *(f"H{n}" for n in range(1, 16)),
        *(f"R{n}" for n in range(1, 6)),
    ]
    assert sorted(catalogue.ids) == sorted(expected)
    assert all(r.text and r.group for r in catalogue.requirements)
    assert catalogue.get("G1") is not None
    assert "90" in catalogue.get("G1").figure  # type: ignore[union-attr]


def test_every_declared_requirement_id_is_in_the_catalogue() -> None:
    """No check of any shipped gate claims an id the catalogue does not define, and check ids are unique."""
    known = set(requirement_catalogue().ids)
    checks = [check for gate_checks in declared_checks().values() for check in gate_checks]
    assert checks
    assert {rid for check in checks for rid in check.requirements} <= known
    assert len({check.id for check in checks}) == len(checks)


def test_gate_specs_claim_what_their_checks_evidence() -> None:
    """Each shipped gate's coarse requirement list equals the union of its checks' ids, and none claims R1."""
    for gate in all_gates():
        claimed = {rid for check in gate.spec.checks for rid in check.requirements}
        assert set(gate.spec.requirements) == claimed, gate.spec.id
        assert "R1" not in claimed


def test_every_catalogue_id_appears_in_a_matrix() -> None:
    """A matrix of a run with no results still lists every catalogue id, in catalogue order."""
    matrix = build_matrix([], {}, None)
    assert [row["id"] for row in matrix["requirements"]] == list(requirement_catalogue().ids)
    statuses = {row["id"]: row["status"] for row in matrix["requirements"]}
    assert statuses["G1"] == "NOT_RUN"
    assert statuses["O7"] == UNEVIDENCED


def test_matched_measurements_decide_a_check() -> None:
    """A check PASSes on its own measurements even when an unrelated one of the gate FAILs."""
    outcome = check_outcome(CHECK, _verdict(True, Status.FAIL), MANIFEST)
    assert outcome.status is Status.PASS
    assert outcome.files == {"load_test_results/P1.json": "ab" * 32}
    assert check_outcome(CHECK, _verdict(False, Status.FAIL), MANIFEST).status is Status.FAIL


def test_a_pass_without_its_declared_evidence_file_is_not_pass() -> None:
    """A PASS check whose declared evidence file is not in the manifest is INCONCLUSIVE, naming the file."""
    outcome = check_outcome(CHECK, _verdict(True), {"gates/G9/collect.json": "cd" * 32})
    assert outcome.status is Status.INCONCLUSIVE
    assert "load_test_results/P1.json is not in the manifest" in outcome.reason


def test_a_passing_gate_without_the_checks_measurements_is_inconclusive() -> None:
    """A gate that PASSed but recorded none of a check's measurements leaves that check INCONCLUSIVE."""
    verdict = Verdict(status=Status.PASS, measurements=(Measurement(name="other", value=1.0, passed=True),))
    assert check_outcome(CHECK, verdict, MANIFEST).status is Status.INCONCLUSIVE


def test_detail_sub_statuses_decide_a_check() -> None:
    """A check reading a table of sub-statuses takes the worst of them."""
    check = CheckSpec(id="PB.x", title="x", requirements=("H2",), details=("playbooks",))
    good = Verdict(status=Status.PASS, details={"playbooks": {"a": "PASS", "b": "PASS"}})
    bad = Verdict(status=Status.FAIL, details={"playbooks": {"a": "PASS", "b": "FAIL"}})
    assert check_outcome(check, good, {}).status is Status.PASS
    failed = check_outcome(check, bad, {})
    assert failed.status is Status.FAIL
    assert "playbooks FAIL" in failed.reason


def test_a_gate_left_out_by_gates_leaves_its_checks_not_run() -> None:
    """A required gate left out by --gates gives its checks NOT_RUN with that reason."""
    results = unselected_results([], ["G1"])
    row = next(r for r in build_matrix(results, {}, None)["requirements"] if r["id"] == "G1")
    assert row["status"] == "NOT_RUN"
    assert all("left out by --gates" in check["reason"] for check in row["checks"])


def test_out_of_scope_shows_the_policys_reason() -> None:
    """A requirement the policy leaves out is OUT_OF_SCOPE with the policy's own reason, or a default one."""
    matrix = build_matrix([], {}, _policy(["R4"], {"S7": "no data at rest"}))
    rows = {row["id"]: row for row in matrix["requirements"]}
    assert rows["S7"]["status"] == OUT_OF_SCOPE
    assert rows["S7"]["reason"] == "policy scoped 1: no data at rest"
    assert "not among the requirements" in rows["G1"]["reason"]
    assert matrix["completeness"]["in_scope"] == 1


def test_unknown_requirement_in_a_policy_is_refused() -> None:
    """A policy naming a requirement id the catalogue does not define is a one-line policy error."""
    with pytest.raises(Exception, match="unknown requirement id"):
        _policy(["Z9"])


def test_r1_passes_only_when_every_other_in_scope_requirement_passes() -> None:
    """R1 is the matrix itself: PASS at 100 % of the other in-scope ids, FAIL naming those short of it."""
    identity = Verdict(
        status=Status.PASS,
        measurements=(Measurement(name="distinct declared versions", value=1, passed=True),),
    )
    results = [_result("ID", identity)]
    hashes = {"gates/ID/identity.json": "ef" * 32}
    full = build_matrix(results, hashes, _policy(["R1", "R4"]))
    assert full["completeness"] == {
        "passed": 2,
        "in_scope": 2,
        "percent": 100.0,
        "not_passed": [],
        "unevidenced": [],
    }
    short = build_matrix(results, hashes, _policy(["R1", "R4", "O7"]))
    r1 = next(row for row in short["requirements"] if row["id"] == "R1")
    assert r1["status"] == "FAIL"
    assert "O7" in r1["checks"][0]["reason"]
    assert short["completeness"]["unevidenced"] == ["O7"]


def test_release_certifies_only_at_full_traceability_under_a_listing_policy() -> None:
    """In release mode a matrix short of 100 % under a policy listing requirements blocks CERTIFIED (exit 3)."""
    results = [_result("ID", Verdict(status=Status.PASS))]
    short = {"percent": 50.0, "passed": 1, "in_scope": 2, "not_passed": ["S7"], "scope_listed": True}
    full = {**short, "percent": 100.0, "passed": 2, "not_passed": []}
    unlisted = {**short, "scope_listed": False}
    decision = overall(results, ["ID"], "release", True, traceability=short)
    assert (decision["certified"], decision["exit_code"]) == (False, 3)
    assert decision["traceability"] == short
    assert overall(results, ["ID"], "release", True, traceability=full)["certified"] is True
    assert overall(results, ["ID"], "release", True, traceability=unlisted)["certified"] is True
    assert overall(results, ["ID"], "ci", True, traceability=short)["exit_code"] == 0


def test_decision_facts_carry_the_completeness_figure() -> None:
    """The decision records percent, counts, the ids not PASS and whether the policy lists a scope."""
    facts = decision_facts(build_matrix([], {}, _policy(["R4"])))
    assert facts == {"percent": 0.0, "passed": 0, "in_scope": 1, "not_passed": ["R4"], "scope_listed": True}


def test_a_passing_g1_without_changed_line_coverage_evidences_g1() -> None:
    """A G1 PASS whose changed-line coverage was not computed (release mode, no diff base) still evidences G1."""
    names = [
        ("tests run (not skipped)", None),
        ("failing or erroring tests", True),
        ("overall line coverage", True),
        ("overall branch coverage", True),
        ("line coverage of guardian/store.py (critical)", True),
        ("branch coverage of guardian/store.py (critical)", True),
        ("changed-line coverage", None),
        ("share of test functions asserting nothing", True),
        ("mutation kill rate, Wilson 95 % lower bound (critical modules)", True),
    ]
    verdict = Verdict(
        status=Status.PASS, measurements=tuple(Measurement(name=n, value=1.0, passed=p) for n, p in names)
    )
    evidence = (
        "gates/G1/coverage.json",
        "gates/G1/pytest-junit.xml",
        "coverage_report.html",
        "gates/G1/test_asserts.json",
        "gates/G1/mutation.json",
    )
    hashes = dict.fromkeys(evidence, "ab" * 32)
    matrix = build_matrix([_result("G1", verdict)], hashes, None)
    row = next(r for r in matrix["requirements"] if r["id"] == "G1")
    assert row["status"] == "PASS", row


def test_a_g1_pass_without_test_strength_does_not_evidence_g1() -> None:
    """Test strength off ([gates.G1] test_strength = false): G1.strength, hence requirement G1, is not PASS."""
    verdict = Verdict(
        status=Status.PASS, measurements=(Measurement(name="overall line coverage", value=90.0, passed=True),)
    )
    matrix = build_matrix([_result("G1", verdict)], {"gates/G1/coverage.json": "ab" * 32}, None)
    row = next(r for r in matrix["requirements"] if r["id"] == "G1")
    strength = next(c for c in row["checks"] if c["id"] == "G1.strength")
    assert strength["status"] == "INCONCLUSIVE"
    assert row["status"] != "PASS"


def test_g5_findings_are_not_evidenced_when_a_scanner_could_not_run() -> None:
    """Zero high findings with pip-audit unable to run leaves requirement G5's check INCONCLUSIVE, not PASS."""
    check = next(c for gate in all_gates() for c in gate.spec.checks if c.id == "G5.findings")
    manifest = {"security_report.md": "ab" * 32, "security.sarif": "cd" * 32}
    findings = Measurement.judged("unwaived findings at or above high", 0, "<=", 0)
    scanners = {"SAST (bandit)": "PASS", "known vulnerabilities (pip-audit)": "INCONCLUSIVE"}
    offline = Verdict(status=Status.INCONCLUSIVE, measurements=(findings,), details={"scanners": scanners})
    assert check_outcome(check, offline, manifest).status is Status.INCONCLUSIVE
    audited = {**scanners, "known vulnerabilities (pip-audit)": "PASS"}
    online = Verdict(status=Status.PASS, measurements=(findings,), details={"scanners": audited})
    assert check_outcome(check, online, manifest).status is Status.PASS
