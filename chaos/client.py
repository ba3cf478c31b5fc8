"""HTTP calls the chaos gate makes to the target: one fresh loopback connection per call, always bounded.

A fresh connection per call (no keep-alive) means a restarted process is reached as soon as it listens,
and a dead one is seen at once, never through a stale pooled socket.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from chaos.experiments import TaskApi


@dataclass(frozen=True)
class Answer:
    """What one HTTP call got: a status and parsed JSON body, or the error that stopped it."""

    status: int | None
    body: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


def call(
    port: int, method: str, path: str, body: Any = None, *, timeout_s: float = 2.0, host: str = "127.0.0.1"
) -> Answer:
    """One HTTP request to 127.0.0.1:port; network errors and timeouts become an Answer with `error`."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Connection": "close", "User-Agent": "release-harness-chaos"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return Answer(status=None, error=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        connection.close()
    try:
        parsed = json.loads(raw) if raw.strip() else None
    except ValueError:
        parsed = None
    return Answer(status=response.status, body=parsed)


class TaskClient:
    """Submits units of work to the target and reads their state back by id."""

    def __init__(self, port: int, tasks: TaskApi, body: dict[str, Any]) -> None:
        """Bind to the target's port, its task API description and the body to submit."""
        self.port = port
        self.tasks = tasks
        self.body = body

    def submit(self) -> tuple[Answer, str | None]:
        """POST one unit of work; the id when it was accepted (2xx with an id)."""
        answer = call(self.port, "POST", self.tasks.submit_path, self.body, timeout_s=self.tasks.timeout_s)
        task_id = None
        if answer.ok and isinstance(answer.body, dict):
            value = answer.body.get(self.tasks.id_field)
            task_id = None if value is None else str(value)
        return answer, task_id

    def state(self, task_id: str) -> tuple[Answer, str | None]:
        """GET one task; its state field, or None when it could not be read."""
        answer = call(self.port, "GET", self.tasks.status_path.format(id=task_id), timeout_s=self.tasks.timeout_s)
        if answer.ok and isinstance(answer.body, dict):
            value = answer.body.get(self.tasks.status_field)
            return answer, None if value is None else str(value)
        return answer, None

    def terminal(self, state: str | None) -> bool:
        """Whether a state is final (completed or failed)."""
        return state is not None and (state in self.tasks.completed or state in self.tasks.failed)

    def readiness(self, path: str) -> Answer:
        """GET the readiness endpoint."""
        return call(self.port, "GET", path, timeout_s=self.tasks.timeout_s)

    def metric_total(self, metrics_path: str | None, name: str) -> tuple[float | None, list[str]]:
        """Sum of a counter's samples (`name` or `name_total`, any labels) and the matching exposition lines."""
        if not metrics_path or not name:
            return None, []
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.tasks.timeout_s)
        try:
            connection.request("GET", metrics_path, headers={"Connection": "close"})
            response = connection.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            return None, []
        finally:
            connection.close()
        if response.status != 200:
            return None, []
        lines = [line for line in text.splitlines() if _sample_name(line) in {name, f"{name}_total"}]
        return counter_sum(lines, name), lines


def _sample_name(line: str) -> str:
    """The metric name of one exposition line ('' for comments)."""
    if not line or line.startswith("#"):
        return ""
    return line.split("{", 1)[0].split(" ", 1)[0]


def counter_sum(lines: list[str], name: str) -> float | None:
    """Sum the values of exposition lines of a counter; None when there is none (pure, used by evaluate)."""
    total, seen = 0.0, False
    for line in lines:
        if _sample_name(line) not in {name, f"{name}_total"}:
            continue
        try:
            total += float(line.rsplit("}", 1)[-1].split()[0] if "}" in line else line.split()[1])
        except (IndexError, ValueError):
            continue
        seen = True
    return total if seen else None
