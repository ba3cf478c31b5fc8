"""Unit tests of the chaos gate's pure parts: recovery analysis, ledger counts, judging, journal and timeline."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from chaos.client import counter_sum
from chaos.experiments import ChaosPolicy, Experiment
from chaos.journal import build_journal
from chaos.judge import judge_experiment
from chaos.ledger import reconcile_counts
from chaos.recovery import analyse, recovery
from chaos.timeline import render

TASKS = {"completed": ["completed"], "failed": ["failed", "cancelled"], "completions_field": "completions"}
COMPLETED = {"completed"}
BOUNDS: dict[str, Any] = {"completed": COMPLETED, "healthy_latency_s": 1.0, "stable_s": 2.0}


def sample(t_s: float, ready: int | None = 200, latency_s: float | None = 0.05, task_id: str = "") -> dict[str, Any]:
    """A probe sample at t_s whose task completed after latency_s (None: never)."""
    return {
        "t_s": t_s,
        "ready": ready,
        "submit": 201 if ready else None,
        "id": task_id or f"p{t_s}",
        "state": "completed" if latency_s is not None else "queued",
        "done_s": None if latency_s is None else t_s + latency_s,
        "error": None,
    }


def outage(down_from: float, down_to: float, end: float = 12.0, ready_during: int = 503) -> list[dict[str, Any]]:
    """Probes every 0.25 s; between down_from and down_to readiness fails and tasks do not complete."""
    out, t = [], 0.0
    while t < end:
        down = down_from <= t < down_to
        out.append(sample(round(t, 2), ready_during if down else 200, None if down else 0.05))
        t += 0.25
    return out


def test_recovery_is_the_completion_of_the_first_probe_of_the_final_healthy_streak() -> None:
    """An outage from 2 s to 5 s: detected at injection, recovered when the first healthy probe's task completes."""
    found = recovery(outage(2.0, 5.0), 2.0, 2.0, **BOUNDS)
    assert found["detect_s"] == 0.0
    assert found["impact_s"] == 0.0
    assert found["recovered_at_s"] == pytest.approx(5.05)
    assert found["recovery_from_removal_s"] == pytest.approx(3.05)


def test_a_fault_without_visible_effect_recovers_at_once() -> None:
    """Every probe after injection healthy: recovery time 0, nothing detected."""
    found = recovery(outage(99, 99), 2.0, 4.0, **BOUNDS)
    assert found["recovery_from_start_s"] == 0.0
    assert found["detect_s"] is None


def test_a_lying_health_endpoint_is_not_recovery() -> None:
    """Readiness 200 while no task completes: never recovered, and the target never detected it."""
    found = recovery(outage(2.0, 99, ready_during=200), 2.0, 2.0, **BOUNDS)
    assert found["recovered_at_s"] is None
    assert found["detect_s"] is None
    assert found["impact_s"] == 0.0


def test_a_short_final_streak_is_not_yet_recovery() -> None:
    """Healthy probes for less than stable_s at the end do not count as recovered."""
    found = recovery(outage(2.0, 11.0), 2.0, 2.0, **BOUNDS)
    assert found["recovered_at_s"] is None


def test_a_slow_task_is_unhealthy() -> None:
    """A probe whose task takes longer than the latency bound is unhealthy even with readiness 200."""
    samples = [sample(0.0), sample(1.0, latency_s=3.0), *(sample(1.0 + i * 0.25) for i in range(1, 12))]
    found = recovery(samples, 0.5, 0.5, **BOUNDS)
    assert found["impact_s"] == 0.5
    assert found["recovered_at_s"] == pytest.approx(1.3)


def probes(end: float, stuck: tuple[float, float] | None = None, every_s: float = 0.25) -> list[dict[str, Any]]:
    """Healthy probes (with `end_s`, as recorded now) every `every_s` to `end`, plus one stuck (start, return)."""
    out = []
    t = 0.0
    while t < end:
        out.append({**sample(round(t, 2)), "end_s": round(t + 0.05, 2)})
        t += every_s
    if stuck is not None:
        # readiness hung until the client gave up: no status, no task, returned at stuck[1]
        hung = {**sample(stuck[0], ready=None, latency_s=None), "id": None, "state": None, "submit": None}
        out.append({**hung, "error": "TimeoutError: timed out", "end_s": stuck[1]})
    return out


