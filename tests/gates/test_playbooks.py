"""Tests for gate PB (gates/playbooks/): real CLI runs on the pb-* fixture targets, each breaking one promise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GitTarget, RunCertify


def run_pb(run_certify: RunCertify, target: Path, out: Path) -> dict[str, Any]:
    """Run gate PB alone in ci mode; assert no traceback and that `certify verify` accepts the pack."""
    proc = run_certify("run", "--target", target, "--gates", "PB", "--mode", "ci", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (result,) = [item for item in results["results"] if item["gate"] == "PB"]
    verdict: dict[str, Any] = result["verdict"]
    verdict["exit_code"] = proc.returncode
    return verdict


@pytest.mark.integration
def test_honest_fixture_passes_and_writes_the_documents(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """pb-ok PASSes: both playbooks detected, healed, dry-run clean, rolled back, governed, watchdog and params seen."""
    out = tmp_path / "pack"
    verdict = run_pb(run_certify, git_target("pb-ok"), out)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["exit_code"] == 0
    assert verdict["details"]["playbooks"] == {"flag": "PASS", "config": "PASS"}
    report = json.loads((out / "playbooks_report.json").read_text(encoding="utf-8"))
    (config,) = [row for row in report["playbooks"] if row["id"] == "config"]
    assert config["checks"]["needs_approval"] == "PASS"
    assert config["checks"]["outside_window"] == "PASS"
    assert report["governance"]["checks"]["watchdog"] == "PASS"
    assert "MTTR < 2 min" in report["mttr_claim"]
    assert (out / "playbooks_mttr.svg").read_text(encoding="utf-8").startswith("<svg")
    assert "| flag | 1 |" in (out / "playbooks_report.md").read_text(encoding="utf-8")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("fixture", "playbook", "reason"),
    [
        ("pb-liar", "flag", "flag: the harness's probes did not see health back"),
        ("pb-dirty-dry-run", "flag", "flag: dry-run changed state: dry-run-was-here.txt added"),
        ("pb-sticky-rollback", "flag", "rollback-leftover.txt added"),
        ("pb-no-approval", "config", "config: tier 3 fault was healed needs approval"),
    ],
)
def test_broken_playbooks_fail(  # noqa: PLR0917 - pytest fixtures plus the parametrized case
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, fixture: str, playbook: str, reason: str
) -> None:
    """A verify that lies, a dry-run that writes, a rollback that leaves a file, a tier 3 run unapproved: FAIL."""
    verdict = run_pb(run_certify, git_target(fixture), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert verdict["exit_code"] == 1
    assert verdict["details"]["playbooks"][playbook] == "FAIL"
    assert any(reason in line for line in verdict["reasons"]), verdict["reasons"]


@pytest.mark.integration
def test_registry_listing_one_fewer_than_declared_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """pb-short declares 2 playbooks and lists 1: FAIL naming the count and the missing playbook."""
    verdict = run_pb(run_certify, git_target("pb-short"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert "the target lists 1 of 2 playbooks (requirement H1)" in verdict["reasons"]
    assert "declared in certify.toml but not listed by the target: config" in verdict["reasons"]
    (listed,) = [m for m in verdict["measurements"] if m["name"] == "playbooks listed"]
    assert listed["value"] == 1
    assert listed["passed"] is False


@pytest.mark.integration
def test_target_without_service_is_not_run(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A target with no [service] table cannot have its playbooks exercised: NOT_RUN with the reason."""
    verdict = run_pb(run_certify, git_target("tiny"), tmp_path / "pack")
    assert verdict["status"] == "NOT_RUN"
    assert any("[service]" in line for line in verdict["reasons"]), verdict["reasons"]


def _run_record(baseline_flag: bool, observed_flag: bool) -> dict[str, Any]:
    """A stored run of playbook `flag` whose probe saw the flag file as given, healed at once."""

    def sample(t: float, flag: bool) -> dict[str, Any]:
        return {"t": t, "obs": {"no-flag": {"matches": int(flag)}, "ready": {"status": 200, "value": None}}}

    return {
        "playbook": "flag",
        "tier": 1,
        "rep": 1,
        "held": False,
        "baseline": sample(0.0, baseline_flag),
        "observed": [sample(0.1, observed_flag)],
        "samples": [sample(t / 4, False) for t in range(1, 10)],
        "incidents": [{"id": 2, "playbook_id": "flag", "status": "healed"}],
        "ledger": {"attempts": [{"id": "a", "status": 201}], "finals": {"a": {"state": "completed"}}},
    }


def _policy() -> Any:
    """A policy declaring the flag playbook with a file probe and a readiness probe."""
    from gates.playbooks.config import PlaybookPolicy  # noqa: PLC0415 - keep the module import cheap

    return PlaybookPolicy.model_validate(
        {
            "probes": {
                "no-flag": {"kind": "file", "path": "fault.flag", "absent": True},
                "ready": {"kind": "http", "path": "/readyz"},
            },
            "health": ["ready"],
            "api": {"audit_verify": None},
            "playbooks": {"flag": {"probes": ["no-flag"], "rollback": "none"}},
        }
    )


def test_fault_the_probes_cannot_see_is_inconclusive() -> None:
    """A fault the harness's probes never saw earns no credit for healing: the playbook is INCONCLUSIVE."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    row = judge_playbook([judge_run(_policy(), _run_record(baseline_flag=False, observed_flag=False))])
    assert row["verdict"] == "INCONCLUSIVE"
    assert row["checks"]["detected"] == "INCONCLUSIVE"
    assert any("did not see the injected fault" in reason for reason in row["reasons"])


def test_probe_unhealthy_before_injection_is_inconclusive() -> None:
    """Probes already unhealthy before the injection cannot tell the fault apart: INCONCLUSIVE, not PASS."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    row = judge_playbook([judge_run(_policy(), _run_record(baseline_flag=True, observed_flag=True))])
    assert row["verdict"] == "INCONCLUSIVE"
    assert any("unhealthy before injection" in reason for reason in row["reasons"])


def test_fault_cleared_by_something_else_is_inconclusive_not_pass() -> None:
    """Health already back after the hold with no incident of any playbook: INCONCLUSIVE, never credited."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    record = {**_run_record(baseline_flag=False, observed_flag=True), "incidents": []}
    row = judge_playbook([judge_run(_policy(), record)])
    assert row["verdict"] != "PASS"
    assert row["checks"]["right_playbook"] == "INCONCLUSIVE"
    assert any("something else cleared it" in reason for reason in row["reasons"])


def test_fault_still_present_and_no_incident_fails() -> None:
    """No incident and the fault still there after the hold: the playbook did not heal, FAIL."""
    from gates.playbooks.judge import judge_playbook, judge_run  # noqa: PLC0415

    record = {**_run_record(baseline_flag=False, observed_flag=True), "incidents": []}
    flagged = {"t": 0.25, "obs": {"no-flag": {"matches": 1}, "ready": {"status": 200, "value": None}}}
    record["samples"] = [flagged, *record["samples"]]
    row = judge_playbook([judge_run(_policy(), record)])
    assert row["verdict"] == "FAIL"
    assert any("no incident of flag reached" in reason for reason in row["reasons"])
