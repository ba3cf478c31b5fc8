"""Gates a policy requires in release mode only (`release_gates`, the soak): planned, required, blocking there only."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from gates.soak import JudgedSoakPolicy, SoakGate
from harness.config import CertifyConfigBase, parse_config
from harness.decide import overall
from harness.deviations import RunArgs, deviations
from harness.model import GateResult, Status, Verdict
from harness.plan import make_plan
from harness.policy import LoadedPolicy, describe, load_policy
from harness.policy_pack import judge
from harness.render_policy import policy_context
from tests.conftest import GitTarget, RunCertify
from tests.harness.test_soak import PB, write_pack

POLICY_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "release-soak.toml"
TODAY = dt.datetime.now(dt.UTC).date()
NOTE = "SOAK is required in release mode only (policy release_gates)"


def _policy() -> LoadedPolicy:
    """The test policy requiring SOAK in release mode only."""
    return load_policy(POLICY_FILE)


def _config(not_applicable: dict[str, str] | None = None) -> CertifyConfigBase:
    """A minimal certify.toml (as data) requiring ID, optionally declaring gates not applicable."""
    certificate: dict[str, Any] = {"required_gates": ["ID"], "not_applicable": not_applicable or {}}
    return parse_config({"target": {"name": "svc", "packages": ["svc"]}, "certificate": certificate}, "certify.toml")


def _result(gate: str, verdict: Verdict) -> GateResult:
    """A required gate's result with the given verdict."""
    return GateResult(gate=gate, title=gate, requirements=(), required=True, verdict=verdict, duration_s=1.0)


def test_a_release_plan_includes_the_release_only_gate_as_required() -> None:
    """In release mode the policy's release-only SOAK is a required gate of the plan, no note says it is left out."""
    report, config = judge(_policy(), _config(), RunArgs("release", None, TODAY))
    assert report.required_gates == ("ID", "SOAK")
    assert report.release_only == ()
    plan = make_plan(config, config.certificate.required_gates, "release", 1)
    soak = next(entry for entry in plan.entries if entry.gate_id == "SOAK")
    assert soak.required is True
    assert not any(NOTE in line for line in report.lines())


def test_a_ci_plan_leaves_the_release_only_gate_out_and_says_so() -> None:
    """In ci mode SOAK is neither required nor planned; the report, deviations.json and the merge report say so."""
    report, config = judge(_policy(), _config(), RunArgs("ci", None, TODAY))
    assert report.required_gates == ("ID",)
    assert report.release_only == ("SOAK",)
    plan = make_plan(config, config.certificate.required_gates, "ci", 1)
    assert [entry.gate_id for entry in plan.entries] == ["ID"]
    assert any(NOTE in line and "evidences nothing of H15" in line for line in report.lines())
    stored = json.loads(json.dumps(report.model_dump(mode="json")))
    assert stored["release_only"] == ["SOAK"]
    notes = policy_context({"policy": report.policy}, stored)["policy_notes"]
    assert any(NOTE in note for note in notes)


def test_a_policy_without_release_gates_writes_deviations_json_as_before() -> None:
    """Without release-only gates deviations.json has no release_only key, so older packs recompute byte for byte."""
    plain = _policy().policy.model_copy(
        update={"policy": _policy().policy.policy.model_copy(update={"release_gates": ()})}
    )
    loaded = LoadedPolicy(policy=plain, raw=b"", sha256="0" * 64, source="test")
    dumped = deviations(loaded, _config(), RunArgs("ci", None, TODAY)).model_dump(mode="json")
    assert "release_only" not in dumped


def test_policy_show_names_the_release_only_gates() -> None:
    """`certify policy show` lists the gates required in release mode only."""
    assert "  required in release mode only: SOAK" in describe(_policy())


def test_a_release_gates_subset_leaving_out_the_soak_is_a_deviation() -> None:
    """A release run whose --gates leaves out the release-only SOAK deviates (blocking), as for any required gate."""
    report = deviations(_policy(), _config(), RunArgs("release", ("ID",), TODAY))
    assert "gates-subset:SOAK" in [d.id for d in report.blocking]