def test_a_probe_stuck_in_flight_breaks_the_streak_it_overlaps() -> None:
    """A probe hung from 3.1 s to 6.0 s breaks the streak until it returned: no probe started before 6 s is in it."""
    # Judged at its start only (the old rule), probes 3.25-7.25 s would be a 4 s streak, recovered at 3.3 s.
    found = recovery(probes(7.5, stuck=(3.1, 6.0)), 2.0, 2.0, **BOUNDS)
    assert found["impact_s"] == pytest.approx(1.1)
    assert found["recovered_at_s"] is None
    assert found["streak_s"] == pytest.approx(1.0)  # 6.25 s to 7.25 s, short of stable_s


def test_a_probe_stuck_in_flight_moves_recovery_to_after_its_return() -> None:
    """With observation going on, health is back at the first probe started after the stuck one returned."""
    found = recovery(probes(12.0, stuck=(3.1, 6.0)), 2.0, 2.0, **BOUNDS)
    assert found["recovered_at_s"] == pytest.approx(6.3)
    assert found["recovery_from_removal_s"] == pytest.approx(4.3)


def test_a_probe_started_before_the_fault_and_stuck_across_it_counts() -> None:
    """A probe launched just before injection and hung past it is evidence of the fault: recovery is not instant."""
    found = recovery(probes(12.0, stuck=(1.9, 5.0)), 2.0, 2.0, **BOUNDS)
    assert found["impact_s"] is None  # no probe started after the injection was unhealthy
    assert found["recovered_at_s"] == pytest.approx(5.3)
    assert recovery(probes(12.0, stuck=(1.9, 1.95)), 2.0, 2.0, **BOUNDS)["recovery_from_start_s"] == 0.0


def test_a_probe_in_flight_past_the_latency_bound_is_already_unhealthy() -> None:
    """While observing, a probe in flight longer than healthy_latency_s breaks the streak; a young one does not."""
    finished = probes(8.0)
    overdue = recovery(finished, 2.0, 2.0, **BOUNDS, in_flight_since_s=[3.1], now_s=8.0)
    assert overdue["recovered_at_s"] is None
    young = recovery(finished, 2.0, 2.0, **BOUNDS, in_flight_since_s=[7.5], now_s=8.0)
    assert young["recovered_at_s"] == 2.0  # every finished probe healthy: recovered at the injection


def test_samples_recorded_before_end_s_are_judged_at_their_start_as_then() -> None:
    """Old records (no end_s) keep their verdicts: the stuck probe breaks the streak at its start only."""
    old = [{k: v for k, v in s.items() if k != "end_s"} for s in probes(7.5, stuck=(3.1, 6.0))]
    found = recovery(old, 2.0, 2.0, **BOUNDS)
    assert found["recovered_at_s"] == pytest.approx(3.3)


def test_ledger_counts_lost_failed_unfinished_and_duplicates_by_id() -> None:
    """404 is lost, failed and still-queued are not completed, completions above one are duplicates."""
    finals: dict[str, dict[str, Any]] = {
        "a": {"http": 200, "state": "completed", "completions": 1},
        "b": {"http": 404, "state": None, "completions": None},
        "c": {"http": 200, "state": "failed", "completions": 0},
        "d": {"http": 200, "state": "queued", "completions": 0},
        "e": {"http": 200, "state": "completed", "completions": 3},
    }
    counts = reconcile_counts(["a", "b", "c", "d", "e", "f"], finals, TASKS)
    assert counts["completed"] == ["a", "e"]
    assert counts["lost"] == ["b"]
    assert counts["failed"] == ["c"]
    assert counts["unfinished"] == ["d"]
    assert counts["unreadable"] == ["f"]
    assert counts["duplicated_by_field"] == 2


def test_counter_sum_adds_every_labelled_sample() -> None:
    """The completion counter is summed over its labels, with or without the _total suffix."""
    lines = ['x_total{kind="a"} 3.0', 'x_total{kind="b"} 4', "x_created 17"]
    assert counter_sum(lines, "x") == 7.0
    assert counter_sum([], "x") is None


