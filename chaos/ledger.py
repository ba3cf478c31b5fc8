"""The no-data-loss ledger: a background stream of work, every accepted id kept, reconciled by id afterwards.

The stream submits units of work at a fixed rate for the whole experiment and records every attempt
(accepted with an id, rejected with a status, or failed with an error). After recovery every accepted id
is read back until it is terminal or the drain time runs out; `reconcile_counts` (pure) turns those
final reads into lost / not completed / duplicated counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from chaos.client import Answer, TaskClient
from chaos.experiments import TaskApi

#: Pause between read-back rounds while reconciling.
RECONCILE_ROUND_S = 0.25


class WorkStream:
    """Submits one unit of work every 1/rate seconds in a thread and keeps every attempt."""

    def __init__(self, client: TaskClient, rate_per_s: float, clock: Callable[[], float]) -> None:
        """Bind to a task client, a rate and the experiment's clock (seconds since its start)."""
        self.client = client
        self.interval_s = 1.0 / rate_per_s
        self.clock = clock
        self.attempts: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-work-stream", daemon=True)

    def start(self) -> None:
        """Start submitting."""
        self._thread.start()

    def stop(self) -> None:
        """Stop submitting and wait for the in-flight submission (bounded by its HTTP timeout)."""
        self._stop.set()
        self._thread.join(timeout=self.client.tasks.timeout_s + 5)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            started = self.clock()
            answer, task_id = self.client.submit()
            self.attempts.append(
                {
                    "t_s": round(started, 4),
                    "end_s": round(self.clock(), 4),
                    "status": answer.status,
                    "id": task_id,
                    "error": answer.error,
                }
            )
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))


def reconcile(
    client: TaskClient, ids: list[str], *, drain_s: float, cancel: threading.Event, clock: Callable[[], float]
) -> dict[str, dict[str, Any]]:
    """Read every id back until all are terminal or `drain_s` passes; the last read of each id."""
    finals: dict[str, dict[str, Any]] = {}
    pending = list(dict.fromkeys(ids))
    deadline = time.monotonic() + drain_s
    while pending and not cancel.is_set():
        still: list[str] = []
        for task_id in pending:
            answer, state = client.state(task_id)
            finals[task_id] = _final(client.tasks, answer, state, clock())
            if not client.terminal(state):
                still.append(task_id)
        pending = still
        if not pending or time.monotonic() >= deadline:
            break
        cancel.wait(RECONCILE_ROUND_S)
    return finals


def _final(tasks: TaskApi, answer: Answer, state: str | None, at_s: float) -> dict[str, Any]:
    """One id's last read: HTTP status, state, completions count (if the target exposes one)."""
    completions = None
    if tasks.completions_field and isinstance(answer.body, dict):
        value = answer.body.get(tasks.completions_field)
        completions = value if isinstance(value, int) and not isinstance(value, bool) else None
    return {
        "http": answer.status,
        "state": state,
        "completions": completions,
        "error": answer.error,
        "read_at_s": round(at_s, 3),
    }


def reconcile_counts(accepted: list[str], finals: dict[str, dict[str, Any]], tasks: dict[str, Any]) -> dict[str, Any]:
    """Pure: classify every accepted id by its last read (lost, failed, unfinished, completed, duplicated).

    `tasks` is the stored TaskApi (completed / failed state names). Lost = the target answered 404 for an
    id it had accepted. Not completed = failed, unfinished when the drain ended, or never readable.
    Duplicated (by field) = completions beyond one, where the target exposes a per-task count.
    """
    completed_states, failed_states = set(tasks["completed"]), set(tasks["failed"])
    unique = list(dict.fromkeys(accepted))
    out: dict[str, Any] = {
        "accepted": len(unique),
        "accepted_twice": len(accepted) - len(unique),
        "completed": [],
        "lost": [],
        "failed": [],
        "unfinished": [],
        "unreadable": [],
        "duplicated_by_field": 0,
        "duplicated_ids": [],
    }
    for task_id in unique:
        final = finals.get(task_id)
        if final is None or (final["http"] is None and final["state"] is None):
            out["unreadable"].append(task_id)
        elif final["http"] == 404:
            out["lost"].append(task_id)
        elif final["state"] in completed_states:
            out["completed"].append(task_id)
        elif final["state"] in failed_states:
            out["failed"].append(task_id)
        else:
            out["unfinished"].append(task_id)
        completions = None if final is None else final.get("completions")
        if isinstance(completions, int) and completions > 1:
            out["duplicated_by_field"] += completions - 1
            out["duplicated_ids"].append(task_id)
    return out
