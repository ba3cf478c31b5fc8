"""The healing API, UI pages and CLI in process: guards, empty-state figures, escaping."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from guardian.api.app import create_app
from guardian.api.context import ApiConfig
from guardian.healing.governance import ApprovalBook
from guardian.healing.playbooks import ParamSpec, PlaybookSpec, RiskTier
from guardian.paths import DataDir
from guardian.store import Store


@pytest.fixture
def client(data_dir: DataDir, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """An in-process API without fault injection."""
    monkeypatch.delenv("GUARDIAN_FAULT_INJECTION", raising=False)
    app = create_app(ApiConfig(data_dir))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_fault_and_clock_endpoints_refuse_without_flag(client: TestClient) -> None:
    """Without --enable-fault-injection, injection and the clock override answer 403."""
    assert client.post("/api/guardian/faults/wal-growth").status_code == 403
    assert client.post("/api/guardian/clock", json={"epoch": 1}).status_code == 403


def test_empty_stats_are_real_zeros(client: TestClient) -> None:
    """A fresh instance reports no incidents and no MTTR, not placeholders."""
    stats = client.get("/api/guardian/healer/stats").json()
    assert stats["incidents"] == 0 and stats["mttr_s"]["p50"] is None
    assert stats["mttr_under_2_min"] is False and stats["healer"]["running"] is False
    assert client.get("/api/guardian/playbooks").json()["count"] == 31
    assert client.get("/api/meta/focus").json()["distress"] != "ok"
    assert client.get("/api/guardian/audit/verify").json()["intact"] is True
    assert client.get("/api/self_heal/learning").json()["all"]["outcomes"] == {}


def test_dry_run_and_bad_params(client: TestClient) -> None:
    """Dry-run plans nothing on a healthy instance; unknown params and playbooks are refused."""
    body = client.post("/api/guardian/playbooks/missing-index/dry-run").json()
    assert body["detected"] is False and body["plan"] == []
    assert (
        client.post(
            "/api/guardian/playbooks/queue-backlog/dry-run", json={"scale_step": 9}
        ).status_code
        == 409
    )
    assert client.post("/api/guardian/playbooks/nope/dry-run").status_code == 404


def test_rejected_parameters_are_audited(client: TestClient, data_dir: DataDir) -> None:
    """An out-of-bounds parameter is refused with 409 and the refusal is audited (H13)."""
    answer = client.post("/api/guardian/playbooks/queue-backlog/dry-run", json={"scale_step": 9})
    assert answer.status_code == 409
    store = Store(data_dir.db_path)
    try:
        rows = store.read("SELECT action, detail FROM audit_log WHERE action = 'params_rejected'")
    finally:
        store.close()
    assert len(rows) == 1 and "queue-backlog" in rows[0][1]
    assert client.get("/api/guardian/audit/verify").json()["intact"] is True


def test_approval_pages_escape_and_decide(client: TestClient, data_dir: DataDir) -> None:
    """The approvals page escapes text, and its form approves a pending request."""
    store = Store(data_dir.db_path)
    spec = PlaybookSpec("x", "x", "x", RiskTier.TIER_2, (ParamSpec("n", int, 1, 0, 2),))
    approval, _ = ApprovalBook(store).request(spec, "<script>", "s", {}, None, 1.0)
    store.close()
    page = client.get("/ui/approvals").text
    assert "<title>Approvals" in page and "&lt;script&gt;" in page and "<script>" not in page
    assert 'label for="by-' in page
    response = client.post(
        f"/ui/approvals/{approval.id}",
        data={"by": "ops", "decision": "approve"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert client.get("/api/guardian/approvals", params={"status": "approved"}).json()["count"] == 1
    assert client.post(f"/api/guardian/approvals/{approval.id}/reject").status_code == 409
    assert "<title>Incidents" in client.get("/ui/incidents").text
    assert client.post("/api/guardian/incidents/99/rollback").status_code == 422


def test_cli_fault_inject_refuses_and_audit_verify(data_dir: DataDir) -> None:
    """The CLI refuses injection without the flag and verifies the audit chain."""
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "guardian",
            "fault",
            "inject",
            "wal-growth",
            "--data-dir",
            str(data_dir.root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "enable-fault-injection" in refused.stderr
    assert "Traceback" not in refused.stderr
    verified = subprocess.run(
        [sys.executable, "-m", "guardian", "audit", "verify", "--data-dir", str(data_dir.root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0 and '"intact": true' in verified.stdout