def whole_tree(restored_at: float = 2.4, end: float = 12.0) -> list[dict[str, Any]]:
    """Process-tree counts: workers 1 and 5 before the kill of pid 1 at 2.0 s, pid 7 replacing it from `restored_at`."""
    tree = [{"t_s": 1.0, "roles": {"worker": [1, 5]}}, {"t_s": 2.2, "roles": {"worker": [5]}}]
    t = restored_at
    while t <= end:
        tree.append({"t_s": round(t, 3), "roles": {"worker": [5, 7]}})
        t += 0.5
    return tree


def burst(t0: float, window_s: float, size: int = 10) -> dict[str, Any]:
    """A capacity burst of `size` units submitted at `t0` completing evenly over `window_s`."""
    done = {f"b{t0}-{n}": [round(t0 + window_s * (n + 1) / size, 3), "completed"] for n in range(size)}
    return {"t0_s": t0, "size": size, "ids": [], "rejected": 0, "done": done, "end_s": t0 + window_s, "unfinished": 0}


def record(samples: list[dict[str, Any]], finals: dict[str, Any], metric: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    """A stored repetition record around the given probe samples and read-backs."""
    return {
        "experiment": "X",
        "settings": {"readiness": "/readyz", "probe_interval_s": 0.25, "fault_s": 1, "budget_s": 10},
        "tasks": TASKS,
        "steady_before": {"met": True, "samples": []},
        "fault": {"injected_at_s": 2.0, "removed_at_s": 3.0, "inject": {"pid": 1}, "remove": {}},
        "work": [{"t_s": 2.5, "end_s": 2.6, "status": None, "id": None, "error": "refused"}],
        "samples": samples,
        "steady_after": {"met": True, "samples": []},
        "outcome": "ran",
        "tree": whole_tree(),
        "capacity": {"before": burst(0.5, 1.0), "after": burst(20.0, 1.0), "metrics_before": [], "metrics_after": []},
        "reconciliation": {
            "finals": finals,
            "metric": {
                "name": "c",
                "before_lines": [f"c_total {metric[0]}"],
                "after_lines": [f"c_total {metric[1]}"],
                "extra_completed": 0,
            },
        },
    }


def healthy_record(completions: int = 1, counted: int | None = None) -> dict[str, Any]:
    """A record whose probes all completed; `completions` per task, the counter counting `counted`."""
    samples = outage(2.0, 3.0)
    finals = {s["id"]: {"http": 200, "state": "completed", "completions": completions} for s in samples}
    return record(samples, finals, (0, len(finals) if counted is None else counted))


def experiment() -> Experiment:
    """A kill experiment."""
    return Experiment.model_validate(
        {"id": "X", "title": "kill", "requirement": "C1", "fault": {"type": "kill", "pid_file": "p"}}
    )


def test_judge_passes_a_recovered_lossless_experiment_and_recounts_from_the_record() -> None:
    """A recovered repetition with every id completed once passes; the failed submission is counted."""
    judged = judge_experiment(experiment(), {"status": "ran", "repetitions": 1}, [healthy_record()], ChaosPolicy())
    assert judged["status"] == "PASS", judged["reasons"]
    assert judged["failed_requests"] == 1
    assert judged["duplicated"] == 0
    assert "X: recovered in at most " in judged["reasons"][-1]


def test_a_fault_the_probes_never_saw_is_said_so_not_called_a_recovery() -> None:
    """Every probe of the fault window healthy: the reason says no outage was seen by how many probes (#25)."""
    samples = outage(99.0, 99.0)
    finals = {s["id"]: {"http": 200, "state": "completed", "completions": 1} for s in samples}
    judged = judge_experiment(
        experiment(), {"status": "ran", "repetitions": 1}, [record(samples, finals, (0, len(finals)))], ChaosPolicy()
    )
    assert judged["status"] == "PASS", judged["reasons"]
    assert "X: no outage seen: 5 probe(s) every 250 ms (as recorded) during the fault window" in judged["reasons"][-1]
    assert "recovered in" not in judged["reasons"][-1]


def test_judge_fails_on_duplicates_seen_by_the_counter_only() -> None:
    """More completions counted than ids completed is a duplicate even when the per-task field says one."""
    rec = healthy_record(counted=60)
    rec["tasks"] = {**TASKS, "completions_field": ""}
    judged = judge_experiment(experiment(), {"status": "ran", "repetitions": 1}, [rec], ChaosPolicy())
    assert judged["status"] == "FAIL"
    assert any("duplicate" in reason for reason in judged["reasons"])


def test_a_submission_whose_answer_was_lost_is_not_a_duplicate() -> None:
    """The submitted counter shows one task accepted behind a timed-out answer; its completion is not a duplicate."""
    rec = healthy_record(counted=None)
    rec["tasks"] = {**TASKS, "completions_field": ""}
    accepted = len(rec["reconciliation"]["finals"])
    rec["reconciliation"]["metric"]["after_lines"] = [f"c_total {accepted + 1}"]
    judged = judge_experiment(experiment(), {"status": "ran", "repetitions": 1}, [rec], ChaosPolicy())
    assert judged["status"] == "FAIL"
    rec["reconciliation"]["metric"].update(
        submitted_name="s", submitted_before_lines=["s_total 0"], submitted_after_lines=[f"s_total {accepted + 1}"]
    )
    judged = judge_experiment(experiment(), {"status": "ran", "repetitions": 1}, [rec], ChaosPolicy())
    assert judged["status"] == "PASS", judged["reasons"]
    assert judged["unacknowledged"] == 1


def test_judge_is_inconclusive_when_duplicates_are_not_observable() -> None:
    """Without a per-task count or a completion counter, G4 cannot claim 'no duplicates'."""
    rec = healthy_record()
    rec["tasks"] = {**TASKS, "completions_field": ""}
    rec["reconciliation"]["metric"]["name"] = ""
    judged = judge_experiment(experiment(), {"status": "ran", "repetitions": 1}, [rec], ChaosPolicy())
    assert judged["status"] == "INCONCLUSIVE"


def test_judge_not_run_and_missing_repetitions() -> None:
    """A not-run experiment is NOT_RUN with its reason; fewer stored repetitions than planned is INCONCLUSIVE."""
    not_run = judge_experiment(
        experiment(), {"status": "not_run", "reason": "no root", "repetitions": 1}, [], ChaosPolicy()
    )
    assert not_run["status"] == "NOT_RUN"
    assert "no root" in not_run["reasons"][0]
    short = judge_experiment(experiment(), {"status": "ran", "repetitions": 3}, [healthy_record()], ChaosPolicy())
    assert short["status"] == "INCONCLUSIVE"


def test_timeline_is_deterministic_and_journal_has_the_chaos_toolkit_keys() -> None:
    """Same record, same SVG bytes; the journal carries the chaostoolkit-lib journal keys."""
    rec = healthy_record()
    found = analyse(rec, 1.0, 2.0)
    assert render("t", rec, found, 1.0) == render("t", rec, found, 1.0)
    near = render("t", rec, found, 1.0, budget_s=1.0)
    assert "budget 1 s</text>" in near  # the deadline (removal + budget) drawn as a dashed line
    assert "stroke-dasharray" in near
    far = render("t", rec, found, 1.0, budget_s=600.0)
    assert "budget 600 s after removal: beyond the chart" in far
    journal = build_journal(experiment(), rec, found, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    for key in (
        "chaoslib-version",
        "experiment",
        "start",
        "end",
        "duration",
        "status",
        "deviated",
        "steady_states",
        "run",
        "rollbacks",
    ):
        assert key in journal
    assert journal["status"] == "completed"
    assert journal["deviated"] is False
    assert set(journal["experiment"]) >= {"version", "title", "description", "steady-state-hypothesis", "method"}


def test_policy_rejects_unknown_work_and_duplicate_ids() -> None:
    """An experiment naming a body that does not exist, or two experiments with one id, is a config error."""
    exp = {"id": "X", "title": "t", "requirement": "C1", "fault": {"type": "kill", "pid_file": "p"}}
    with pytest.raises(ValidationError):
        ChaosPolicy.model_validate({"experiments": [{**exp, "work": "nope"}]})
    with pytest.raises(ValidationError):
        ChaosPolicy.model_validate({"experiments": [exp, exp]})
    with pytest.raises(ValidationError):
        ChaosPolicy.model_validate({"probe_interval_s": 0.5})
