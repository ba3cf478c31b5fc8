"""Tests of the JSON API, health, readiness and metrics through the ASGI app in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from guardian.api.app import create_app
from guardian.api.context import ApiConfig
from guardian.circuit import CircuitBreaker
from guardian.leases import LeaseManager, register_worker
from guardian.paths import DataDir
from guardian.store import Store


@pytest.fixture
def client(data_dir: DataDir) -> Iterator[TestClient]:
    """An app with an upstream URL configured, served in-process."""
    app = create_app(ApiConfig(data_dir, upstream_url="http://127.0.0.1:9"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def submit(client: TestClient, kind: str = "compute", payload: object = None) -> dict:
    """Submit a task and return the JSON body (asserting 201)."""
    response = client.post("/api/tasks", json={"kind": kind, "payload": payload or {}})
    assert response.status_code == 201, response.text
    return response.json()


def test_submit_returns_201_after_commit(client: TestClient, store: Store) -> None:
    """A 201 carries the id, a Location header, and the row already exists in the database."""
    response = client.post("/api/tasks", json={"kind": "compute", "payload": {"cost_ms": 3}})
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/api/tasks/{body['id']}"
    assert response.headers["x-request-id"]
    assert store.get(body["id"]).status == "queued"


def test_get_list_cancel(client: TestClient) -> None:
    """Tasks can be fetched, listed with filters and cancelled once (then 409)."""
    first = submit(client, "compute")
    submit(client, "orchestrate")
    assert client.get(f"/api/tasks/{first['id']}").json()["kind"] == "compute"
    listed = client.get("/api/tasks", params={"kind": "compute", "status": "queued"}).json()
    assert [t["id"] for t in listed["tasks"]] == [first["id"]]
    assert client.get("/api/tasks", params={"limit": 1}).json()["count"] == 1
    assert client.post(f"/api/tasks/{first['id']}/cancel").json()["status"] == "cancelled"
    conflict = client.post(f"/api/tasks/{first['id']}/cancel")
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "invalid_state"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[]", 422, "invalid_task"),
        (b'{"kind": "nope"}', 422, "invalid_task"),
        (b'{"kind": 5}', 422, "invalid_task"),
        (b'{"kind": "compute", "payload": {"cost_ms": 999999}}', 422, "invalid_task"),
        (b'{"kind": "compute", "payload": "x"}', 422, "invalid_task"),
        (b'{"kind": "compute", "extra": 1}', 422, "invalid_task"),
        (b"\xff\xfe", 400, "invalid_json"),
    ],
)
def test_bad_submissions_get_json_4xx(
    client: TestClient, body: bytes, status: int, error: str
) -> None:
    """Malformed bodies are rejected with a JSON 4xx error, never a 500."""
    response = client.post("/api/tasks", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"] == error


def test_oversized_body_is_413(client: TestClient) -> None:
    """Bodies above the limit are refused with 413, declared or streamed."""
    big = b'{"kind": "compute", "payload": {"note": "' + b"x" * 20000 + b'"}}'
    response = client.post("/api/tasks", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    streamed = client.post("/api/tasks", content=chunks())
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/tasks/not-an-id", 400, "invalid_task_id"),
        ("/api/tasks/" + "0" * 32, 404, "task_not_found"),
        ("/api/tasks?status=bogus", 422, "invalid_filter"),
        ("/api/tasks?kind=bogus", 422, "invalid_filter"),
        ("/api/tasks?limit=0", 422, "invalid_request"),
        ("/api/tasks?limit=abc", 422, "invalid_request"),
        ("/api/nothing-here", 404, "http_404"),
    ],
)
def test_bad_reads_get_json_4xx(client: TestClient, path: str, status: int, error: str) -> None:
    """Bad ids, filters and unknown routes give JSON 4xx errors."""
    response = client.get(path)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_wrong_method_is_405_json(client: TestClient) -> None:
    """A wrong method is a JSON 405."""
    response = client.delete("/api/tasks")
    assert response.status_code == 405
    assert response.json()["error"] == "http_405"


def test_dependency_disabled_without_upstream(data_dir: DataDir) -> None:
    """Without an upstream URL, dependency tasks are rejected at submission."""
    with TestClient(create_app(ApiConfig(data_dir))) as plain:
        response = plain.post("/api/tasks", json={"kind": "dependency", "payload": {}})
        assert response.status_code == 422
        assert plain.get("/readyz").json()["checks"]["dependency"]["circuit"] == "not_configured"


def test_healthz_and_readiness_states(client: TestClient, store: Store) -> None:
    """/readyz is 503 without workers, ready with one, degraded when the circuit is open."""
    assert client.get("/healthz").json()["status"] == "ok"
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["status"] == "not_ready"
    register_worker(store, "worker-0-1", 0, 1)
    assert client.get("/readyz").json()["status"] == "ready"
    breaker = CircuitBreaker(store, failure_threshold=1)
    breaker.record_failure()
    degraded = client.get("/readyz")
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["checks"]["dependency"]["circuit"] == "open"


def test_metrics_reflect_real_state(client: TestClient, store: Store) -> None:
    """Counters, queue depth, latency histogram and circuit gauge come from the store."""
    ids = [submit(client, "compute")["id"] for _ in range(3)]
    lease = LeaseManager(store, "w").claim()
    assert lease is not None
    LeaseManager(store, "w").complete(lease, {})
    text = client.get("/metrics").text
    assert 'guardian_tasks_submitted_total{kind="compute"} 3.0' in text
    assert 'guardian_tasks_completed_total{kind="compute"} 1.0' in text
    assert "guardian_queue_depth 2.0" in text
    assert 'guardian_task_latency_seconds_count{kind="compute"} 1.0' in text
    assert 'guardian_dependency_circuit_state{dependency="upstream"} 0.0' in text
    assert (
        "guardian_http_request_duration_seconds_count"
        '{method="POST",route="/api/tasks",status="201"}'
    ) in text
    assert 'guardian_worker_restarts_total{reason="crash",role="worker"} 0.0' in text
    assert len(ids) == 3