def test_no_soak_is_demanded_where_its_requirement_falls_with_pb() -> None:
    """A target allowed to declare PB not applicable (H15 falls with it) is not required to soak in release mode."""
    report = deviations(_policy(), _config({"PB": "no playbooks"}), RunArgs("release", None, TODAY))
    assert report.blocking == ()
    assert "SOAK" not in report.required_gates
    assert "PB" not in report.required_gates


def _soak_verdict(tmp_path: Path, full: bool) -> Verdict:
    """SOAK's verdict on generated evidence of a clean 0.5 h release soak: the soak (policy of 0.5 h) or abbreviated."""
    hours = {"hours": 0.5, "loop_hours": 0.5} if full else {}
    policy = JudgedSoakPolicy.model_validate({"p4_p99_ms": 100.0, "pb": PB, **hours})
    return SoakGate().evaluate(write_pack(tmp_path, hours=0.5, mode="release"), policy)


@pytest.mark.parametrize(
    ("soak", "certified", "soak_status"),
    [
        ("absent", False, "NOT_RUN"),
        ("not_run", False, "NOT_RUN"),
        ("abbreviated", False, "INCONCLUSIVE"),
        ("full", True, None),
    ],
)
def test_a_release_run_is_certified_only_with_a_soak_pass(
    tmp_path: Path, soak: str, certified: bool, soak_status: str | None
) -> None:
    """With SOAK release-only required, a release run whose soak is absent, NOT_RUN or abbreviated is not CERTIFIED."""
    report, config = judge(_policy(), _config(), RunArgs("release", None, TODAY))
    results = [_result("ID", Verdict.of(Status.PASS, "identified"))]
    if soak == "not_run":
        results.append(_result("SOAK", Verdict.of(Status.NOT_RUN, "no tier-1 playbook listed and declared in PB")))
    elif soak != "absent":
        verdict = _soak_verdict(tmp_path, full=soak == "full")
        assert verdict.status is (Status.PASS if soak == "full" else Status.INCONCLUSIVE)
        results.append(_result("SOAK", verdict))
    decision = overall(results, config.certificate.required_gates, "release", complete=True)
    assert decision["certified"] is certified
    blocking = {entry["gate"]: entry["status"] for entry in decision["blocking"]}
    assert blocking == ({} if soak_status is None else {"SOAK": soak_status})
    if soak != "absent":  # the runner always records a result for a planned gate; its status sets the exit code
        assert decision["exit_code"] == (0 if certified else 3)
    assert report.blocking == ()


def test_the_same_results_in_ci_mode_do_not_need_the_soak() -> None:
    """In ci mode the release-only SOAK is not required: ID alone PASSing opens the merge gate."""
    _report, config = judge(_policy(), _config(), RunArgs("ci", None, TODAY))
    results = [_result("ID", Verdict.of(Status.PASS, "identified"))]
    decision = overall(results, config.certificate.required_gates, "ci", complete=True)
    assert decision["exit_code"] == 0
    assert decision["blocking"] == []


@pytest.mark.integration
def test_certify_run_plan_shows_the_soak_in_release_mode_only(git_target: GitTarget, run_certify: RunCertify) -> None:
    """`certify run --plan` lists SOAK (required) in release mode; in ci mode it names SOAK as left to release mode."""
    target = git_target("tiny")
    release = run_certify("run", "--plan", "--mode", "release", "--target", target, "--policy", POLICY_FILE)
    ci = run_certify("run", "--plan", "--mode", "ci", "--target", target, "--policy", POLICY_FILE)
    assert release.returncode == ci.returncode == 0, release.stderr + ci.stderr
    assert "Traceback" not in release.stderr + ci.stderr
    assert "  SOAK Soak: P4 load and the self-healing loop" in release.stdout
    assert NOTE not in release.stdout
    assert "  SOAK Soak:" not in ci.stdout
    assert NOTE in ci.stdout
