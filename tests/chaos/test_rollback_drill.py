"""C6 rollback drill: the pure judge on stored records, the config model, and G4 on the rollback-* fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chaos.rollback import dotted
from chaos.rollback_judge import judge_drill, render_drill
from chaos.rollback_spec import RollbackDrill
from tests.conftest import GitTarget, RunCertify

COMPLETED = {"completed": ["completed"], "failed": ["failed"], "completions_field": "completions"}


def probe(t_s: float, ok: bool = True) -> dict[str, Any]:
    """One stored probe sample started at t_s: healthy, or its submission refused with a 500."""
    task = f"p{t_s:g}" if ok else None
    done = round(t_s + 0.01, 4) if ok else None
    state = "completed" if ok else None
    return {"t_s": t_s, "ready": 200, "submit": 201 if ok else 500, "id": task, "state": state, "done_s": done}


def read(t_s: float, version: str, alert: float | None) -> dict[str, Any]:
    """One stored read of the version endpoint and the alert gauge."""
    return {"t_s": t_s, "version": version, "version_http": 200, "error": None, "alert": alert, "alert_lines": []}


def command(start: float, end: float, code: int = 0) -> dict[str, Any]:
    """A drill command's stored facts."""
    return {
        "argv": ["x"],
        "started_at_s": start,
        "ended_at_s": end,
        "returncode": code,
        "timed_out": False,
        "stdout": "o.txt",
        "stderr": "e.txt",
    }


def good_record() -> dict[str, Any]:
    """A drill that passes: canary at 1.0 s, failing probe at 1.2, alert at 1.5, rollback 1.6-1.8, 1.0 back."""
    samples = [probe(0.5), probe(1.0), probe(1.2, ok=False), probe(1.5), probe(1.7, ok=False)]
    samples += [probe(2.0 + 0.25 * n) for n in range(12)]
    reads = [read(1.25, "2.0", 0.0), read(1.5, "2.0", 1.0), read(2.0, "1.0", 0.0), read(2.5, "1.0", 0.0)]
    reads += [read(3.0 + 0.5 * n, "1.0", 0.0) for n in range(4)]
    ids = [s["id"] for s in samples if s["id"]]
    finals = {i: {"http": 200, "state": "completed", "completions": 1, "error": None, "read_at_s": 6.0} for i in ids}
    return {
        "settings": {"metrics": "/metrics", "stable_s": 1.0},
        "drill": {"automatic": False, "version_path": "/release", "alert_metric": "fixture_release_alert"},
        "tasks": COMPLETED,
        "steady_before": {"met": True, "samples": []},
        "version_before": {"version": "1.0"},
        "alert_before": {"alert": 0.0},
        "deploy": command(1.0, 1.1),
        "rollback": command(1.6, 1.8),
        "reads": reads,
        "work": [],
        "samples": samples,
        "steady_after": {"met": True, "samples": []},
        "outcome": "ran",
        "reconciliation": {"finals": finals, "metric": {"name": "", "submitted_name": ""}},
    }


def judged(record: dict[str, Any], budget_s: float = 120.0) -> dict[str, Any]:
    """The judge with a 1 s stable time and 2 s healthy latency."""
    return judge_drill(record, budget_s, healthy_latency_s=2.0, stable_s=1.0)


def test_a_detected_rolled_back_and_restored_canary_passes_with_its_times() -> None:
    """Harness detection 0.2 s, alert 0.5 s, old version back 1.0 s = restored, 17 accepted, none lost: PASS."""
    result = judged(good_record())
    assert result["status"] == "PASS", result["reasons"]
    assert (result["harness_detect_s"], result["alert_detect_s"], result["restored_s"]) == (0.2, 0.5, 1.0)
    assert (result["accepted"], result["lost"], result["duplicated"]) == (15, 0, 0)
    assert "restored 1 s after the deploy (budget 120 s)" in result["reasons"][0]
    assert render_drill(result).startswith("# C6 bad-deploy rollback drill: PASS")


def test_a_rollback_that_leaves_the_canary_running_fails_naming_the_version() -> None:
    """The rollback exits 0 but every later read names 2.0: FAIL with the version it still served."""
    record = good_record()
    record["reads"] = [{**r, "version": "2.0", "alert": 1.0} for r in record["reads"]]
    result = judged(record)
    assert result["status"] == "FAIL"
    assert "rollback command exited 0 but it did not restore 1.0: GET /release still named 2.0" in result["reasons"][0]


def test_an_alert_that_never_fires_fails_even_though_the_harness_saw_the_canary() -> None:
    """No read shows the gauge above 0 and no rollback ran: FAIL naming the alert and the harness's detection."""
    record = good_record()
    record["rollback"] = None
    record["reads"] = [{**r, "version": "2.0", "alert": 0.0} for r in record["reads"]]
    reasons = " ".join(judged(record)["reasons"])
    assert "alert fixture_release_alert never fired within 120 s" in reasons
    assert "failing after 0.2 s" in reasons


