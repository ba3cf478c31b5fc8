"""G4's experiment scheduling: which experiments may overlap, the runner that keeps to it, the plan."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from chaos.experiments import ChaosPolicy
from chaos.faults import injector_for
from chaos.faults.proxy import PROXY_SERVER
from chaos.instance import MOUNTS
from chaos.runner import ChaosCancelledError
from chaos.schedule import (
    EXCLUSIVE,
    Job,
    LiveInstances,
    Span,
    conflicts,
    next_startable,
    planned_makespan_s,
    run_scheduled,
)
from gates.chaos import ChaosGate, job_of
from harness.config import load_config

REPO = Path(__file__).resolve().parents[2]


def guardian_policy(**changes: object) -> ChaosPolicy:
    """The reference target's G4 policy, with some fields changed."""
    policy = load_config(REPO / "examples" / "guardian").policy("G4")
    assert isinstance(policy, ChaosPolicy)
    return policy.model_copy(update=changes)


def overlap(a: Span, b: Span) -> bool:
    """Whether two recorded spans share any moment."""
    return a.start < b.end and b.start < a.end


def test_conflicts_by_shared_resource_or_exclusive() -> None:
    """Jobs sharing a resource conflict, disjoint ones do not, an exclusive one conflicts with anything."""
    assert conflicts(frozenset({"a"}), frozenset({"a", "b"}))
    assert not conflicts(frozenset({"a"}), frozenset({"b"}))
    assert not conflicts(frozenset(), frozenset())
    assert conflicts(frozenset({EXCLUSIVE}), frozenset())
    assert conflicts(frozenset(), frozenset({EXCLUSIVE}))


def test_next_startable_skips_a_conflicting_job_and_respects_the_slots() -> None:
    """A job that conflicts with a running one waits while a later, independent one goes first; no slot, no start."""
    proxy, mounts, free = Job("proxy", frozenset({"p"})), Job("mounts", frozenset({"m"})), Job("free")
    running = [Job("other-proxy", frozenset({"p"}))]
    assert next_startable([proxy, mounts, free], running, 2) == mounts
    assert next_startable([proxy, mounts], running, 1) is None
    assert next_startable([Job("alone", frozenset({EXCLUSIVE})), free], running, 2) == free
    assert next_startable([Job("alone", frozenset({EXCLUSIVE}))], [], 2) == Job("alone", frozenset({EXCLUSIVE}))


def test_guardian_faults_declare_what_they_share() -> None:
    """Proxy faults hold the proxy server, tmpfs and namespace faults the mount table; kills, locks, limits nothing."""
    policy = guardian_policy()
    held = {exp.id: job_of(exp, injector_for(exp.fault)).resources for exp in policy.experiments}
    for exp_id in ("C2-upstream-latency", "C2-upstream-down", "C2-upstream-reset", "C2-upstream-timeout"):
        assert held[exp_id] == {PROXY_SERVER}
    assert held["C2-upstream-dns"] == {PROXY_SERVER, MOUNTS}
    assert held["C3-disk-full"] == {MOUNTS}
    assert held["C4-gpu"] == {EXCLUSIVE}
    for exp_id in ("C1-api-kill", "C1-supervisor-kill", "C2-upstream-429", "C3-read-only", "C3-db-lock"):
        assert held[exp_id] == frozenset(), exp_id
    marked = policy.experiments[0].model_copy(update={"exclusive": True})
    assert EXCLUSIVE in job_of(marked, injector_for(marked.fault)).resources


def test_planned_makespan_follows_the_same_rule() -> None:
    """Two independent jobs overlap, two sharing a resource add up, an exclusive one adds its full length."""
    durations = {"a": 10.0, "b": 10.0, "c": 4.0}
    assert planned_makespan_s([Job("a"), Job("b")], durations, 2) == 10.0
    assert planned_makespan_s([Job("a", frozenset({"r"})), Job("b", frozenset({"r"}))], durations, 2) == 20.0
    assert planned_makespan_s([Job("a"), Job("b"), Job("c", frozenset({EXCLUSIVE}))], durations, 2) == 14.0
    assert planned_makespan_s([Job("a"), Job("b")], durations, 1) == 20.0


