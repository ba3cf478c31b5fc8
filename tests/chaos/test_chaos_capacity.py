"""Unit tests of capacity as part of G4's steady state (#25): role counts, throughput, repetitions, seeds."""

from __future__ import annotations

import copy
from typing import Any

from chaos.capacity import burst_rate, capacity_restore, count_roles, metric_disagreements
from chaos.experiments import ChaosPolicy, Experiment, RoleSpec
from chaos.judge import judge_experiment
from chaos.recovery import distribution
from chaos.report import render_report
from tests.chaos.test_chaos_recovery import burst, outage, record, whole_tree

RAN = {"status": "ran", "repetitions": 1}
FAULT = {"injected_at_s": 2.0, "removed_at_s": 2.0, "inject": {"pid": 1, "gone": True}}


def kill() -> Experiment:
    """The worker-kill experiment."""
    return Experiment.model_validate(
        {"id": "C1-worker-kill", "title": "kill", "requirement": "C1", "fault": {"type": "kill", "pid_file": "w"}}
    )


def policy(**extra: Any) -> ChaosPolicy:
    """A policy declaring two workers, budget 60 s."""
    return ChaosPolicy.model_validate({"roles": {"worker": {"cmdline": "worker", "count": 2}}, **extra})


def rep(**changes: Any) -> dict[str, Any]:
    """A passing kill repetition (worker pid 1 of 1 and 5 killed at 2.0 s, pid 7 from 2.4 s; no probe outage)."""
    samples = outage(99.0, 99.0)
    finals = {s["id"]: {"http": 200, "state": "completed", "completions": 1} for s in samples}
    stored = record(samples, finals, (0, len(finals)))
    stored["fault"] = dict(FAULT)
    stored.update(copy.deepcopy(changes))
    return stored


def judged(records: list[dict[str, Any]], pol: ChaosPolicy | None = None) -> dict[str, Any]:
    """The experiment judged over these repetitions."""
    return judge_experiment(kill(), {**RAN, "repetitions": len(records)}, records, pol or policy())


def test_count_roles_matches_command_lines_by_pattern() -> None:
    """A role's pids are the processes whose command line matches its pattern."""
    procs = [(10, "python -m svc worker --slot 0"), (11, "python -m svc worker --slot 1"), (12, "python -m svc api")]
    roles = {"worker": RoleSpec(cmdline=r"svc worker"), "api": RoleSpec(cmdline=r"svc api\b")}
    assert count_roles(procs, roles) == {"worker": [10, 11], "api": [12]}


def test_a_replaced_worker_restores_capacity_when_the_new_pid_appears() -> None:
    """Capacity is back at the first count with the pre-fault number of workers and the killed pid gone."""
    found = capacity_restore(whole_tree(), FAULT, stable_s=2.0)
    assert found["before"] == {"worker": [1, 5]}
    assert found["killed_role"] == "worker"
    assert found["killed_seen_gone"] is True
    assert found["restored_at_s"] == 2.4
    assert found["restore_from_removal_s"] == 0.4
    assert judged([rep()])["status"] == "PASS"


def test_a_worker_never_restarted_fails_naming_the_role_and_the_counts() -> None:
    """Health stays green with one worker left, but the kill FAILs: worker has 1 of 2 processes."""
    tree = [{"t_s": 1.0, "roles": {"worker": [1, 5]}}, *({"t_s": t, "roles": {"worker": [5]}} for t in range(3, 13))]
    result = judged([rep(tree=tree)])
    assert result["status"] == "FAIL"
    assert (
        "capacity not restored within the 60 s budget: role worker has 1 of 2 process(es) [5]" in result["reasons"][0]
    )
    assert "before the fault: worker 2 [1, 5]" in result["reasons"][0]


def test_a_restart_after_90_s_fails_on_recovery_time() -> None:
    """A replacement that appears 90 s after the kill is later than the 60 s budget, though health never dropped."""
    result = judged([rep(tree=whole_tree(restored_at=92.0, end=96.0))])
    assert result["status"] == "FAIL"
    assert "capacity restored after 90 s > budget 60 s" in result["reasons"][0]
    assert result["recovery_s"]["max"] == 90.0


