"""Recovery probes: every ≤250 ms, readiness plus a fresh task that must complete end to end.

A health endpoint saying OK is not enough: each probe also submits a fresh unit of work and follows it
until it is terminal (or `healthy_latency_s` passes). A probe is healthy only when readiness answered
2xx and its task completed within that latency, so a target whose health endpoint lies while no work
completes is never counted as recovered.
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
    }
    if task_id is None:
        return sample
    deadline = time.monotonic() + follow_s
    pause_s = FOLLOW_FIRST_S
    while True:
        _read, state = client.state(task_id)
        sample["state"] = state
        if client.terminal(state):
            sample["done_s"] = round(clock(), 4)
            return sample
        if time.monotonic() >= deadline:
            return sample
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
    """Launches `probe_once` every `interval_s` on a bounded pool; keeps every sample."""

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

    def snapshot(self) -> list[dict[str, Any]]:
        """The samples finished so far, in start order."""
        with self._lock:
            return sorted(self.samples, key=lambda item: item["t_s"])

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._one)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _one(self) -> None:
        sample = probe_once(self.client, self.readiness_path, self.follow_s, self.clock)
        with self._lock:
            self.samples.append(sample)
