"""Not applicable, honestly: gate and requirement N/A declarations, the policy's terms, reports and matrix."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.config import parse_config
from harness.decide import overall
from harness.deviations import RunArgs, deviations
from harness.errors import ConfigError
from harness.model import GateResult, Status, Verdict, worst
from harness.policy import LoadedPolicy, PolicyError, parse_policy
from harness.policy_pack import not_applicable_requirements, not_applicable_results
from harness.render import render_junit
from harness.traceability import build_matrix, decision_facts
from tests.gates.test_playbooks import MINIMAL_API
from tests.harness.packs import certify_argv, certify_env, committed_copy

TODAY = dt.datetime.now(dt.UTC).date()
POLICY = """\
[policy]
name = "na"
version = "1"
required_gates = ["ID", "PB", "E2E"]
requirements = ["R4", "H1", "H3", "E1", "C4", "S5"]

[not_applicable.PB]
terms = "no self-healing playbooks; [gates.PB] not configured"
unconfigured = true
requirements = ["H3"]

[not_applicable.C4]
terms = "no GPU code path"
"""


def _policy(text: str = POLICY) -> LoadedPolicy:
    """The policy above (or another text), parsed."""
    return parse_policy(text.encode(), "na.toml")


def _config(not_applicable: dict[str, str], extra: dict[str, Any] | None = None) -> Any:
    """A minimal certify.toml (as data) declaring the given N/A entries."""
    data: dict[str, Any] = {
        "target": {"name": "svc", "packages": ["svc"]},
        "certificate": {"required_gates": ["ID", "PB", "E2E"], "not_applicable": not_applicable},
        **(extra or {}),
    }
    return parse_config(data, "certify.toml")


def _report(not_applicable: dict[str, str], extra: dict[str, Any] | None = None) -> Any:
    """The deviation report of that config under the policy above, ci mode."""
    return deviations(_policy(), _config(not_applicable, extra), RunArgs("ci", None, TODAY))


def test_allowed_gate_na_leaves_the_required_gates_and_raises_no_deviation() -> None:
    """PB declared N/A, unconfigured, under a policy that allows it: not required, listed with reason and terms."""
    report = _report({"PB": "no healer"})
    assert report.deviations == ()
    assert "PB" not in report.required_gates
    assert [(na.gate, na.reason) for na in report.not_applicable] == [
        ("PB", "no healer"),
        ("H3", "falls with PB: no healer"),
    ]


def test_na_of_a_configured_gate_is_a_blocking_deviation_naming_the_keys() -> None:
    """Terms with `unconfigured`: a target that configures [gates.PB] is not N/A, and the deviation names the key."""
    report = _report({"PB": "no healer"}, {"gates": {"PB": {"expected_count": 40, "api": MINIMAL_API}}})
    (deviation,) = [d for d in report.blocking if d.id == "not-applicable:PB"]
    assert "configures [gates.PB] (api, expected_count)" in deviation.what
    assert "PB" in report.required_gates


def test_na_the_policy_does_not_list_is_a_deviation_for_gates_and_requirements() -> None:
    """E2E (a gate) and C5 (a requirement) have no terms in the policy: each declaration blocks."""
    report = _report({"E2E": "no UI", "C5": "no rollback"})
    ids = {d.id: d for d in report.blocking}
    assert "not-applicable:E2E" in ids
    assert ids["not-applicable:C5"].requirements == ("C5",)
    assert ids["not-applicable:C5"].gate is None


def test_unknown_na_key_and_empty_reason_are_config_errors() -> None:
    """A key that is neither gate nor requirement, or a blank reason, is one clear config error."""
    with pytest.raises(ConfigError, match="G99 is neither a gate nor a catalogue requirement"):
        _config({"G99": "why"})
    with pytest.raises(ConfigError, match=r"not_applicable\.PB: give the reason"):
        _config({"PB": "  "})


def test_policy_unconfigured_terms_on_a_requirement_are_refused() -> None:
    """`unconfigured` belongs to gates: on a requirement's terms the policy file is rejected."""
    with pytest.raises(PolicyError, match="unconfigured and requirements apply to gates only"):
        _policy(POLICY.replace('terms = "no GPU code path"', 'terms = "no GPU"\nunconfigured = true'))


