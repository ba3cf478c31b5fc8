"""Tests for gate G7 (gates/bootstrap.py): CLI runs on the boot-* fixtures, and evaluate on hand-written evidence."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from gates.bootstrap import BootstrapGate, BootstrapPolicy, Sandbox, kill_leftovers, parse_steps
from harness.gate import Evidence
from harness.model import Status
from tests.conftest import GitTarget, RunCertify, commit_all, git


def run_g7(run_certify: RunCertify, target: Path, out: Path, *extra: str) -> dict[str, Any]:
    """Run gate G7 alone on target; assert no traceback and that `certify verify` accepts the pack."""
    proc = run_certify("run", "--target", target, "--gates", "G7", "--out", out, *extra)
    assert "Traceback" not in proc.stdout + proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (result,) = [item for item in results["results"] if item["gate"] == "G7"]
    verdict: dict[str, Any] = result["verdict"]
    verdict["exit_code"] = proc.returncode
    return verdict


def measurement(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    """The named measurement of a verdict."""
    (found,) = [m for m in verdict["measurements"] if m["name"] == name]
    return found


@pytest.mark.integration
def test_working_bootstrap_passes_with_step_times(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """boot-ok PASSes in release mode: cold cache, every marked step timed, and the smoke command passed."""
    verdict = run_g7(run_certify, git_target("boot-ok"), tmp_path / "pack")
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["exit_code"] == 0
    assert [step["name"] for step in verdict["details"]["steps"]] == [
        "venv",
        "start service",
        "wait for readiness",
        "stop service",
    ]
    assert verdict["details"]["cache"].startswith("cold: PIP_NO_CACHE_DIR=1")
    total = measurement(verdict, "bootstrap total")
    assert total["passed"] is True
    assert total["threshold"] == 60.0
    assert "smoke command `.venv/bin/python scripts/serve_check.py` passed" in verdict["reasons"][1]
    evidence = json.loads((tmp_path / "pack" / "gates" / "G7" / "bootstrap.json").read_text(encoding="utf-8"))
    assert evidence["copy"]["files"] == 5
    assert evidence["environment"]["names"] == [
        "HOME",
        "LANG",
        "PATH",
        "PIP_DISABLE_PIP_VERSION_CHECK",
        "PIP_NO_CACHE_DIR",
        "PYTHONUNBUFFERED",
        "TMPDIR",
    ]


@pytest.mark.integration
def test_ci_mode_allows_the_pip_cache(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """In ci mode the evidence says the pip cache was allowed (warm), and the gate still PASSes."""
    verdict = run_g7(run_certify, git_target("boot-ok"), tmp_path / "pack", "--mode", "ci")
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["details"]["cache"].startswith("warm:")
    assert "(warm cache)" in verdict["reasons"][0]


@pytest.mark.integration
def test_failing_step_fails_naming_the_step(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """boot-fail FAILs naming the step that failed and the error it printed; the smoke command is not run."""
    verdict = run_g7(run_certify, git_target("boot-fail"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert verdict["exit_code"] == 1
    (reason,) = verdict["reasons"]
    assert reason.startswith("the bootstrap exited 1 in step 'build assets'")
    assert "No such file or directory: 'assets/app.css'" in reason
    assert not any(m["name"] == "smoke duration" for m in verdict["measurements"])


@pytest.mark.integration
def test_bootstrap_over_budget_fails(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """boot-slow (about 3 s against budget_s = 2) FAILs with its total next to the budget and the slow step timed."""
    verdict = run_g7(run_certify, git_target("boot-slow"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    total = measurement(verdict, "bootstrap total")
    assert total["passed"] is False
    assert total["threshold"] == 2.0
    assert total["value"] > 2.0
    assert verdict["reasons"][0].endswith("more than its budget of 2 s")
    assert measurement(verdict, "step 2 warm cache")["value"] >= 2.9


@pytest.mark.integration
def test_failing_smoke_fails(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A bootstrap that works but leaves a service whose smoke command fails FAILs with the smoke output."""
    target = git_target("boot-ok")
    config = target / "certify.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        'smoke = [".venv/bin/python", "scripts/serve_check.py"]',
        'smoke = ["sh", "-c", "echo database unreachable >&2; exit 3"]',
    )
    config.write_text(text, encoding="utf-8")
    commit_all(target, "broken smoke")
    verdict = run_g7(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert any("exited 3; last output: database unreachable" in reason for reason in verdict["reasons"])


@pytest.mark.integration
def test_no_smoke_command_is_inconclusive(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """Without a smoke command nothing shows the service runs, so a fast bootstrap is INCONCLUSIVE, not PASS."""
    target = git_target("boot-ok")
    config = target / "certify.toml"
    text = config.read_text(encoding="utf-8").replace('smoke = [".venv/bin/python", "scripts/serve_check.py"]\n', "")
    config.write_text(text, encoding="utf-8")
    commit_all(target, "no smoke")
    verdict = run_g7(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "INCONCLUSIVE"
    assert "no [bootstrap] smoke command" in " ".join(verdict["reasons"])


@pytest.mark.integration
def test_leftover_processes_are_stopped_and_recorded(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """A bootstrap that leaves a daemon running (even via setsid) still PASSes, but the harness stops it and says so."""
    target = git_target("boot-ok")
    script = target / "scripts" / "bootstrap.sh"
    script.write_text(script.read_text(encoding="utf-8") + "setsid sleep 3171 >/dev/null 2>&1 &\n", encoding="utf-8")
    commit_all(target, "leave a daemon")
    verdict = run_g7(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert any("the bootstrap left 1 process(es) running, stopped by the harness" in r for r in verdict["reasons"]), (
        verdict["reasons"]
    )
    survivors = [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[:2] == ["sleep", "3171"]]
    assert survivors == []


@pytest.mark.integration
def test_no_bootstrap_table_is_not_run(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A target whose certify.toml has no [bootstrap] table gives NOT_RUN with a reason naming the table."""
    verdict = run_g7(run_certify, git_target("tiny"), tmp_path / "pack")
    assert verdict["status"] == "NOT_RUN"
    assert "no [bootstrap] table" in verdict["reasons"][0]


@pytest.mark.integration
def test_not_a_git_repo_is_inconclusive(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """Without git nothing says which files a clean clone has: INCONCLUSIVE, and the bootstrap is not run."""
    target = git_target("boot-ok", init_git=False)
    verdict = run_g7(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "INCONCLUSIVE"
    assert verdict["reasons"][0].startswith("the target is not a git work tree")
    assert not (tmp_path / "pack" / "gates" / "G7" / "runs" / "02-bootstrap.json").exists()


@pytest.mark.integration
def test_untracked_files_are_not_copied(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A file that exists only in the working copy (here the assets boot-fail lacks) does not reach the sandbox."""
    target = git_target("boot-fail")
    (target / "assets").mkdir()
    (target / "assets" / "app.css").write_text("body {}\n", encoding="utf-8")
    assert git(target, "status", "--porcelain").stdout.strip() == "?? assets/"
    verdict = run_g7(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert "step 'build assets'" in verdict["reasons"][0]


@pytest.mark.integration
def test_kill_leftovers_stops_processes_running_in_the_sandbox(tmp_path: Path) -> None:
    """kill_leftovers stops a process whose cwd lies in the sandbox and reports it; others are untouched."""
    box = Sandbox(root=tmp_path, copy=tmp_path / "copy", home=tmp_path / "home", tmp=tmp_path / "tmp")
    box.copy.mkdir()
    inside = subprocess.Popen(["sleep", "30"], cwd=box.copy)
    outside = subprocess.Popen(["sleep", "30"], cwd=Path.home())
    try:
        stopped = kill_leftovers(box, grace_s=2.0)
        assert [item["pid"] for item in stopped] == [inside.pid]
        assert inside.wait(timeout=5) is not None
        assert outside.poll() is None
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait(timeout=5)


def test_parse_steps_times_each_marker_until_the_next() -> None:
    """Steps run from their marker to the next marker; the last one ends at the command's end."""
    log = "[     0.001] ==> step: venv\n[     1.500] noise\n[     2.000] ==> step: install\n[     2.100] done\n"
    steps = parse_steps(log, 5.0)
    assert [(s.name, s.start_s, s.duration_s) for s in steps] == [("venv", 0.001, 1.999), ("install", 2.0, 3.0)]


def test_parse_steps_without_markers_is_one_step() -> None:
    """A log with no markers is one step covering the whole command; time before a first marker is its own step."""
    assert [s.name for s in parse_steps("[     0.100] hello\n", 4.0)] == ["(whole command, no step markers)"]
    late = parse_steps("[     3.000] ==> step: build\n", 4.0)
    assert [(s.name, s.duration_s) for s in late] == [("(before the first step)", 3.0), ("build", 1.0)]


def boot_evidence(tmp_path: Path, log: str, **overrides: Any) -> Evidence:
    """A hand-written G7 evidence set: bootstrap.json (defaults: passed in 3 s of 60 s, smoke passed) and its logs."""
    run = {
        "returncode": 0,
        "timed_out": False,
        "cancelled": False,
        "timeout_s": 65.0,
        "duration_s": 3.1,
        "elapsed_s": 3.0,
        "spawn_error": None,
        "step_timed_out": None,
        "left_running": [],
        "log": "runs/02-bootstrap.stdout.txt",
    }
    smoke = {**run, "duration_s": 0.5, "elapsed_s": 0.4, "log": "runs/03-smoke.stdout.txt"}
    data: dict[str, Any] = {
        "mode": "release",
        "budget_s": 60.0,
        "command": ["sh", "bootstrap.sh"],
        "smoke": ["sh", "smoke.sh"],
        "copy": {"git_error": None, "files": 3, "bytes": 10, "skipped": []},
        "environment": {"cache": "cold: PIP_NO_CACHE_DIR=1", "names": []},
        "bootstrap": run,
        "leftovers_after_bootstrap": [],
        "smoke_run": smoke,
        "leftovers_after_smoke": [],
    }
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {**data[section], field: value}
        else:
            data[section] = value
    gate_dir = tmp_path / "gates" / "G7"
    (gate_dir / "runs").mkdir(parents=True)
    (gate_dir / "bootstrap.json").write_text(json.dumps(data), encoding="utf-8")
    (gate_dir / "runs" / "02-bootstrap.stdout.txt").write_text(log, encoding="utf-8")
    (gate_dir / "runs" / "03-smoke.stdout.txt").write_text("[     0.300] smoke: connection refused\n", encoding="utf-8")
    files = tuple(str(p.relative_to(tmp_path)) for p in gate_dir.rglob("*") if p.is_file())
    return Evidence(tmp_path, "G7", files)


LOG = "[     0.001] ==> step: venv\n[     1.000] ==> step: install\n[     2.500] installed\n"


def test_evaluate_passes_on_fast_bootstrap_and_passing_smoke(tmp_path: Path) -> None:
    """Hand-written evidence of a 3 s bootstrap with a passing smoke command evaluates to PASS."""
    verdict = BootstrapGate().evaluate(boot_evidence(tmp_path, LOG), BootstrapPolicy())
    assert verdict.status is Status.PASS
    assert verdict.reasons[0] == "bootstrap of a clean copy took 3.0 s of 60 s (cold cache), 2 step(s)"


def test_evaluate_fails_over_budget(tmp_path: Path) -> None:
    """The same run judged against a 2 s budget FAILs: the budget is read from the evidence, not re-measured."""
    verdict = BootstrapGate().evaluate(boot_evidence(tmp_path, LOG, budget_s=2.0), BootstrapPolicy())
    assert verdict.status is Status.FAIL
    assert verdict.reasons[0] == "the bootstrap took 3.0 s, more than its budget of 2 s"


def test_evaluate_fails_a_timed_out_bootstrap_naming_the_step(tmp_path: Path) -> None:
    """A bootstrap stopped at its budget FAILs naming the step it was in."""
    evidence = boot_evidence(
        tmp_path, LOG, bootstrap__timed_out=True, bootstrap__returncode=None, bootstrap__elapsed_s=None
    )
    verdict = BootstrapGate().evaluate(evidence, BootstrapPolicy())
    assert verdict.status is Status.FAIL
    assert verdict.reasons == ("the bootstrap was still running at 3.1 s (budget 60 s), in step 'install'",)


def test_evaluate_fails_on_a_failed_smoke(tmp_path: Path) -> None:
    """A passing bootstrap with a smoke command that exited 1 FAILs quoting the smoke output."""
    verdict = BootstrapGate().evaluate(boot_evidence(tmp_path, LOG, smoke_run__returncode=1), BootstrapPolicy())
    assert verdict.status is Status.FAIL
    assert verdict.reasons[-1] == "the smoke command `sh smoke.sh` exited 1; last output: smoke: connection refused"


def test_evaluate_is_inconclusive_for_a_non_git_target(tmp_path: Path) -> None:
    """A copy record carrying a git error is INCONCLUSIVE whatever else the evidence says."""
    copy = {"git_error": "fatal: not a git repository", "files": 0, "bytes": 0, "skipped": []}
    verdict = BootstrapGate().evaluate(boot_evidence(tmp_path, LOG, copy=copy), BootstrapPolicy())
    assert verdict.status is Status.INCONCLUSIVE
    assert "fatal: not a git repository" in verdict.reasons[0]
