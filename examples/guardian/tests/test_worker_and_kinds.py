"""Tests of task kinds and of the worker loop run in-process against a real store."""

from __future__ import annotations

import json
import signal

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardian import kinds
from guardian.errors import InvalidTaskError, PermanentTaskError, TaskInterruptedError
from guardian.paths import DataDir
from guardian.settings import Settings
from guardian.store import NewTask, Store
from guardian.worker import Worker, WorkerConfig
from tests.helpers_upstream import running_upstream, url_of


def _ctx(upstream: object = None) -> kinds.TaskContext:
    """A task context with default settings and a no-op checkpoint."""
    return kinds.TaskContext(Settings(), lambda: None, upstream)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("nope", {}),
        ("compute", []),
        ("compute", {"cost_ms": 0}),
        ("compute", {"cost_ms": True}),
        ("compute", {"cost_ms": "5"}),
        ("compute", {"extra": 1}),
        ("orchestrate", {"steps": 21}),
        ("dependency", {"echo": "x" * 257}),
    ],
)
def test_invalid_payloads_are_rejected(kind: str, payload: object) -> None:
    """Unknown kinds, wrong types, out-of-bounds numbers and extra fields are rejected."""
    with pytest.raises(InvalidTaskError):
        kinds.validate_payload(kind, payload)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["compute", "orchestrate", "dependency", "x"]),
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=30),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=8,
    ),
)
def test_validation_only_raises_invalid_task(kind: str, payload: object) -> None:
    """Arbitrary JSON payloads are either accepted or rejected with InvalidTaskError."""
    try:
        accepted = kinds.validate_payload(kind, payload)
    except InvalidTaskError:
        return
    assert json.loads(json.dumps(accepted)) == accepted


def test_kinds_execute() -> None:
    """Each kind returns a result describing the real work it did."""
    orchestrate = kinds.execute("t", "orchestrate", {"steps": 3, "cost_ms": 3}, _ctx())
    assert orchestrate["steps"] == 3
    compute = kinds.execute("t", "compute", {"cost_ms": 5}, _ctx())
    assert compute["rounds"] > 0
    with pytest.raises(PermanentTaskError):
        kinds.execute("t", "dependency", {}, _ctx())
    with pytest.raises(PermanentTaskError):
        kinds.execute("t", "unknown", {}, _ctx())


def test_compute_checkpoint_can_interrupt() -> None:
    """A stopping worker interrupts a long compute task at its next checkpoint."""

    def stop() -> None:
        raise TaskInterruptedError("stop")

    ctx = kinds.TaskContext(Settings(), stop, None)
    with pytest.raises(TaskInterruptedError):
        kinds.execute("t", "compute", {"cost_ms": 2000}, ctx)


def test_worker_completes_tasks(data_dir: DataDir, store: Store) -> None:
    """The worker loop completes queued tasks and records counters and heartbeats."""
    ids = [store.submit(NewTask(k, {})).id for k in ("orchestrate", "compute", "orchestrate")]
    worker = Worker(data_dir, WorkerConfig(slot=0))
    assert worker.run(max_tasks=3) == 3
    assert {store.get(i).status for i in ids} == {"completed"}
    assert store.event_counts()[("orchestrate", "completed")] == 2
    assert store.read("SELECT state FROM workers")[0][0] == "stopped"


def test_worker_idles_out_and_applies_settings(data_dir: DataDir, store: Store) -> None:
    """With an empty queue the bounded run returns; new settings are picked up."""
    store.save_settings({"log_level": "DEBUG", "dependency_retries": 0})
    worker = Worker(
        data_dir, WorkerConfig(slot=1, upstream_url="http://127.0.0.1:9", settings_refresh_s=0.0)
    )
    worker.settings = Settings()
    assert worker.run(max_idle_s=0.2) == 0
    assert worker.settings.log_level == "DEBUG"


