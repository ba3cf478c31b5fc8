"""Tests for gate G6 (gates/observability/): real `certify run` with Prometheus and Locust on the obs-* fixtures.

The four fixture runs start together (one module-scoped fixture) so the module costs one G6 run's
wall time; each test then reads its own pack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURE_POLICY, copy_target

FIXTURES = ("obs-ok", "obs-frozen", "obs-liar", "obs-noprom")
GATES = {"obs-ok": "G2,G6", "obs-liar": "G2,G6"}
"""Fixtures run with G2 before G6, so G6's run-wide Prometheus scrapes their load profiles too."""
RUN_TIMEOUT_S = 360

Outcome = dict[str, Any]


def _run_all(root: Path) -> dict[str, Outcome]:
    """Run `certify run --gates G6 --mode ci` (G2,G6 where GATES says) on every fixture at once, then verify.

    Each run is judged under the fixture targets' test policy, so G6 sees the fixture's own config.
    """
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "xdg-cache"), "CI": "true"}
    procs = {}
    for name in FIXTURES:
        target = copy_target(root, name)
        gates = GATES.get(name, "G6")
        argv = [sys.executable, "-m", "harness.cli", "run", "--target", str(target), "--gates", gates]
        argv += ["--mode", "ci", "--out", str(root / f"pack-{name}"), "--policy", str(FIXTURE_POLICY)]
        procs[name] = subprocess.Popen(
            argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    outcomes: dict[str, Outcome] = {}
    for name, proc in procs.items():
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        pack = root / f"pack-{name}"
        verify = subprocess.run(
            [sys.executable, "-m", "harness.cli", "verify", str(pack)],
            cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        results = json.loads((pack / "results.json").read_text(encoding="utf-8"))
        verdict = next(item["verdict"] for item in results["results"] if item["gate"] == "G6")
        outcomes[name] = {
            "output": output, "exit_code": proc.returncode, "verify": verify, "verdict": verdict, "pack": pack
        }  # fmt: skip
    return outcomes


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every fixture's G6 run (started concurrently)."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus")
    return _run_all(tmp_path_factory.mktemp("g6"))


def _check(outcome: Outcome, name: str) -> str:
    """Status of one G6 check in the recorded verdict."""
    return str(outcome["verdict"]["details"][name]["status"])


def _sane(outcome: Outcome) -> None:
    """No traceback anywhere, no deviation from the test policy, and `certify verify` recomputes the same verdict."""
    assert "Traceback" not in outcome["output"]
    assert "no deviation: certify.toml is at least as strict as the policy" in outcome["output"]
    assert outcome["verify"].returncode == 0, outcome["verify"].stdout + outcome["verify"].stderr


@pytest.mark.integration
def test_truthful_target_passes_with_every_document(runs: dict[str, Outcome]) -> None:
    """obs-ok: counters agree with the generator, the alert fires only in the fault, panels have data: PASS."""
    outcome = runs["obs-ok"]
    _sane(outcome)
    assert outcome["verdict"]["status"] == "PASS", outcome["verdict"]["reasons"]
    cross = outcome["verdict"]["details"]["cross-check"]["rows"]
    work = next(row for row in cross if row["name"] == "work requests")
    assert work["harness"] == work["target"] == work["prometheus"] > 0
    alerts = outcome["verdict"]["details"]["alerts"]["rows"]
    assert [(row["alert"], row["in_fault"], row["in_baseline"]) for row in alerts] == [
        ("ObsHighErrorRate", True, False)
    ]
    pack = outcome["pack"]
    report = (pack / "observability_report.md").read_text(encoding="utf-8")
    assert "| work requests |" in report
    assert "for: 0s" in report
    export = json.loads((pack / "observability_dashboard_export.json").read_text(encoding="utf-8"))
    assert all(panel["has_data"] for panel in export["dashboards"][0]["panels"])
    assert (pack / "logs_sample" / "app.log").is_file()
    assert not [path for path in pack.rglob("*") if {"wal", "chunks_head"} & set(path.parts)]
    runs_dir = pack / "gates" / "G6" / "runs"
    tests = [json.loads(p.read_text(encoding="utf-8")) for p in runs_dir.glob("*promtool-test.json")]
    assert [run["returncode"] for run in tests] == [0]


@pytest.mark.integration
def test_truthful_target_agrees_during_every_load_profile(runs: dict[str, Outcome]) -> None:
    """obs-ok with G2: the run-wide Prometheus scraped each profile's instance and its counters match the generator."""
    outcome = runs["obs-ok"]
    for check in ("shared scrape", "shared cross-check", "shared latency", "shared alerts"):
        assert _check(outcome, check) == "PASS", check
    rows = outcome["verdict"]["details"]["shared cross-check"]["rows"]
    work = [row for row in rows if row["name"] == "work requests"]
    assert [row["window"] for row in work] == ["P1", "P2", "P3", "P4", "P5"]
    assert all(row["harness"] == row["prometheus"] > 0 for row in work)
    report = (outcome["pack"] / "observability_report.md").read_text(encoding="utf-8")
    assert "During G2's load profiles and G4's chaos experiments" in report
    assert (outcome["pack"] / "gates" / "G6" / "shared" / "load" / "P1" / "raw.csv.gz").is_file()


@pytest.mark.integration
def test_half_counting_counter_fails_during_load_profiles(runs: dict[str, Outcome]) -> None:
    """obs-liar with G2: the counter counting half the requests is caught in every G2 profile too."""
    outcome = runs["obs-liar"]
    assert _check(outcome, "shared cross-check") == "FAIL"
    reasons = "\n".join(outcome["verdict"]["reasons"])
    assert "P1 work requests: Prometheus shows" in reasons


@pytest.mark.integration
def test_frozen_metrics_and_plain_text_logs_fail(runs: dict[str, Outcome]) -> None:
    """obs-frozen: a constant /metrics fails the cross-check and the live-metrics check; plain-text lines fail logs."""
    outcome = runs["obs-frozen"]
    _sane(outcome)
    assert outcome["verdict"]["status"] == "FAIL"
    assert outcome["exit_code"] == 1
    for check in ("cross-check", "live metrics", "logs", "alerts"):
        assert _check(outcome, check) == "FAIL", check
    reasons = "\n".join(outcome["verdict"]["reasons"])
    assert "did not change while the load and the fault ran" in reasons
    assert "not JSON" in reasons


@pytest.mark.integration
def test_lying_counter_missing_metrics_and_silent_alert_fail(runs: dict[str, Outcome]) -> None:
    """obs-liar: half-counting counter, rule and panel on a missing metric, a never-firing error alert: FAIL."""
    outcome = runs["obs-liar"]
    _sane(outcome)
    assert outcome["verdict"]["status"] == "FAIL"
    assert outcome["exit_code"] == 1
    reasons = "\n".join(outcome["verdict"]["reasons"])
    assert "work requests: target counted 50, the generator 100" in reasons
    assert "rule ObsQueueStuck reads obs_queue_depth" in reasons
    assert "panel 'Queue depth': reads obs_queue_depth" in reasons
    assert "ObsHighErrorRate did not fire during the fault" in reasons
    assert _check(outcome, "logs") == "PASS"


@pytest.mark.integration
def test_without_prometheus_the_gate_is_not_run_never_pass(runs: dict[str, Outcome]) -> None:
    """obs-noprom: with no Prometheus binary the Prometheus-backed checks are NOT_RUN with the install command."""
    outcome = runs["obs-noprom"]
    _sane(outcome)
    assert outcome["verdict"]["status"] == "NOT_RUN"
    assert outcome["exit_code"] == 3
    for check in ("scrape", "alerts"):
        assert _check(outcome, check) == "NOT_RUN", check
    assert _check(outcome, "logs") == "PASS"
    assert any("apt-get install prometheus" in reason for reason in outcome["verdict"]["reasons"])
