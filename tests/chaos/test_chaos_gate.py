"""Gate G4 end to end: real `certify run --gates G4` on the chaos-* fixture targets, then `certify verify`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GitTarget, RunCertify, commit_all, copy_target, git


def run_g4(run_certify: RunCertify, target: Path, out: Path) -> dict[str, Any]:
    """Run G4 in ci mode; no traceback; `certify verify` recomputes the same verdict. G4's verdict."""
    proc = run_certify("run", "--target", target, "--gates", "G4", "--mode", "ci", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    verdict: dict[str, Any] = results["results"][0]["verdict"]
    return verdict


def spans(pack: Path) -> dict[str, tuple[float, float]]:
    """When each experiment ran, from the pack's schedule.json (unix seconds)."""
    schedule = json.loads((pack / "gates" / "G4" / "schedule.json").read_text(encoding="utf-8"))
    return {item["id"]: (item["start"], item["end"]) for item in schedule["experiments"]}


def overlapping(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two recorded spans share a moment."""
    return a[0] < b[1] and b[0] < a[1]


def edited(dest_root: Path, name: str, edit: dict[str, str]) -> Path:
    """A committed copy of a fixture under dest_root whose certify.toml had each regex replaced."""
    target = copy_target(dest_root, name, init_git=False)
    config = target / "certify.toml"
    text = config.read_text(encoding="utf-8")
    for pattern, replacement in edit.items():
        text = re.sub(pattern, replacement, text, flags=re.S)
    config.write_text(text, encoding="utf-8")
    git(target, "init", "-q")
    git(target, "config", "user.name", "Certify Tests")
    git(target, "config", "user.email", "certify-tests@example.invalid")
    commit_all(target, "fixture target")
    return target


@pytest.mark.integration
def test_supervised_durable_fixture_passes_and_writes_its_documents(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """chaos-ok: kills, link down and a held DB lock all recover, nothing lost; report, journals, SVGs written."""
    out = tmp_path / "pack"
    verdict = run_g4(run_certify, git_target("chaos-ok"), out)
    assert verdict["status"] == "PASS", verdict["reasons"]
    report = (out / "chaos_report.md").read_text(encoding="utf-8")
    assert "| C1-worker-kill | C1 | kill | 1 |" in report
    assert "NOT_APPLICABLE" in report
    for exp in ("C1-worker-kill", "C1-api-kill", "C2-dependency-down", "C3-db-lock"):
        journal = json.loads((out / "chaos" / exp / "journal-1.json").read_text(encoding="utf-8"))
        assert journal["status"] == "completed"
        assert journal["steady_states"]["before"]["steady_state_met"] is True
        assert (out / "chaos" / exp / "timeline-1.svg").read_text(encoding="utf-8").startswith("<svg")
    names = {m["name"] for m in verdict["measurements"]}
    assert "C1-api-kill max recovery time" in names
    ran = spans(out)
    assert overlapping(ran["C1-worker-kill"], ran["C1-api-kill"])
    assert not any(overlapping(ran["C4-gpu"], other) for name, other in ran.items() if name != "C4-gpu")


@pytest.mark.integration
def test_unsupervised_worker_never_recovers(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """chaos-nosuper: a killed worker is never restarted, so G4 fails on recovery and on unfinished work."""
    verdict = run_g4(run_certify, git_target("chaos-nosuper"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert "not recovered" in verdict["reasons"][0]
    assert "failed or unfinished" in verdict["reasons"][0]


@pytest.mark.integration
def test_unsupervised_target_fails_with_experiments_running_concurrently(
    run_certify: RunCertify, tmp_path: Path
) -> None:
    """chaos-nosuper, two experiments at once and an exclusive one alone: the kills still FAIL, overlaps as declared."""
    extra = (
        '\n[[gates.G4.experiments]]\nid = "C3-db-lock"\ntitle = "lock"\nrequirement = "C3"\n'
        'fault = { type = "file_lock", database = "tasks.db" }\n'
        '\n[[gates.G4.experiments]]\nid = "C1-api-kill"\ntitle = "SIGKILL of the API"\nrequirement = "C1"\n'
        'exclusive = true\nfault = { type = "kill", pid_file = "pids/api.pid" }\n'
    )
    # Two instances start at once: more time for the steady state on a busy machine (the kills must FAIL, not
    # end INCONCLUSIVE because the hypothesis was not met before the fault).
    settings = {
        r"steady_probes = 2": "steady_probes = 2\nconcurrency = 2",
        r"steady_timeout_s = 4": "steady_timeout_s = 20",
    }
    target = edited(tmp_path / "t", "chaos-nosuper", {**settings, r"\Z": extra})
    out = tmp_path / "pack"
    verdict = run_g4(run_certify, target, out)
    assert verdict["status"] == "FAIL", verdict["reasons"]
    judged = {item["id"]: item for item in verdict["details"]["experiments"]}
    assert judged["C1-worker-kill"]["status"] == "FAIL", verdict["reasons"]
    assert "not recovered" in " ".join(judged["C1-worker-kill"]["reasons"])
    assert judged["C1-api-kill"]["status"] == "FAIL", verdict["reasons"]
    ran = spans(out)
    assert overlapping(ran["C1-worker-kill"], ran["C3-db-lock"]), ran
    assert not overlapping(ran["C1-api-kill"], ran["C1-worker-kill"])
    assert not overlapping(ran["C1-api-kill"], ran["C3-db-lock"])


@pytest.mark.integration
def test_in_memory_queue_loses_accepted_tasks(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """chaos-memqueue: the API comes back but the tasks it had accepted are gone, found by id in the ledger."""
    verdict = run_g4(run_certify, git_target("chaos-memqueue"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert re.search(r"\d+ accepted unit\(s\) of work lost", verdict["reasons"][0])
    assert "not recovered" not in verdict["reasons"][0]


@pytest.mark.integration
def test_health_endpoint_that_lies_is_caught_by_the_probes(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """chaos-liar: readiness says 200 throughout while no work completes; the probes do not call it recovered."""
    verdict = run_g4(run_certify, git_target("chaos-liar"), tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert "readiness answered 2xx throughout" in verdict["reasons"][0]


@pytest.mark.integration
def test_steady_state_not_met_is_inconclusive_and_no_experiments_is_not_run(
    run_certify: RunCertify, tmp_path: Path
) -> None:
    """Unreadable tasks: the fault is never applied (INCONCLUSIVE); no experiments declared: NOT_RUN."""
    broken = edited(
        tmp_path / "broken",
        "chaos-ok",
        {
            r"\n\[\[gates\.G4\.experiments\]\]\nid = \"C1-api-kill\".*": "\n",
            r"completions_field": 'status_path = "/missing/{id}"\ncompletions_field',
            r"steady_timeout_s = 10": "steady_timeout_s = 2",
            r"drain_s = 10": "drain_s = 2",
        },
    )
    verdict = run_g4(run_certify, broken, tmp_path / "pack-broken")
    assert verdict["status"] == "INCONCLUSIVE", verdict["reasons"]
    assert "steady state not met" in verdict["reasons"][0]
    journal = json.loads((tmp_path / "pack-broken" / "chaos" / "C1-worker-kill" / "journal-1.json").read_text())
    assert journal["run"] == []
    empty = edited(tmp_path / "empty", "chaos-ok", {r"\n\[\[gates\.G4\.experiments\]\].*": "\n"})
    verdict = run_g4(run_certify, empty, tmp_path / "pack-empty")
    assert verdict["status"] == "NOT_RUN"
    assert "no experiments declared" in verdict["reasons"][0]
