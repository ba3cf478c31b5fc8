"""Task kinds: payload validation at submission and execution in a worker.

* ``orchestrate`` — many light tasks: plans ``steps`` sub-steps (hashing each step descriptor,
  one DEBUG line per step) and waits ``cost_ms`` in total, standing in for waiting on sub-agents.
* ``compute`` — CPU-bound: chains SHA-256 for ``cost_ms`` of wall time, standing in for speech
  processing. It checkpoints every few milliseconds so heartbeats and shutdown still work.
* ``dependency`` — calls the upstream service through the retrying, circuit-broken client.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from guardian.dependency import UpstreamClient
from guardian.errors import InvalidTaskError, PermanentTaskError
from guardian.settings import Settings

log = logging.getLogger("guardian.kinds")

MAX_TEXT_CHARS = 256
MAX_BODY_BYTES = 16 * 1024

# kind -> {field: (type, minimum, maximum)}; strings use (str, 0, max length).
PAYLOAD_SCHEMAS: dict[str, dict[str, tuple[type, int, int]]] = {
    "orchestrate": {"steps": (int, 1, 20), "cost_ms": (int, 0, 1000), "note": (str, 0, 256)},
    "compute": {"cost_ms": (int, 1, 5000), "note": (str, 0, 256)},
    "dependency": {"echo": (str, 0, MAX_TEXT_CHARS), "note": (str, 0, 256)},
}
KIND_NAMES = tuple(PAYLOAD_SCHEMAS)
# Attempts before a task fails. Dependency tasks get more: an upstream outage should delay
# them (back-off up to 30 s between attempts, ~8 minutes in all), not fail them.
MAX_ATTEMPTS = {"orchestrate": 5, "compute": 5, "dependency": 20}


@dataclass
class TaskContext:
    """What a running task may use: settings, a checkpoint hook and the upstream client."""

    settings: Settings
    checkpoint: Callable[[], None]
    upstream: UpstreamClient | None


def validate_payload(kind: str, payload: object) -> dict[str, Any]:
    """Return the payload if it is valid for ``kind``; raise InvalidTaskError otherwise."""
    if kind not in PAYLOAD_SCHEMAS:
        raise InvalidTaskError(f"unknown kind; expected one of {', '.join(KIND_NAMES)}")
    if not isinstance(payload, dict):
        raise InvalidTaskError("payload must be a JSON object")
    schema = PAYLOAD_SCHEMAS[kind]
    unknown = sorted(set(payload) - set(schema))
    if unknown:
        raise InvalidTaskError(
            f"unexpected payload field(s) for {kind}: "
            f"{', '.join(str(name)[:40] for name in unknown[:5])}"
        )
    for name, value in payload.items():
        expected, low, high = schema[name]
        if expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidTaskError(f"payload.{name} must be an integer")
            if not low <= value <= high:
                raise InvalidTaskError(f"payload.{name} must be between {low} and {high}")
        elif not isinstance(value, str) or len(value) > high:
            raise InvalidTaskError(f"payload.{name} must be a string of at most {high} chars")
    return dict(payload)


def execute(task_id: str, kind: str, payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Run one task and return its JSON-ready result."""
    if kind == "orchestrate":
        return _orchestrate(payload, ctx)
    if kind == "compute":
        return _compute(payload, ctx)
    if kind == "dependency":
        return _dependency(task_id, payload, ctx)
    raise PermanentTaskError(f"unknown kind {kind!r}")


def _orchestrate(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Plan ``steps`` sub-steps and wait out the configured cost."""
    steps = int(payload.get("steps", 1))
    cost_ms = int(payload.get("cost_ms", ctx.settings.orchestrate_cost_ms))
    digest = hashlib.sha256()
    per_step_s = cost_ms / 1000 / steps
    for step in range(steps):
        ctx.checkpoint()
        digest.update(f"step-{step}".encode())
        log.debug("orchestrate step planned", extra={"step": step + 1, "steps": steps})
        if per_step_s > 0:
            time.sleep(per_step_s)
    return {"steps": steps, "cost_ms": cost_ms, "plan_digest": digest.hexdigest()[:16]}


def _compute(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Chain SHA-256 over a buffer until ``cost_ms`` of wall time has passed."""
    cost_ms = int(payload.get("cost_ms", ctx.settings.compute_cost_ms))
    deadline = time.perf_counter() + cost_ms / 1000
    block = hashlib.sha256(b"guardian").digest() * 128  # 4 KiB
    rounds = 0
    while time.perf_counter() < deadline:
        for _ in range(64):
            block = hashlib.sha256(block).digest() * 128
        rounds += 64
        ctx.checkpoint()
    return {"cost_ms": cost_ms, "rounds": rounds, "digest": hashlib.sha256(block).hexdigest()[:16]}


def _dependency(task_id: str, payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Call the upstream service; errors propagate to the worker's retry logic."""
    if ctx.upstream is None:
        raise PermanentTaskError("no upstream configured (--upstream-url / GUARDIAN_UPSTREAM_URL)")
    answer = ctx.upstream.call(task_id, {"task_id": task_id, "echo": payload.get("echo", "")})
    return {"upstream": answer}
