"""The work ledger: units of work submitted throughout a playbook run, read back by id at the end.

Collect keeps every attempt and every final read; `reconcile` (pure) classifies the accepted ids,
so `evaluate` recomputes lost and duplicated work from the stored raw data.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gates.playbooks.config import WorkStream
from gates.playbooks.observe import call, field


class Ledger:
    """Submits one unit of work every 1/rate seconds in a thread; can pause while a snapshot is taken."""

    def __init__(self, port: int, work: WorkStream) -> None:
        """Bind to an instance port and the work declaration."""
        self.port = port
        self.work = work
        self.attempts: list[dict[str, Any]] = []
        self.running = threading.Event()
        self.running.set()
        self._idle = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pb-ledger", daemon=True)

    def start(self) -> None:
        """Start submitting."""
        self._thread.start()

    def pause(self) -> None:
        """Stop submitting until `resume`, after the in-flight submission has returned."""
        self.running.clear()
        self._idle.wait(timeout=10)

    def resume(self) -> None:
        """Submit again."""
        self.running.set()

    def stop(self) -> None:
        """Stop for good."""
        self._stop.set()
        self.running.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        interval_s = 1.0 / self.work.rate_per_s
        while not self._stop.is_set():
            if not self.running.is_set():
                self._idle.set()
                self.running.wait()
                continue
            self._idle.clear()
            answer = call(self.port, self.work.submit)
            value = field(answer["body"], self.work.id_field) if answer["status"] in range(200, 300) else None
            self.attempts.append(
                {
                    "at": round(answer["at"], 3),
                    "status": answer["status"],
                    "id": None if value is None else str(value),
                    "error": answer["error"],
                }
            )
            self._idle.set()
            self._stop.wait(interval_s)

    def read_back(self, cancel: threading.Event) -> dict[str, dict[str, Any]]:
        """Read every accepted id until all are terminal or the drain time passes; the last read of each."""
        terminal = set(self.work.completed) | set(self.work.failed)
        pending = list(dict.fromkeys(a["id"] for a in self.attempts if a["id"] is not None))
        finals: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + self.work.drain_s
        while pending and not cancel.is_set():
            still = []
            for task_id in pending:
                answer = call(self.port, self.work.status, {"id": task_id})
                state = field(answer["body"], self.work.status_field) if answer["status"] == 200 else None
                finals[task_id] = {"http": answer["status"], "state": state, "error": answer["error"]}
                if state not in terminal:
                    still.append(task_id)
            pending = still
            if not pending or time.monotonic() >= deadline:
                break
            cancel.wait(0.5)
        return finals


def reconcile(attempts: list[dict[str, Any]], finals: dict[str, Any], work: dict[str, Any]) -> dict[str, Any]:
    """Pure: accepted ids classified as completed, failed, lost (404 / unreadable / never finished) or duplicated."""
    accepted = [a["id"] for a in attempts if a.get("id") is not None]
    unique = list(dict.fromkeys(accepted))
    out: dict[str, Any] = {
        "submitted": len(attempts),
        "accepted": len(unique),
        "duplicated": sorted({i for i in accepted if accepted.count(i) > 1}),
        "completed": 0,
        "failed": [],
        "lost": [],
    }
    for task_id in unique:
        final = finals.get(task_id) or {}
        if final.get("state") in work["completed"]:
            out["completed"] += 1
        elif final.get("state") in work["failed"]:
            out["failed"].append(task_id)
        else:
            out["lost"].append(task_id)
    return out
