"""The recovery prober's view of probes in flight and the runner's confirmation on complete evidence (no target)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from chaos.client import Answer, TaskClient
from chaos.experiments import ChaosPolicy, TaskApi
from chaos.probe import Prober
from chaos.recovery import recovery
from chaos.runner import Clock, confirmed_recovery

COMPLETED = {"completed"}


class SlowTarget(TaskClient):
    """A TaskClient stand-in answering in-process: readiness takes `delay_s`, and the first `hang` probes block."""

    def __init__(self, delay_s: float = 0.0, hang: int = 0) -> None:
        """No network: every task completes at once; `release` ends the hang."""
        super().__init__(0, TaskApi(), {})
        self.delay_s = delay_s
        self.hang = hang
        self.release = threading.Event()
        self._calls = 0
        self._lock = threading.Lock()

    def readiness(self, path: str) -> Answer:
        """200 after the delay; the first `hang` calls wait for `release` (at most 10 s)."""
        del path
        with self._lock:
            n = self._calls
            self._calls += 1
        if n < self.hang:
            self.release.wait(10)
        time.sleep(self.delay_s)
        return Answer(status=200)

    def submit(self) -> tuple[Answer, str | None]:
        """Accepted at once."""
        return Answer(status=201), f"task-{time.monotonic_ns()}"

    def state(self, task_id: str) -> tuple[Answer, str | None]:
        """Completed at once."""
        del task_id
        return Answer(status=200), "completed"


def until(test: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (bounded) until test() holds."""
    deadline = time.monotonic() + timeout_s
    while not test():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def launched(prober: Prober) -> int:
    """Probes launched so far: finished plus in flight, read at one moment."""
    samples, in_flight = prober.view()
    return len(samples) + len(in_flight)


def recovered_now(prober: Prober, clock: Clock, bound_s: float) -> Callable[[], bool]:
    """What the runner asks: a stable recovery on the finished probes, those in flight counted."""

    def ask() -> bool:
        samples, in_flight = prober.view()
        found = recovery(
            samples,
            0.0,
            0.0,
            completed=COMPLETED,
            healthy_latency_s=bound_s,
            stable_s=0.0,
            in_flight_since_s=[t for t in in_flight if t is not None],
            now_s=clock(),
        )
        return found["recovered_at_s"] is not None

    return ask


def test_a_hung_probe_is_in_flight_with_its_start_not_among_the_samples() -> None:
    """The first probe hangs: later ones finish, the hung one is listed in flight since before them, then recorded."""
    clock = Clock()
    target = SlowTarget(hang=1)
    prober = Prober(target, "/readyz", 0.05, 1.0, clock)
    prober.start()
    try:
        until(lambda: len(prober.snapshot()) >= 3)
        samples, in_flight = prober.view()
        (started,) = [t for t in in_flight if t is not None and t < samples[0]["t_s"]]
        assert all(s["t_s"] > started for s in samples)
        assert all(s["end_s"] >= s["done_s"] >= s["t_s"] for s in samples)
    finally:
        target.release.set()
        prober.stop()
    hung = prober.snapshot()[0]
    assert hung["t_s"] >= started
    assert hung["end_s"] > samples[-1]["t_s"]  # it returned after every probe seen above had started


def test_a_held_prober_launches_nothing_until_resumed() -> None:
    """hold() stops new launches (the count of launched probes stays put); resume() starts them again."""
    prober = Prober(SlowTarget(), "/readyz", 0.05, 1.0, Clock())
    prober.start()
    try:
        until(lambda: len(prober.snapshot()) >= 2)
        prober.hold()
        time.sleep(0.1)
        held = launched(prober)
        time.sleep(0.3)
        assert launched(prober) == held
        prober.resume()
        until(lambda: launched(prober) >= held + 2)
    finally:
        prober.stop()


def test_a_recovery_seen_with_probes_in_flight_is_taken_once_they_returned_healthy() -> None:
    """Pending young probes are waited for; healthy, the recovery is confirmed and the prober stays held."""
    clock = Clock()
    policy = ChaosPolicy(healthy_latency_s=1.0)
    prober = Prober(SlowTarget(delay_s=0.05), "/readyz", 0.05, 1.0, clock)
    prober.start()
    try:
        until(lambda: len(prober.snapshot()) >= 3)
        ask = recovered_now(prober, clock, 1.0)
        assert confirmed_recovery(prober, ask, policy, clock, threading.Event())
        assert prober.in_flight() == []
        held = launched(prober)
        time.sleep(0.2)
        assert launched(prober) == held  # still held: the record ends with what was judged
    finally:
        prober.stop()
    assert ask()


def test_a_probe_that_goes_overdue_while_confirming_is_no_recovery_and_probing_resumes() -> None:
    """A probe hung past the latency bound ends the wait: not confirmed, and the prober launches again."""
    clock = Clock()
    policy = ChaosPolicy(healthy_latency_s=1.0)
    target = SlowTarget(hang=1)
    prober = Prober(target, "/readyz", 0.05, 1.0, clock)
    prober.start()
    try:
        until(lambda: len(prober.snapshot()) >= 3)
        ask = recovered_now(prober, clock, 1.0)
        began = time.monotonic()
        assert not confirmed_recovery(prober, ask, policy, clock, threading.Event())
        assert time.monotonic() - began < 3.0  # the overdue probe ended the wait, not its 10 s hang
        before = launched(prober)
        until(lambda: launched(prober) >= before + 2)
        assert not ask()  # still in flight and overdue
    finally:
        target.release.set()
        prober.stop()
    samples = prober.snapshot()
    assert not recovery(samples, 0.0, 0.0, completed=COMPLETED, healthy_latency_s=1.0, stable_s=5.0)["recovered_at_s"]