def test_worker_dependency_retry_then_success(data_dir: DataDir, store: Store) -> None:
    """A dependency task retried while the upstream fails completes after it recovers."""
    with running_upstream() as server:
        server.state.set_mode("500", None)
        task = store.submit(NewTask("dependency", {"echo": "e"}))
        worker = Worker(
            data_dir, WorkerConfig(upstream_url=url_of(server), circuit_failure_threshold=10)
        )
        worker.run(max_tasks=1)
        retried = store.get(task.id)
        assert retried.status == "queued"
        assert "http_5xx" in (retried.error or "")
        server.state.set_mode("ok", None)
        store.conn.execute("UPDATE tasks SET not_before = 0")
        worker.stopping = False
        worker = Worker(data_dir, WorkerConfig(upstream_url=url_of(server)))
        worker.run(max_tasks=1)
        assert store.get(task.id).status == "completed"


def test_worker_defers_when_circuit_open(data_dir: DataDir, store: Store) -> None:
    """With the breaker open, dependency tasks go back to the queue without using an attempt."""
    with running_upstream() as server:
        server.state.set_mode("down", None)
        first = store.submit(NewTask("dependency", {}))
        worker = Worker(
            data_dir,
            WorkerConfig(
                upstream_url=url_of(server), circuit_failure_threshold=1, circuit_open_s=30
            ),
        )
        worker.run(max_tasks=1)  # fails, opens the circuit, task re-queued with back-off
        store.conn.execute("UPDATE tasks SET not_before = 0")
        worker.stopping = False
        worker = Worker(
            data_dir,
            WorkerConfig(
                upstream_url=url_of(server), circuit_failure_threshold=1, circuit_open_s=30
            ),
        )
        worker.run(max_tasks=1)
        deferred = store.get(first.id)
        assert deferred.status == "queued"
        assert deferred.attempts == 1
        assert store.event_counts()[("dependency", "released")] == 1


def test_worker_fails_permanent_errors(data_dir: DataDir, store: Store) -> None:
    """A dependency task without an upstream fails permanently with a clear error."""
    task = store.submit(NewTask("dependency", {}))
    Worker(data_dir, WorkerConfig()).run(max_tasks=1)
    failed = store.get(task.id)
    assert failed.status == "failed"
    assert "no upstream configured" in (failed.error or "")


def test_worker_releases_task_when_stopped_mid_task(data_dir: DataDir, store: Store) -> None:
    """SIGTERM during a long task releases it (attempt refunded) instead of losing it."""
    task = store.submit(NewTask("compute", {"cost_ms": 3000}))
    worker = Worker(data_dir, WorkerConfig())
    original = worker.checkpoint
    calls = {"n": 0}

    def checkpoint() -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            worker.request_stop(signal.SIGTERM, None)
        original()

    worker.checkpoint = checkpoint  # type: ignore[method-assign]
    worker.run(max_tasks=1)
    released = store.get(task.id)
    assert released.status == "queued"
    assert released.attempts == 0


def test_upstream_control_endpoint() -> None:
    """The stand-in's /control shows and changes the mode and rejects bad input."""
    with running_upstream() as server:
        base = url_of(server)
        assert httpx.get(f"{base}/control").json()["mode"] == "ok"
        changed = httpx.post(f"{base}/control", json={"mode": "slow", "delay_ms": 10})
        assert changed.json() == {**changed.json(), "mode": "slow", "delay_ms": 10}
        assert httpx.post(f"{base}/work", json={"echo": "x"}).status_code == 200
        assert httpx.post(f"{base}/control", json={"mode": "weird"}).status_code == 400
        assert httpx.post(f"{base}/control", json={"mode": "ok", "delay_ms": -1}).status_code == 400
        assert httpx.post(f"{base}/control", json=[1]).status_code == 400
        assert httpx.post(f"{base}/control", content=b"{").status_code == 400
        assert httpx.post(f"{base}/control", json={"mode": "429"}).status_code == 200
        limited = httpx.post(f"{base}/work", json={})
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "1"
        assert httpx.get(f"{base}/nope").status_code == 404
        assert httpx.post(f"{base}/nope", json={}).status_code == 404
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