def test_halved_throughput_after_recovery_fails() -> None:
    """The restarted worker takes no work: the burst after recovery completes at half the pre-fault rate."""
    capacity = {"before": burst(0.5, 1.0), "after": burst(20.0, 2.0), "metrics_before": [], "metrics_after": []}
    result = judged([rep(capacity=capacity)])
    assert result["status"] == "FAIL"
    assert "throughput after recovery 5/s (10 of 10 in 2 s) is 50% of the pre-fault 10/s" in result["reasons"][0]
    assert result["throughput_ratio_min"] == 0.5


def test_a_kill_whose_process_never_disappeared_is_inconclusive_not_a_recovery() -> None:
    """SIGKILL sent but the pid still alive, or never gone from the tree: INCONCLUSIVE, never PASS."""
    alive = judged([rep(fault={**FAULT, "inject": {"pid": 1, "gone": False, "pid_file": "w", "signal": "SIGKILL"}})])
    assert alive["status"] == "INCONCLUSIVE"
    assert "not seen to take effect: pid 1 (w) was still alive after the SIGKILL" in alive["reasons"][0]
    tree = [{"t_s": t / 2, "roles": {"worker": [1, 5]}} for t in range(1, 25)]
    stayed = judged([rep(tree=tree)])
    assert stayed["status"] == "INCONCLUSIVE"
    assert "pid 1 of role worker never left the process tree" in stayed["reasons"][0]


def test_the_targets_own_count_must_agree_with_the_process_tree() -> None:
    """guardian_workers_alive saying 2 while the tree has 1 worker FAILs; agreeing reads pass."""
    reads = [{"t_s": 20.0, "roles": {"worker": [5]}, "metrics": {"worker": 2.0}}]
    assert metric_disagreements(reads) == ["role worker: the target's metric says 2, the process tree has 1"]
    capacity = {"before": burst(0.5, 1.0), "after": burst(20.0, 1.0), "metrics_before": [], "metrics_after": reads}
    result = judged([rep(capacity=capacity)])
    assert result["status"] == "FAIL"
    assert "after the fault, role worker: the target's metric says 2" in result["reasons"][0]


def test_steady_state_with_the_wrong_count_and_unmeasurable_throughput_are_inconclusive() -> None:
    """One of two declared workers before the fault, or a burst too quick to measure: INCONCLUSIVE."""
    short = judged([rep(tree=[{"t_s": t / 2, "roles": {"worker": [5]}} for t in range(1, 25)])])
    assert short["status"] == "INCONCLUSIVE"
    assert "role worker had 1 process(es) before the fault, 2 declared" in short["reasons"][0]
    quick = {"before": burst(0.5, 0.1), "after": burst(20.0, 0.1), "metrics_before": [], "metrics_after": []}
    result = judged([rep(capacity=quick)])
    assert result["status"] == "INCONCLUSIVE"
    assert "the pre-fault burst of 10 completed in 0.1 s (< capacity.min_window_s 1 s)" in result["reasons"][0]
    assert burst_rate(quick["before"], {"completed"}) == {
        "completed": 10,
        "size": 10,
        "window_s": 0.1,
        "rate_per_s": 100.0,
    }


def test_a_kill_without_declared_roles_is_inconclusive() -> None:
    """Without [gates.G4.roles] a kill cannot show capacity came back."""
    result = judged([rep(tree=[{"t_s": t / 2, "roles": {}} for t in range(1, 25)])], ChaosPolicy())
    assert result["status"] == "INCONCLUSIVE"
    assert "no [gates.G4.roles] declared" in result["reasons"][0]


def test_the_worst_repetition_decides_and_the_distribution_is_reported() -> None:
    """Two good repetitions and one halved one FAIL; p50, p95 and max of recovery over the repetitions."""
    good = [rep(tree=whole_tree(restored_at=r)) for r in (2.4, 3.0)]
    bad = rep(
        capacity={"before": burst(0.5, 1.0), "after": burst(20.0, 2.0), "metrics_before": [], "metrics_after": []}
    )
    result = judged([*good, bad])
    assert result["status"] == "FAIL"
    assert [reason.split(":")[0] for reason in result["reasons"]] == ["C1-worker-kill repetition 3"]
    assert result["recovery_s"] == {"max": 1.0, "p95": 1.0, "median": 0.4, "min": 0.4}
    passed = judged(good)
    assert "(p50 / p95 / max recovery 0.7 / 1 / 1 s)" in passed["reasons"][-1]
    report = render_report([passed], "ci", {**ChaosPolicy().model_dump(), "repetitions": 2, "seed": 7}, "PASS")
    assert "| C1-worker-kill | C1 | kill | 2 | 0.7 / 1 / 1 | 0.7 / 1 |" in report
    assert "- C1-worker-kill #2: fault - s after the baseline" in report
    assert "`[gates.G4] seed = 7` replays" in report