def test_na_results_matrix_and_decision() -> None:
    """An N/A gate gets an N/A result with both reasons; its requirements and a declared one are N/A, uncounted."""
    report = _report({"PB": "no healer", "C4": "no GPU"})
    identity = GateResult(
        gate="ID", title="ID", requirements=("R4",), required=True, verdict=Verdict.of(Status.PASS), duration_s=1.0
    )
    (pb,) = not_applicable_results([identity], report)
    assert pb.verdict.status is Status.NOT_APPLICABLE
    assert not pb.required
    assert "no healer" in pb.verdict.reasons[0]
    assert "no self-healing playbooks" in pb.verdict.reasons[0]
    matrix = build_matrix([identity, pb], {}, _policy(), not_applicable=not_applicable_requirements(report))
    rows = {row["id"]: row for row in matrix["requirements"]}
    assert rows["H1"]["status"] == "N/A"
    assert "no healer" in rows["H1"]["reason"]
    assert rows["C4"]["status"] == "N/A"
    assert "no GPU" in rows["C4"]["reason"]
    assert matrix["completeness"]["not_applicable"] == ["C4", "H1", "H3"]  # H3: the policy lets it fall with PB
    assert rows["S5"]["status"] == "NOT_RUN"  # PB's sandbox check evidences S5, but S5 is not one of PB's own
    assert "does not cover S5" in rows["S5"]["reason"]
    assert "H1" not in matrix["completeness"]["not_passed"]
    facts = decision_facts(matrix)
    decision = overall([identity, pb], report.required_gates, "ci", True, traceability=facts)
    assert decision["blocking"] == [
        {"gate": "E2E", "status": "NOT_RUN", "reasons": ["not run in this run"]},
    ]


def test_worst_ignores_na_beside_other_statuses() -> None:
    """N/A combined with PASS is PASS; alone it stays N/A; it never hides a FAIL."""
    assert worst([Status.PASS, Status.NOT_APPLICABLE]) is Status.PASS
    assert worst([Status.NOT_APPLICABLE]) is Status.NOT_APPLICABLE
    assert worst([Status.FAIL, Status.NOT_APPLICABLE]) is Status.FAIL


def test_junit_reports_an_na_gate_as_skipped_with_its_reason() -> None:
    """In junit.xml an N/A gate is a skipped testcase whose message is the N/A reason, never a failure."""
    result = not_applicable_results([], _report({"PB": "no healer"}))[0]
    results_doc = {"results": [result.model_dump(mode="json")], "overall": {}}
    run_doc = {"mode": "ci", "state": "COMPLETE", "target": {"name": "svc"}}
    suite = ET.fromstring(render_junit(results_doc, run_doc))  # noqa: S314 - our own output
    assert suite.get("failures") == "0"
    assert suite.get("skipped") == "1"
    skipped = suite.find("testcase/skipped")
    assert skipped is not None
    assert "no healer" in str(skipped.get("message"))


def test_na_declarations_are_judged_in_catalogue_order_whatever_the_file_order() -> None:
    """The deviations of a config and of its sorted resolved copy are equal, so `certify verify` recomputes them."""
    as_written = _report({"PB": "no healer", "C4": "no GPU", "E2E": "no UI"})
    sorted_copy = _report({"C4": "no GPU", "E2E": "no UI", "PB": "no healer"})
    assert as_written == sorted_copy
    assert [na.gate for na in as_written.not_applicable] == ["PB", "C4", "H3"]  # declared, then implied


RUN_POLICY = """\
[policy]
name = "na-run"
version = "1"
required_gates = ["ID", "PB", "E2E"]
requirements = ["R4", "H1", "E1", "S5"]

[not_applicable.PB]
terms = "no self-healing playbooks"
unconfigured = true

[not_applicable.E2E]
terms = "no browser UI"
unconfigured = true
"""


def test_a_run_shows_na_gates_on_every_report_and_verifies(tmp_path: Path) -> None:
    """`certify run` on tiny with PB and E2E N/A: N/A results, rows and junit skips; `certify verify` agrees."""
    target = committed_copy("tiny", tmp_path / "tiny")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8") + 'not_applicable.PB = "no healer"\nnot_applicable.E2E = "no UI"\n',
        encoding="utf-8",
    )
    subprocess.run(["git", "commit", "-qam", "N/A"], cwd=target, check=True, capture_output=True)
    policy = tmp_path / "policy.toml"
    policy.write_text(RUN_POLICY, encoding="utf-8")
    out = tmp_path / "pack"
    argv = certify_argv("run", "--target", str(target), "--mode", "ci", "--out", str(out), "--policy", str(policy))
    done = subprocess.run(argv, env=certify_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["gate"]: r for r in json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]}
    assert {g: (results[g]["verdict"]["status"], results[g]["required"]) for g in ("ID", "PB", "E2E")} == {
        "ID": ("PASS", True),
        "PB": ("N/A", False),
        "E2E": ("N/A", False),
    }
    rows = {r["id"]: r["status"] for r in json.loads((out / "traceability.json").read_text())["requirements"]}
    assert (rows["H1"], rows["E1"], rows["S5"]) == ("N/A", "N/A", "NOT_RUN")
    assert "PB is not applicable: no healer" in (out / "merge_gate_report.md").read_text(encoding="utf-8")
    assert (out / "junit.xml").read_text(encoding="utf-8").count("<skipped") == 2
    verify = subprocess.run(
        certify_argv("verify", str(out)), env=certify_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
