"""Recovery probes: every ≤250 ms, readiness plus a fresh task that must complete end to end.

A health endpoint saying OK is not enough: each probe also submits a fresh unit of work and follows it
until it is terminal (or `healthy_latency_s` passes). A probe is healthy only when readiness answered
2xx and its task completed within that latency, so a target whose health endpoint lies while no work
completes is never counted as recovered.

A sample records when the probe started (`t_s`), when its task was seen terminal (`done_s`) and when
the probe returned (`end_s`, whatever the outcome): an unhealthy probe covers the whole time it was in
flight, so a probe stuck on a hanging target breaks the healthy streak it overlaps (chaos.recovery).
Samples written before `end_s` was recorded lack it and are judged as then (at their start only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chaos.client import TaskClient

#: First and longest pause between a probe's reads of its task: fast completions are seen within ~20 ms,
#: and a task that does not complete costs at most ~10 reads a second.
FOLLOW_FIRST_S = 0.02
FOLLOW_MAX_S = 0.1


def probe_once(client: TaskClient, readiness_path: str, follow_s: float, clock: Callable[[], float]) -> dict[str, Any]:
    """One probe: readiness, then a fresh task followed for at most `follow_s`; times are the clock's."""
    started = clock()
    ready = client.readiness(readiness_path)
    answer, task_id = client.submit()
    sample: dict[str, Any] = {
        "t_s": round(started, 4),
        "ready": ready.status,
        "submit": answer.status,
        "id": task_id,
        "state": None,
        "done_s": None,
        "error": answer.error or ready.error,
        "end_s": None,
    }
    if task_id is not None:
        _follow(client, task_id, follow_s, clock, sample)
    sample["end_s"] = round(clock(), 4)
    return sample


def _follow(
    client: TaskClient, task_id: str, follow_s: float, clock: Callable[[], float], sample: dict[str, Any]
) -> None:
    """Read the probe's task until it is terminal (`done_s` set) or `follow_s` has passed."""
    deadline = time.monotonic() + follow_s
    pause_s = FOLLOW_FIRST_S
    while True:
        _read, state = client.state(task_id)
        sample["state"] = state
        if client.terminal(state):
            sample["done_s"] = round(clock(), 4)
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(pause_s)
        pause_s = min(FOLLOW_MAX_S, pause_s * 1.5)


def healthy(sample: dict[str, Any], completed: set[str], healthy_latency_s: float) -> bool:
    """Pure: readiness 2xx and the probe's task completed within the latency bound."""
    ready = sample.get("ready")
    if ready is None or not 200 <= ready < 300:
        return False
    if sample.get("state") not in completed or sample.get("done_s") is None:
        return False
    return bool(sample["done_s"] - sample["t_s"] <= healthy_latency_s)


class Prober:
    """Launches `probe_once` every `interval_s` on a bounded pool; keeps every sample and knows those in flight."""

    def __init__(
        self,
        client: TaskClient,
        readiness_path: str,
        interval_s: float,
        follow_s: float,
        clock: Callable[[], float],
    ) -> None:
        """Bind to the target; the pool is sized so probes following slow tasks do not delay new ones."""
        self.client = client
        self.readiness_path = readiness_path
        self.interval_s = interval_s
        self.follow_s = follow_s
        self.clock = clock
        self.samples: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # launched and not finished: launch number -> start on the clock (None while queued in the pool)
        self._in_flight: dict[int, float | None] = {}
        self._launched = 0
        self._held = False
        workers = int((follow_s + 3 * client.tasks.timeout_s) / interval_s) + 2
        self._pool = ThreadPoolExecutor(max_workers=min(64, workers), thread_name_prefix="chaos-probe")
        self._thread = threading.Thread(target=self._run, name="chaos-prober", daemon=True)

    def start(self) -> None:
        """Start probing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop launching probes and wait for those in flight (each is bounded by its follow time)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def hold(self) -> None:
        """Launch no new probe until `resume` (those in flight go on), so the evidence can be completed."""
        with self._lock:
            self._held = True

    def resume(self) -> None:
        """Launch probes again after `hold`."""
        with self._lock:
            self._held = False

    def snapshot(self) -> list[dict[str, Any]]:
        """The samples finished so far, in start order."""
        return self.view()[0]

    def in_flight(self) -> list[float | None]:
        """Start times of the probes launched and not finished (None: queued, not started yet)."""
        return self.view()[1]

    def view(self) -> tuple[list[dict[str, Any]], list[float | None]]:
        """The finished samples (start order) and the start times of those in flight, read at one moment.

        One lock for both: a probe finishing in between is never missed by the two and never counted twice.
        """
        with self._lock:
            return sorted(self.samples, key=lambda item: item["t_s"]), list(self._in_flight.values())

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if not self._held:
                    self._in_flight[self._launched] = None
                    self._pool.submit(self._one, self._launched)
                    self._launched += 1
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _one(self, launch: int) -> None:
        with self._lock:
            self._in_flight[launch] = round(self.clock(), 4)  # rounded as t_s is, and never later than it
        try:
            sample = probe_once(self.client, self.readiness_path, self.follow_s, self.clock)
        except BaseException:
            with self._lock:
                del self._in_flight[launch]
            raise
        with self._lock:
            self.samples.append(sample)
            del self._in_flight[launch]
