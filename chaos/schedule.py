"""Which chaos experiments may run at the same time, and a runner that keeps to it.

Every experiment runs on its own instance (its own processes, data dir, dependency processes and
proxy), so most faults touch nothing another experiment uses. Some touch something the whole run
shares: the one Toxiproxy server that carries every instance's dependency links, the machine's mount
table (a tmpfs mount, a private mount namespace copied from it). An injector names those as
resources (`Injector.resources`); two experiments holding a common resource never overlap, and an
experiment holding `EXCLUSIVE` ([[gates.G4.experiments]] exclusive = true) overlaps with none.

`run_scheduled` starts experiments in declared order, each as soon as a slot is free and nothing
running conflicts with it (a conflicting one waits and a later one may go first), and records when
each ran; `planned_makespan_s` replays the same rule on estimated durations for the gate's plan.
`LiveInstances` tells a fault window which other instances were up during it (G6's run-wide
Prometheus gets that with the window: an alert series without an instance label is then ambiguous).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.runner import ChaosCancelledError

#: The resource of an experiment that must run with no other experiment at the same time.
EXCLUSIVE = "*"
#: How often the scheduler looks at the cancel flag while every slot is busy.
CANCEL_POLL_S = 0.5


@dataclass(frozen=True)
class Job:
    """One experiment to schedule: its id and the shared resources it holds while it runs."""

    id: str
    resources: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Span:
    """When one experiment ran (unix seconds, from its instance's start to its stop) and what it held."""

    id: str
    start: float
    end: float
    resources: tuple[str, ...]


def conflicts(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two experiments holding these resources may not overlap."""
    return EXCLUSIVE in a or EXCLUSIVE in b or bool(a & b)


def next_startable(waiting: list[Job], running: list[Job], concurrency: int) -> Job | None:
    """Pure: the first waiting job that may start beside the running ones, or None."""
    if len(running) >= concurrency:
        return None
    for job in waiting:
        if not any(conflicts(job.resources, other.resources) for other in running):
            return job
    return None


def planned_makespan_s(jobs: list[Job], durations_s: dict[str, float], concurrency: int) -> float:
    """Pure: how long `run_scheduled` takes if each job lasts its estimated duration."""
    waiting, now = list(jobs), 0.0
    running: list[tuple[float, Job]] = []
    while waiting or running:
        job = next_startable(waiting, [j for _, j in running], concurrency)
        if job is not None:
            waiting.remove(job)
            running.append((now + durations_s[job.id], job))
            continue
        running.sort(key=lambda item: item[0])
        now, _done = running.pop(0)
    return now


def run_scheduled(
    jobs: list[Job], concurrency: int, work: Callable[[Job], None], cancel: threading.Event, spans: list[Span]
) -> None:
    """Run `work(job)` for every job on up to `concurrency` threads, never overlapping conflicting jobs.

    Each finished job's span is appended to `spans` (also when it raised). At the first exception no
    further job starts; the running ones are waited for and the first exception is raised. A cancel
    stops new starts too (ChaosCancelledError if jobs were left).
    """
    errors: list[BaseException] = []
    waiting = list(jobs)
    running: list[Job] = []
    cond = threading.Condition()

    def body(job: Job) -> None:
        start = time.time()
        try:
            work(job)
        except BaseException as exc:  # handed to the scheduling thread, which re-raises it
            with cond:
                errors.append(exc)
        finally:
            with cond:
                spans.append(Span(job.id, start, time.time(), tuple(sorted(job.resources))))
                running.remove(job)
                cond.notify_all()

    threads: list[threading.Thread] = []
    with cond:
        while waiting and not errors and not cancel.is_set():
            job = next_startable(waiting, running, max(1, concurrency))
            if job is None:
                cond.wait(CANCEL_POLL_S)
                continue
            waiting.remove(job)
            running.append(job)
            thread = threading.Thread(target=body, args=(job,), name=f"chaos-{job.id}", daemon=True)
            threads.append(thread)
            thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    if waiting:
        msg = f"cancelled before {len(waiting)} experiment(s) could start: {', '.join(j.id for j in waiting)}"
        raise ChaosCancelledError(msg)


class LiveInstances:
    """Which experiments' instances are up when (thread-safe): a fault window's record names its neighbours."""

    def __init__(self) -> None:
        """Nothing up yet."""
        self._lock = threading.Lock()
        self._spans: dict[str, tuple[str, float, float | None]] = {}

    def up(self, exp_id: str, address: str) -> None:
        """An experiment's instance is up from now."""
        with self._lock:
            self._spans[exp_id] = (address, time.time(), None)

    def down(self, exp_id: str) -> None:
        """An experiment's instance is stopped from now."""
        with self._lock:
            address, start, _end = self._spans[exp_id]
            self._spans[exp_id] = (address, start, time.time())

    def during(self, start: float, end: float, *, besides: str) -> list[str]:
        """Addresses of the other experiments' instances up at some time in [start, end], sorted."""
        with self._lock:
            spans = dict(self._spans)
        return sorted(
            address
            for exp_id, (address, up_at, down_at) in spans.items()
            if exp_id != besides and up_at <= end and (down_at is None or down_at >= start)
        )
