"""Tests for PB's H3 (top failure modes traced to verified playbooks) and H4 (rollbacks documented and run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gates.playbooks.canaries import judge_canaries
from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.failure_modes import judge_failure_modes
from gates.playbooks.rollback_docs import collect_rollback_docs, judge_rollback_docs
from tests.conftest import GitTarget, RunCertify
from tests.gates.test_playbooks import CANARY_METRICS, pb_policy, run_pb

PASSED = {"detected": "PASS", "right_playbook": "PASS", "recovered": "PASS", "rollback": "PASS"}


def _policy(count: int = 10, playbook: str = "flag", **extra: Any) -> PlaybookPolicy:
    """A policy declaring `count` failure modes, all handled by `playbook`."""
    modes = [{"id": f"mode-{n}", "title": f"failure {n}", "playbook": playbook} for n in range(count)]
    playbooks = {"flag": {"probes": ["p"], "rollback_steps": ["moves fault.flag back"]}, "cfg": {"probes": ["p"]}}
    return pb_policy({"failure_modes": modes, "playbooks": playbooks, **extra})


def _row(playbook: str = "flag", verdict: str = "PASS", **checks: str) -> dict[str, Any]:
    """A judged playbook row as PlaybookGate.summarize builds it."""
    return {"id": playbook, "verdict": verdict, "checks": {**PASSED, **checks}}


def test_ten_modes_handled_by_verified_playbooks_pass() -> None:
    """Ten failure modes whose playbook PASSed, verify hook and harness probe agreeing: every check PASS."""
    judged = judge_failure_modes(_policy(), [_row()])
    assert set(judged["checks"].values()) == {"PASS"}
    assert len(judged["modes"]) == 10
    assert judged["reasons"] == []


def test_fewer_than_ten_declared_fails_with_the_count() -> None:
    """Nine failure modes: the count check FAILs and says 9 of 10."""
    judged = judge_failure_modes(_policy(count=9), [_row()])
    assert judged["checks"]["declared"] == "FAIL"
    assert "declares 9 distinct failure mode(s), fewer than the 10 required" in judged["reasons"][0]


def test_mode_naming_a_playbook_the_target_does_not_list_fails() -> None:
    """A failure mode whose playbook does not exist FAILs, naming the mode and the playbook."""
    judged = judge_failure_modes(_policy(playbook="restart"), [_row()])
    assert judged["checks"]["mode mode-0"] == "FAIL"
    assert "playbook 'restart' does not exist" in judged["reasons"][0]


def test_mode_whose_playbook_the_harness_probe_did_not_confirm_fails() -> None:
    """The target's verify said healed but the harness's probes never saw health back: the mode FAILs."""
    judged = judge_failure_modes(_policy(), [_row(verdict="FAIL", recovered="FAIL")])
    assert judged["checks"]["mode mode-0"] == "FAIL"
    assert "harness probe FAIL" in judged["reasons"][0]


def _docs(tmp_path: Path, flag: str, policy: PlaybookPolicy) -> dict[str, Any]:
    """Write docs/playbooks/flag.md with `flag` as its text and collect the rollback sections."""
    (tmp_path / "docs" / "playbooks").mkdir(parents=True)
    (tmp_path / "docs" / "playbooks" / "flag.md").write_text(flag, encoding="utf-8")
    (tmp_path / "docs" / "playbooks" / "cfg.md").write_text("# cfg\n\n## Rollback\n\nNothing to undo.\n")
    return collect_rollback_docs(policy, tmp_path)


def test_rollback_section_naming_the_declared_steps_passes(tmp_path: Path) -> None:
    """Steps named (backticks, case ignored) and the rollback ran: PASS; a rollback declared none needs the section."""
    policy = _policy(
        rollback_docs={},
        playbooks={
            "flag": {"probes": ["p"], "rollback_steps": ["Moves fault.flag back"]},
            "cfg": {"probes": ["p"], "rollback": "none"},
        },
    )
    docs = _docs(tmp_path, "# flag\n\n## Rollback\n\nThe healer moves `fault.flag`  back.\n\n## Verify\n\nx\n", policy)
    judged = judge_rollback_docs(policy, [_row(), _row("cfg", rollback="n/a")], docs)
    assert judged is not None
    assert judged["checks"] == {"cfg": "PASS", "flag": "PASS"}, judged["reasons"]


def test_runbook_without_a_rollback_section_fails_naming_playbook_and_file(tmp_path: Path) -> None:
    """A runbook lacking its Rollback heading FAILs with the playbook and the runbook's path."""
    policy = _policy(rollback_docs={})
    docs = _docs(tmp_path, "# flag\n\n## Remediation\n\nMoves fault.flag back.\n", policy)
    judged = judge_rollback_docs(policy, [_row(), _row("cfg")], docs)
    assert judged is not None
    assert judged["checks"]["flag"] == "FAIL"
    assert "flag: runbook docs/playbooks/flag.md has no 'Rollback' section" in judged["reasons"]