def test_automatic_rollback_passes_without_a_command_and_fails_when_it_never_comes() -> None:
    """automatic = true: the version coming back by itself passes; staying on the canary fails."""
    record = good_record()
    record["drill"]["automatic"] = True
    record["rollback"] = None
    assert judged(record)["status"] == "PASS"
    stuck = copy.deepcopy(record)
    stuck["reads"] = [{**r, "version": "2.0"} for r in stuck["reads"]]
    assert "automatic rollback did not restore 1.0" in judged(stuck)["reasons"][0]


def test_over_budget_lost_work_and_a_failed_deploy_fail() -> None:
    """A restore later than the budget, an accepted task read back as 404, a deploy exiting 3: each a FAIL."""
    assert "> budget 0.5 s" in " ".join(judged(good_record(), budget_s=0.5)["reasons"])
    record = good_record()
    first = next(iter(record["reconciliation"]["finals"]))
    record["reconciliation"]["finals"][first] = {"http": 404, "state": None, "completions": None}
    assert "1 accepted unit(s) of work lost" in " ".join(judged(record)["reasons"])
    record = good_record()
    record["deploy"]["returncode"] = 3
    assert judged(record)["reasons"] == ["rollback drill: the deploy command exited 3 (output in e.txt)"]


def test_a_canary_that_never_fails_is_inconclusive_and_no_record_is_not_run() -> None:
    """A canary that never fails a probe is INCONCLUSIVE (FAIL if work was lost); no record at all: NOT_RUN."""
    record = good_record()
    record["samples"] = [probe(0.5 + 0.25 * n) for n in range(20)]
    done = {"http": 200, "state": "completed", "completions": 1}
    record["reconciliation"]["finals"] = {s["id"]: done for s in record["samples"]}
    assert judged(record)["status"] == "INCONCLUSIVE"
    first = next(iter(record["reconciliation"]["finals"]))
    record["reconciliation"]["finals"][first] = {"http": 404, "state": None, "completions": None}
    assert judged(record)["status"] == "FAIL"  # lost work counts even when the drill shows nothing else
    assert judge_drill(None, 120.0, healthy_latency_s=2.0, stable_s=1.0)["status"] == "NOT_RUN"


def test_config_model_refuses_a_missing_rollback_and_an_unknown_placeholder() -> None:
    """No rollback command without automatic, and {host} in a command, are refused with the key named."""
    base = {"deploy": ["d"], "version_path": "/v", "alert_metric": "a"}
    with pytest.raises(ValidationError, match="a command is required unless automatic"):
        RollbackDrill.model_validate(base)
    with pytest.raises(ValidationError, match=r"deploy: unknown placeholder \{host\}"):
        RollbackDrill.model_validate({**base, "deploy": ["{host}"], "automatic": True})
    assert dotted({"a": {"b": "1.0"}}, "a.b") == "1.0"
    assert dotted({"a": 1}, "a.b") is None


def run_g4(run_certify: RunCertify, target: Path, out: Path, *, verify: bool = True) -> dict[str, Any]:
    """G4 in ci mode without a traceback (and recomputed by `certify verify`); its verdict."""
    proc = run_certify("run", "--target", target, "--gates", "G4", "--mode", "ci", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not verify or run_certify("verify", out).returncode == 0
    verdict: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"][0]["verdict"]
    return verdict


@pytest.mark.integration
def test_rollback_that_does_not_restore_the_old_version_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """rollback-sticky: detected and rolled back, but 2.0-canary stays current: G4 FAILs naming it."""
    out = tmp_path / "pack"
    verdict = run_g4(run_certify, git_target("rollback-sticky"), out)
    assert verdict["status"] == "FAIL", verdict["reasons"]
    assert "did not restore 1.0: GET /release still named 2.0-canary" in verdict["reasons"][0]
    assert verdict["details"]["rollback"]["alert_detect_s"] is not None
    assert (out / "gates" / "G4" / "instances" / "C6-rollback-drill" / "drill-rollback.stdout.txt").is_file()


@pytest.mark.integration
def test_bad_canary_the_target_never_alerts_on_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """rollback-blind: the harness sees the canary fail, the target's alert never fires: G4 FAILs naming it."""
    verdict = run_g4(run_certify, git_target("rollback-blind"), tmp_path / "pack", verify=False)
    assert verdict["status"] == "FAIL", verdict["reasons"]
    assert "alert fixture_release_alert never fired within 3 s of the deploy" in verdict["reasons"][0]
    assert verdict["details"]["rollback"]["harness_detect_s"] is not None