def test_guardian_plan_is_shorter_with_two_slots() -> None:
    """G4's planned duration on the reference target drops with concurrency 2 and equals the serial sum with 1."""
    gate = ChaosGate()
    serial = gate.planned_duration_s(guardian_policy(concurrency=1), "ci")
    paired = gate.planned_duration_s(guardian_policy(concurrency=2), "ci")
    assert paired < 0.6 * serial


def test_run_scheduled_runs_independent_jobs_at_the_same_time() -> None:
    """Two independent jobs with two slots are both running at once (each waits to see the other start)."""
    both = threading.Barrier(2, timeout=5)

    def work(job: Job) -> None:
        both.wait()

    spans: list[Span] = []
    run_scheduled([Job("a"), Job("b")], 2, work, threading.Event(), spans)
    assert sorted(s.id for s in spans) == ["a", "b"]
    assert overlap(spans[0], spans[1])


def test_run_scheduled_never_overlaps_conflicting_or_exclusive_jobs() -> None:
    """From the recorded spans: jobs sharing a resource, and an exclusive job, never overlap a conflicting one."""
    jobs = [
        Job("p1", frozenset({"proxy"})),
        Job("p2", frozenset({"proxy"})),
        Job("free1"),
        Job("alone", frozenset({EXCLUSIVE})),
        Job("free2"),
        Job("p3", frozenset({"proxy", "mounts"})),
        Job("m1", frozenset({"mounts"})),
    ]
    spans: list[Span] = []
    run_scheduled(jobs, 3, lambda job: time.sleep(0.05), threading.Event(), spans)
    assert sorted(s.id for s in spans) == sorted(j.id for j in jobs)
    by_id = {j.id: j for j in jobs}
    overlapping = 0
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if overlap(a, b):
                overlapping += 1
                assert not conflicts(by_id[a.id].resources, by_id[b.id].resources), (a, b)
    assert overlapping > 0


def test_run_scheduled_raises_the_first_error_and_starts_nothing_after_it() -> None:
    """A job that raises stops further starts; the running ones finish; the error reaches the caller."""
    started: list[str] = []

    def work(job: Job) -> None:
        started.append(job.id)
        if job.id == "bad":
            raise RuntimeError("boom")

    spans: list[Span] = []
    with pytest.raises(RuntimeError, match="boom"):
        run_scheduled([Job("bad"), Job("x", frozenset({EXCLUSIVE})), Job("y")], 1, work, threading.Event(), spans)
    assert started == ["bad"]
    assert [s.id for s in spans] == ["bad"]


def test_run_scheduled_cancelled_before_start_raises() -> None:
    """A cancelled run starts no job and says which were left."""
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ChaosCancelledError, match="2 experiment"):
        run_scheduled([Job("a"), Job("b")], 2, lambda job: None, cancel, [])


def test_live_instances_name_the_neighbours_of_a_window() -> None:
    """An instance up at any moment of a window is listed for it; the window's own and stopped ones are not."""
    live = LiveInstances()
    live.up("old", "127.0.0.1:1")
    live.down("old")
    time.sleep(0.01)
    start = time.time()
    live.up("mine", "127.0.0.1:2")
    live.up("other", "127.0.0.1:3")
    assert live.during(start, time.time(), besides="mine") == ["127.0.0.1:3"]


def test_experiments_sharing_a_resource_start_first_in_declared_order() -> None:
    """The proxy chain goes first (#25 item 4: it sets G4's duration); the rest keep their declared order."""
    from gates.chaos import start_order  # noqa: PLC0415 - the gate module imports the scheduler

    jobs = [
        Job("kill-a"),
        Job("proxy-1", frozenset({"toxiproxy-server"})),
        Job("gpu", frozenset({"*"})),
        Job("proxy-2", frozenset({"toxiproxy-server"})),
        Job("kill-b"),
    ]
    assert [job.id for job in start_order(jobs)] == ["proxy-1", "proxy-2", "kill-a", "gpu", "kill-b"]
