"""G4 capacity on the chaos-capacity fixture: seeded repetitions replayed, and a worker not back at full capacity FAILs.

In a module of its own (not test_chaos_gate.py) so the test suite's loadfile distribution can run it
on another worker.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chaos.experiments import ChaosPolicy, Experiment
from tests.chaos.test_chaos_gate import edited, run_g4
from tests.conftest import RunCertify


@pytest.mark.integration
def test_two_worker_target_passes_with_seeded_repetitions_back_to_back(run_certify: RunCertify, tmp_path: Path) -> None:
    """chaos-capacity supervised, 2 repetitions, seed 11: PASS back to back and on fresh instances; moments replayed."""
    fresh = (
        '\n[[gates.G4.experiments]]\nid = "C1-worker-kill-fresh"\ntitle = "SIGKILL of a worker"\nrequirement = "C1"\n'
        'fresh_instance = true\nfault = { type = "kill", pid_file = "pids/worker-*.pid" }\n'
    )
    edits = {r"ci_repetitions = 1": "ci_repetitions = 2\nseed = 11", r"\Z": fresh}
    target = edited(tmp_path / "t", "chaos-capacity", edits)
    out = tmp_path / "pack"
    verdict = run_g4(run_certify, target, out)
    assert verdict["status"] == "PASS", verdict["reasons"]
    run = json.loads((out / "gates" / "G4" / "chaos_run.json").read_text(encoding="utf-8"))
    assert run["seed"] == 11
    policy = ChaosPolicy.model_validate({"moment_jitter_s": 0.5})
    exp = Experiment.model_validate(
        {"id": "C1-worker-kill", "title": "t", "requirement": "C1", "fault": {"type": "kill", "pid_file": "w"}}
    )
    for n in (1, 2):
        rep = json.loads((out / "gates" / "G4" / "experiments" / "C1-worker-kill" / f"rep-{n}.json").read_text())
        assert rep["moment_s"] == round(policy.moment_rng(11, exp, n).uniform(0.0, 0.5), 3)
        assert len(rep["tree"][0]["roles"]["worker"]) == 2
    names = {m["name"] for m in verdict["measurements"]}
    assert {"C1-worker-kill max capacity restore time", "C1-worker-kill min throughput after/before"} <= names
    report = (out / "chaos_report.md").read_text(encoding="utf-8")
    assert "- C1-worker-kill #2: fault " in report
    assert "- C1-worker-kill-fresh #2: fault " in report
    fresh_outcome = out / "gates" / "G4" / "experiments" / "C1-worker-kill-fresh" / "outcome.json"
    assert json.loads(fresh_outcome.read_text())["instances"] == "one per repetition"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("norestart", "capacity not restored within the 4 s budget: role worker has 1 of 2 process(es)"),
        ("late", "capacity not restored within the 4 s budget: role worker has 1 of 2 process(es)"),
        ("idle", "of the pre-fault"),
    ],
)
def test_a_worker_not_back_at_full_capacity_fails_the_worker_kill(
    run_certify: RunCertify, tmp_path: Path, mode: str, reason: str
) -> None:
    """Never restarted, restarted after 90 s, or restarted but idle: health stays green, C1-worker-kill FAILs (#25)."""
    target = edited(tmp_path / "t", "chaos-capacity", {r'"--mode", "supervised"': f'"--mode", "{mode}"'})
    verdict = run_g4(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "FAIL", verdict["reasons"]
    assert verdict["reasons"][0].startswith("C1-worker-kill repetition 1: "), verdict["reasons"]
    assert reason in verdict["reasons"][0]
    if mode == "idle":
        assert re.search(r"throughput after recovery [\d.]+/s .* is [45]\d% of the pre-fault", verdict["reasons"][0])
    else:
        assert "(before the fault: api 1 [" in verdict["reasons"][0]
        assert "worker 2 [" in verdict["reasons"][0]