def test_p95_is_the_nearest_rank() -> None:
    """Ten values 1..10: p95 is 10, median 5.5."""
    assert distribution([float(v) for v in range(1, 11)]) == {"max": 10.0, "p95": 10.0, "median": 5.5, "min": 1.0}


def test_a_seed_replays_the_same_fault_moments() -> None:
    """The same seed gives each repetition the same moment and choice; another seed gives others."""
    pol = policy()
    moments = [pol.moment_rng(42, kill(), n).uniform(0, 2) for n in (1, 2, 3)]
    assert moments == [pol.moment_rng(42, kill(), n).uniform(0, 2) for n in (1, 2, 3)]
    assert moments != [pol.moment_rng(43, kill(), n).uniform(0, 2) for n in (1, 2, 3)]
    assert len(set(moments)) == 3


def test_a_fault_that_kills_nothing_does_not_wait_for_a_replacement_pid() -> None:
    """A memory limit on a worker names its pid but removes no process: the unchanged tree is whole capacity."""
    fault = {"type": "memory_limit", "injected_at_s": 2.0, "removed_at_s": 5.0, "inject": {"pid": 1}}
    tree = [{"t_s": t / 2, "roles": {"worker": [1, 5]}} for t in range(1, 25)]
    found = capacity_restore(tree, fault, stable_s=2.0)
    assert found["killed_role"] is None
    assert found["restored_at_s"] == 2.0
    assert found["lost_at_s"] is None


def test_the_plan_says_which_experiments_run_back_to_back() -> None:
    """--plan names the repetitions, the seed and which experiments share one instance or get a fresh one each."""
    from gates.chaos import ChaosGate  # noqa: PLC0415 - the gate module pulls in the whole chaos package

    fresh = {"id": "C3-fresh", "title": "t", "requirement": "C3", "fresh_instance": True}
    pol = policy(
        seed=5,
        experiments=[
            kill().model_dump(),
            {**fresh, "fault": {"type": "file_lock", "database": "x.db"}},
        ],
    )
    lines = ChaosGate().plan_lines(pol, "ci")
    assert lines == [
        "3 repetition(s) per experiment, each fault at a random moment up to 2 s after the baseline (seed 5)",
        "back to back on one instance: C1-worker-kill",
        "a fresh instance per repetition (fresh_instance = true): C3-fresh",
    ]


def test_a_confirming_burst_tells_a_busy_moment_from_lost_capacity() -> None:
    """A short first burst after recovery is measured again: the better of the two is judged, and says so."""
    busy = {"before": burst(0.5, 1.0), "after": burst(20.0, 2.0), "after_confirm": burst(23.0, 1.05)}
    assert judged([rep(capacity={**busy, "metrics_before": [], "metrics_after": []})])["status"] == "PASS"
    halved = {"before": burst(0.5, 1.0), "after": burst(20.0, 2.0), "after_confirm": burst(23.0, 2.0)}
    result = judged([rep(capacity={**halved, "metrics_before": [], "metrics_after": []})])
    assert result["status"] == "FAIL"
    assert (
        "is 50% of the pre-fault 10/s (< capacity.min_fraction 0.8); the better of two bursts" in result["reasons"][0]
    )


def test_a_burst_beside_an_undrained_backlog_names_it() -> None:
    """Work the fault delayed still open when the post-recovery burst began is named in the throughput FAIL."""
    backlog = {"ids": 40, "open": 12, "waited_s": 20.0}
    capacity = {"before": burst(0.5, 1.0), "after": burst(20.0, 2.0), "backlog": backlog}
    result = judged([rep(capacity={**capacity, "metrics_before": [], "metrics_after": []})])
    assert result["status"] == "FAIL"
    assert result["reasons"][0].endswith("; 12 of 40 earlier units still open after waiting 20 s")