def test_section_missing_a_step_or_a_rollback_not_run_is_not_pass(tmp_path: Path) -> None:
    """A step absent from the section FAILs; documented but never rolled back in the gate is NOT_RUN."""
    policy = _policy(rollback_docs={})
    docs = _docs(tmp_path, "# flag\n\n## Rollback\n\nDeletes the flag.\n", policy)
    judged = judge_rollback_docs(policy, [_row(), _row("cfg", rollback="NOT_RUN")], docs)
    assert judged is not None
    assert judged["checks"]["flag"] == "FAIL"
    assert any("does not name the rollback step(s) 'moves fault.flag back'" in r for r in judged["reasons"])
    assert judged["checks"]["cfg"] == "FAIL"  # exact rollback with no declared steps: nothing to cross-check
    ran_only = judge_rollback_docs(policy, [_row(rollback="NOT_RUN")], collect_rollback_docs(policy, tmp_path))
    assert ran_only is not None
    assert ran_only["checks"]["flag"] == "FAIL"  # the step is still missing: documentation failure first


@pytest.mark.integration
def test_untraced_fixture_fails_h3_h4_and_h7(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """pb-untraced: 3 of 10 failure modes, one missing playbook, a runbook without Rollback, no canary metrics: FAIL."""
    out = tmp_path / "pack"
    verdict = run_pb(run_certify, git_target("pb-untraced"), out)
    assert verdict["status"] == "FAIL"
    assert verdict["details"]["playbooks"] == {"flag": "PASS", "config": "PASS"}
    modes = verdict["details"]["failure_modes"]
    assert modes == {
        "declared": "FAIL",
        "mode flag-appears": "PASS",
        "mode bad-config": "PASS",
        "mode healer-gone": "FAIL",
    }
    assert verdict["details"]["rollback_docs"] == {"config": "PASS", "flag": "FAIL"}
    assert "flag: runbook docs/playbooks/flag.md has no 'Rollback' section" in verdict["reasons"]
    matrix = json.loads((out / "traceability.json").read_text(encoding="utf-8"))
    checks = {
        c["id"]: c["status"] for row in matrix["requirements"] if row["id"] in ("H3", "H4", "H7") for c in row["checks"]
    }
    assert checks == {"PB.failure-modes": "FAIL", "PB.rollback-docs": "FAIL", "PB.canaries": "FAIL"}
    canaries = verdict["details"]["canaries"]
    assert canaries == {
        "L4 metrics": "FAIL",
        "L4 live": "FAIL",
        "L7 metrics": "FAIL",
        "L4 fault": "NOT_RUN",
        "L7 live": "FAIL",
        "L7 fault": "FAIL",
    }
    assert "canary L7: did not read 0 within 2 s of the fault (a fault flag)" in verdict["reasons"]
    report = (out / "playbooks_report.md").read_text(encoding="utf-8")
    assert "| 3 | healer-gone: the healer process died | restart | - | - | **FAIL** |" in report


def _scrape(at: float, **layers: tuple[float, float]) -> dict[str, Any]:
    """One stored canary scrape: layer -> (up, last check time)."""
    return {"at": at, "layers": {k: {"up": up, "last": last} for k, (up, last) in layers.items()}, "error": None}


def _canary_policy() -> PlaybookPolicy:
    """Canaries at L2 and L4 every 5 s (8 s budget), one fault at L4, L2 unobservable."""
    canaries = {
        "layers": ["L2", "L4"],
        "faults": [{"layer": "L4", "stop_dependency": "up"}],
        "unobservable": {"L2": "root"},
        **CANARY_METRICS,
    }
    return pb_policy({"canaries": canaries})


def _canary_record(l2_last: float, moved_at: float) -> dict[str, Any]:
    """A live window (L2's last check fixed at l2_last when frozen) and an L4 fault at t=100 seen at moved_at."""
    live = [_scrape(t, L2=(1.0, l2_last if l2_last else t), L4=(1.0, t)) for t in (0.0, 5.0, 10.0)]
    after = [_scrape(101.0, L4=(1.0, 99.0)), _scrape(moved_at, L4=(0.0, moved_at - 0.2))]
    return {
        "live": live,
        "faults": [{"layer": "L4", "title": "port closed", "fault_at": 100.0, "caused": {}, "after": after}],
    }


def test_live_canaries_moved_by_their_fault_pass_and_unfaulted_layers_are_not_pass() -> None:
    """Metrics present and changing, L4 read 0 3 s after the fault: PASS; L2 is listed unobservable, with no status."""
    judged = judge_canaries(_canary_policy(), _canary_record(0.0, 103.0))
    assert judged is not None
    assert set(judged["checks"].values()) == {"PASS"}
    assert judged["faults"][0]["reaction_s"] == 3.0
    assert judged["unobservable"] == {"L2": "root"}
    assert "L2 fault" not in judged["checks"]


def test_frozen_canary_or_a_late_reaction_fails() -> None:
    """A last-check value that never changes is not live; moving 9 s after the fault exceeds the 8 s budget."""
    judged = judge_canaries(_canary_policy(), _canary_record(4.0, 109.0))
    assert judged is not None
    assert judged["checks"]["L2 live"] == "FAIL"
    assert judged["checks"]["L4 fault"] == "FAIL"
    assert "canary L4: moved 9.0 s after the fault, > 8 s" in judged["reasons"]


def test_a_fault_reported_with_the_other_layers_it_took_down() -> None:
    """The layers reading 0 in the scrape where the faulted layer moved are listed with it (L5 took L6 down)."""
    policy = pb_policy(
        {
            "canaries": {
                "layers": ["L4", "L5", "L6"],
                "faults": [{"layer": "L5", "toxic": "limit_data"}],
                **CANARY_METRICS,
            }
        }
    )
    live = [_scrape(t, L4=(1.0, t), L5=(1.0, t), L6=(1.0, t)) for t in (0.0, 5.0)]
    moved = _scrape(102.0, L4=(1.0, 101.5), L5=(0.0, 101.5), L6=(0.0, 101.6))
    record = {
        "live": live,
        "faults": [{"layer": "L5", "title": "cut", "fault_at": 100.0, "caused": {}, "after": [moved]}],
    }
    judged = judge_canaries(policy, record)
    assert judged is not None
    assert judged["faults"][0]["also_down"] == ["L6"]
    assert judged["checks"]["L5 fault"] == "PASS"


def test_a_toxic_fault_without_a_front_proxy_is_recorded_as_not_caused() -> None:
    """A toxic declared while no front_env routes the canaries via the proxy: the fault is not caused, saying why."""
    from gates.playbooks.canaries import _cause  # noqa: PLC0415 - the collect-side helper under test

    policy = pb_policy({"canaries": {"faults": [{"layer": "L5", "toxic": "limit_data"}], **CANARY_METRICS}})
    assert policy.canaries is not None
    caused = _cause(policy, None, policy.canaries.faults[0], None)  # type: ignore[arg-type]
    assert "front_env" in caused["error"]


def test_a_layer_that_must_react_without_a_fault_is_not_run() -> None:
    """L4 must react (the default L4-L7) but no fault is declared for it: "L4 fault" is NOT_RUN with the reason."""
    policy = pb_policy(
        {
            "canaries": {
                "layers": ["L2", "L4"],
                "faults": [],
                "unobservable": {"L2": "root", "L4": "none here"},
                **CANARY_METRICS,
            }
        }
    )
    judged = judge_canaries(policy, _canary_record(0.0, 103.0) | {"faults": []})
    assert judged is not None
    assert judged["checks"]["L4 fault"] == "NOT_RUN"
    assert "L2 fault" not in judged["checks"]  # left out of must_react: reported, no status
    assert "canary L4: no fault caused at this layer, so its reaction is not shown (none here)" in judged["reasons"]
