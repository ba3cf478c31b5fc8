"""The experiment engine: steady state, background work, fault, probes, rollback, steady state, reconciliation.

One repetition, in order (the Chaos Toolkit shape, with the rollback in a `finally`):
1. steady-state hypothesis before: `steady_probes` consecutive healthy probes within `steady_timeout_s`;
   not met → the repetition is inconclusive and the fault is never applied;
2. the completion counter is read (nothing of this repetition is in flight yet);
3. the work stream and the ≤250 ms prober start; after `baseline_s` the fault is injected, held for the
   fault window, and removed in a `finally` (also on cancel or crash);
4. observation continues until the probes show a stable recovery or the budget is spent; then
   the work accepted so far is waited for (bounded, `BACKLOG_WAIT_S`) and the
   post-recovery burst measures throughput;
5. steady-state hypothesis after; every accepted id is read back until terminal (`drain_s`); the
   counter is read again.
Everything is recorded raw; judging is `chaos.recovery`'s job.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from chaos.capacity import (
    TreeSampler,
    burst_rate,
    capacity_restore,
    measure_burst,
    metric_disagreements,
    read_role_metrics,
)
from chaos.client import TaskClient
from chaos.experiments import ChaosPolicy, Experiment
from chaos.faults import Injector
from chaos.instance import ChaosInstance
from chaos.ledger import WorkStream, reconcile
from chaos.probe import Prober, healthy, probe_once
from chaos.recovery import accepted_ids, recovery
from harness.errors import HarnessError

#: Pause before a confirming burst (a reference ci run saw 77 % then, at once, still short after C2-upstream-down).
CONFIRM_PAUSE_S = 2.0
#: After recovery, the most the harness waits for work accepted before it (the backlog the fault delayed) to
#: finish before the post-recovery burst, so the burst measures restored capacity, not a queue of delayed work.
BACKLOG_WAIT_S = 20.0
#: The least time a post-recovery burst is given, however fast the pre-fault one was.
MIN_AFTER_BURST_S = 3.0
#: After recovery, how long the target's own role counts may take to agree with the process tree.
METRIC_SETTLE_S = 5.0


class ChaosCancelledError(HarnessError):
    """The gate was cancelled (timeout or interrupt) in the middle of an experiment."""


class Clock:
    """Seconds since the repetition started (monotonic)."""

    def __init__(self) -> None:
        """Start now."""
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        """Seconds elapsed."""
        return time.monotonic() - self._t0


def pause(cancel: threading.Event, seconds: float) -> None:
    """Sleep, or raise as soon as the gate is cancelled."""
    if cancel.wait(max(0.0, seconds)):
        raise ChaosCancelledError("the chaos gate was cancelled")


def steady_state(
    client: TaskClient, readiness: str, policy: ChaosPolicy, clock: Callable[[], float], cancel: threading.Event
) -> dict[str, Any]:
    """Probe one at a time until `steady_probes` in a row are healthy, or `steady_timeout_s` runs out; the samples."""
    completed = set(policy.tasks.completed)
    samples: list[dict[str, Any]] = []
    streak = 0
    deadline = time.monotonic() + policy.steady_timeout_s
    while streak < policy.steady_probes and time.monotonic() < deadline:
        sample = probe_once(client, readiness, policy.healthy_latency_s, clock)
        samples.append(sample)
        streak = streak + 1 if healthy(sample, completed, policy.healthy_latency_s) else 0
        if streak < policy.steady_probes:  # the hypothesis holds: no pause after its last probe
            pause(cancel, policy.probe_interval_s)
    return {"met": streak >= policy.steady_probes, "samples": samples}


#: How often a held prober is looked at while the probes in flight finish.
SETTLE_POLL_S = 0.02


def confirmed_recovery(
    prober: Prober,
    recovered: Callable[[], bool],
    policy: ChaosPolicy,
    clock: Callable[[], float],
    cancel: threading.Event,
) -> bool:
    """Hold the prober until every probe in flight has returned (or one is overdue), then ask `recovered` again.

    A probe in flight may still turn out unhealthy and break the streak just seen; once observation
    stops the record holds it anyway, so the recovery is only taken on evidence with nothing pending.
    At most about `healthy_latency_s` passes without a new probe: an overdue probe ends the wait (it is
    unhealthy already). Not confirmed (a probe still pending, or the complete evidence shows no stable
    recovery): the prober is resumed and the caller goes on observing.
    """
    prober.hold()
    limit = clock() + policy.healthy_latency_s + 3 * policy.tasks.timeout_s + 1.0
    while pending := prober.in_flight():
        now = clock()
        if now >= limit or any(t is not None and now - t > policy.healthy_latency_s for t in pending):
            break
        pause(cancel, SETTLE_POLL_S)
    if not pending and recovered():
        return True
    prober.resume()
    return False


@contextmanager
def watched_work(
    client: TaskClient, readiness: str, policy: ChaosPolicy, clock: Callable[[], float], record: dict[str, Any]
) -> Iterator[tuple[WorkStream, Prober]]:
    """The background work stream and the prober for the block; both stopped after, into record work/samples."""
    stream = WorkStream(client, policy.work_rate_per_s, clock)
    prober = Prober(client, readiness, policy.probe_interval_s, policy.healthy_latency_s, clock)
    stream.start()
    prober.start()
    try:
        yield stream, prober
    finally:
        stream.stop()
        prober.stop()
        record["work"] = stream.attempts
        record["samples"] = prober.snapshot()


class Repetition:
    """One run of one experiment against a running instance."""

    def __init__(
        self,
        inst: ChaosInstance,
        policy: ChaosPolicy,
        experiment: Experiment,
        injector: Injector,
        *,
        settings: dict[str, Any],
        cancel: threading.Event,
        moment_s: float = 0.0,
    ) -> None:
        """Bind everything a repetition needs; `settings` holds the paths and mode-dependent durations.

        `moment_s` is this repetition's seeded random delay of the fault beyond the baseline.
        """
        self.inst = inst
        self.policy = policy
        self.exp = experiment
        self.injector = injector
        self.settings = settings
        self.cancel = cancel
        self.clock = Clock()
        self.client = TaskClient(inst.port, policy.tasks, policy.body(experiment))
        self.completed = set(policy.tasks.completed)
        self.moment_s = moment_s
        self.burst_client = TaskClient(inst.port, policy.tasks, policy.capacity_body(experiment))
        self.tree = TreeSampler(inst.service.pid, policy.roles, self.clock)

    def steady_state(self) -> dict[str, Any]:
        """Probe one at a time until `steady_probes` in a row are healthy, or the time allowed runs out."""
        return steady_state(self.client, self.settings["readiness"], self.policy, self.clock, self.cancel)

    def run(self, carried: list[str]) -> dict[str, Any]:
        """Run the repetition; `carried` are ids of earlier repetitions not yet terminal. The raw record."""
        metric_name = self.policy.tasks.completions_metric
        carried_done = self._completed_of(carried)
        submitted_name = self.policy.tasks.submissions_metric
        before, before_lines = self.client.metric_total(self.settings["metrics"], metric_name)
        _sub_before, submitted_before = self.client.metric_total(self.settings["metrics"], submitted_name)
        record: dict[str, Any] = {
            "experiment": self.exp.id,
            "settings": self.settings,
            "tasks": self.policy.tasks.model_dump(mode="json", include={"completed", "failed", "completions_field"}),
            "steady_before": self.steady_state(),
            "fault": {"type": self.exp.fault.type, "injected_at_s": None, "removed_at_s": None},
            "work": [],
            "samples": [],
            "steady_after": {"met": False, "samples": []},
            "outcome": "ran",
            "moment_s": round(self.moment_s, 4),
            "capacity": {"before": None, "after": None, "metrics_before": [], "metrics_after": []},
            "tree": [],
        }
        if not record["steady_before"]["met"]:
            record["outcome"] = "inconclusive"
            record["reason"] = (
                f"steady state not met before the fault: {self.policy.steady_probes} healthy probes in a row "
                f"not reached within {self.policy.steady_timeout_s:g} s; the fault was not applied"
            )
        else:
            self.tree.start()
            try:
                self._capacity(record["capacity"], "before")
                self._method(record)
                record["capacity"]["backlog"] = self._await_backlog(record)
                self._capacity(record["capacity"], "after")
            finally:
                self.tree.stop()
                record["tree"] = self.tree.snapshot()
            record["steady_after"] = self.steady_state()
        record["reconciliation"] = self._reconcile(record, carried, carried_done)
        after, after_lines = self.client.metric_total(self.settings["metrics"], metric_name)
        _sub_after, submitted_after = self.client.metric_total(self.settings["metrics"], submitted_name)
        record["reconciliation"]["metric"].update(
            name=metric_name if before is not None and after is not None else "",
            configured=metric_name,
            before_lines=before_lines,
            after_lines=after_lines,
            submitted_name=submitted_name,
            submitted_before_lines=submitted_before,
            submitted_after_lines=submitted_after,
        )
        return record

    def _method(self, record: dict[str, Any]) -> None:
        """Work stream and probes around the fault; the rollback always runs."""
        with watched_work(self.client, self.settings["readiness"], self.policy, self.clock, record) as (_, prober):
            pause(self.cancel, self.policy.baseline_s + self.moment_s)
            self._fault(record["fault"])
            if record["fault"].get("error") is None:
                self._observe(prober, record["fault"])

    def _fault(self, fault: dict[str, Any]) -> None:
        """Inject, hold for the window, remove (in a finally); timings and facts into `fault`."""
        try:
            fault["injected_at_s"] = round(self.clock(), 4)
            fault["inject"] = self.injector.inject(self.inst)
            if not self.injector.instantaneous:
                pause(self.cancel, self.settings["fault_s"])
        except ChaosCancelledError:
            raise
        except Exception as exc:
            fault["error"] = f"{type(exc).__name__}: {exc}"
            fault["traceback"] = traceback.format_exc(limit=5)
        finally:
            fault["removed_at_s"] = round(self.clock(), 4)
            try:
                fault["remove"] = self.injector.remove(self.inst)
            except Exception as exc:
                fault["rollback_error"] = f"{type(exc).__name__}: {exc}"

    def _observe(self, prober: Prober, fault: dict[str, Any]) -> None:
        """Keep probing until a stable recovery shows, or the budget (plus the stable time) is spent.

        Checked at the probe cadence: a recovery is seen one probe after it is complete, not up to 250 ms later.
        A recovery seen while probes are in flight is confirmed on complete evidence (`confirmed_recovery`)
        before observation stops, so the stored record, which has every probe, says the same.
        """
        budget = self.settings["budget_s"]
        deadline = fault["removed_at_s"] + budget + self.policy.stable_s + self.policy.healthy_latency_s + 1.0
        minimum = fault["removed_at_s"] + self.policy.stable_s
        pause(self.cancel, minimum - self.clock())
        while self.clock() < deadline:
            pause(self.cancel, self.policy.probe_interval_s)
            seen = self._recovered(prober, fault) and self._capacity_back(fault)
            if seen and confirmed_recovery(
                prober, lambda: self._recovered(prober, fault), self.policy, self.clock, self.cancel
            ):
                fault["recovery_seen_s"] = round(self.clock(), 4)
                return

    def _recovered(self, prober: Prober, fault: dict[str, Any]) -> bool:
        """Whether the probes so far, those still in flight included, show a stable recovery."""
        samples, in_flight = prober.view()
        found = recovery(
            samples,
            fault["injected_at_s"],
            fault["removed_at_s"],
            completed=self.completed,
            healthy_latency_s=self.policy.healthy_latency_s,
            stable_s=self.policy.stable_s,
            in_flight_since_s=[t for t in in_flight if t is not None],
            now_s=self.clock(),
        )
        return found["recovered_at_s"] is not None

    def _capacity_back(self, fault: dict[str, Any]) -> bool:
        """Whether every declared role has its pre-fault count again (True when no role is declared)."""
        if not self.policy.roles:
            return True
        return capacity_restore(self.tree.snapshot(), fault, self.policy.stable_s)["restored_at_s"] is not None

    def _capacity(self, capacity: dict[str, Any], when: str) -> None:
        """The throughput burst, then the target's own role counts beside the tree's (after: until they agree)."""
        spec = self.policy.capacity
        capacity[when] = measure_burst(
            self.burst_client, spec.burst, self._burst_timeout_s(capacity, when), self.clock, self.cancel
        )
        if when == "after" and _short_of(capacity, self.completed, spec.min_fraction):
            # One confirming burst, after a pause that lets the first burst's tail and any work the fault
            # delayed finish: a target really short of capacity is short again, a busy moment is not.
            pause(self.cancel, CONFIRM_PAUSE_S)
            capacity["after_confirm"] = measure_burst(
                self.burst_client, spec.burst, self._burst_timeout_s(capacity, when), self.clock, self.cancel
            )
        if not any(role.metric for role in self.policy.roles.values()):
            return
        reads: list[dict[str, Any]] = capacity[f"metrics_{when}"]
        deadline = time.monotonic() + (METRIC_SETTLE_S if when == "after" else 0.0)
        while True:
            roles = self.tree.sample()["roles"]
            reads.append({"t_s": round(self.clock(), 4), "roles": roles, "metrics": self._role_metrics()})
            if not metric_disagreements(reads) or time.monotonic() >= deadline:
                return
            pause(self.cancel, 0.5)

    def _await_backlog(self, record: dict[str, Any]) -> dict[str, Any]:
        """Wait (bounded) until the work accepted so far in this repetition is terminal; what was still open.

        A backlog that does not drain is left for the burst and the reconciliation to judge: the burst then
        competes with it and comes out short, as it should for a target whose capacity did not come back.
        """
        ids = accepted_ids(record)
        started = self.clock()
        if record["fault"].get("recovery_seen_s") is None:  # not back: nothing to wait for, the burst shows it
            return {"ids": len(ids), "open": None, "waited_s": 0.0, "skipped": "no recovery seen"}
        finals = reconcile(
            self.client, ids, drain_s=min(BACKLOG_WAIT_S, self.policy.drain_s), cancel=self.cancel, clock=self.clock
        )
        still = [i for i in ids if not self.client.terminal(finals.get(i, {}).get("state"))]
        return {"ids": len(ids), "open": len(still), "waited_s": round(self.clock() - started, 3)}

    def _burst_timeout_s(self, capacity: dict[str, Any], when: str) -> float:
        """Time allowed for a burst: after recovery, twice what a burst at the lowest passing rate would take.

        A slower burst FAILs whatever the rest does, so waiting longer only slows the gate down.
        """
        spec = self.policy.capacity
        before = capacity.get("before")
        if when == "before" or not before or before.get("unfinished"):
            return spec.timeout_s
        window = max(before["end_s"] - before["t0_s"], 0.1)
        return float(min(spec.timeout_s, max(MIN_AFTER_BURST_S, 2 * window / spec.min_fraction)))

    def _role_metrics(self) -> dict[str, float | None]:
        """The target's published role counts."""
        return read_role_metrics(self.client, self.settings["metrics"], self.policy.roles)

    def _completed_of(self, ids: list[str]) -> set[str]:
        """Which of these ids are completed right now."""
        done = set()
        for task_id in ids:
            _answer, state = self.client.state(task_id)
            if state in self.completed:
                done.add(task_id)
        return done

    def _reconcile(self, record: dict[str, Any], carried: list[str], carried_done: set[str]) -> dict[str, Any]:
        """Read every accepted id back (and the carried ones), bounded by the drain time."""
        ids = accepted_ids(record)
        finals = reconcile(
            self.client, ids + carried, drain_s=self.policy.drain_s, cancel=self.cancel, clock=self.clock
        )
        carried_now = {i for i in carried if finals.get(i, {}).get("state") in self.completed}
        return {
            "finals": {i: finals[i] for i in ids if i in finals},
            "drain_s": self.policy.drain_s,
            "carried": len(carried),
            "metric": {"extra_completed": len(carried_now - carried_done)},
            "open_ids": [i for i in ids + carried if not self.client.terminal(finals.get(i, {}).get("state"))],
        }


def _short_of(capacity: dict[str, Any], completed: set[str], min_fraction: float) -> bool:
    """Whether the post-recovery burst completed below `min_fraction` of the pre-fault rate."""
    before, after = burst_rate(capacity.get("before"), completed), burst_rate(capacity.get("after"), completed)
    if not before or not after or not before["rate_per_s"]:
        return False
    return bool(after["rate_per_s"] < min_fraction * before["rate_per_s"])
