"""Helpers for end-to-end healing tests: a client for the healing API and waiting on incidents."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from typing import Any

import httpx

from tests.conftest import Instance

# A Monday, 10:00 local: inside the default change window; and a Saturday noon outside it.
IN_WINDOW = datetime(2025, 1, 6, 10, 0).timestamp()
OUT_OF_WINDOW = datetime(2025, 1, 11, 12, 0).timestamp()


class Healing:
    """Talks to one instance's healing endpoints."""

    def __init__(self, instance: Instance) -> None:
        """Bind to an instance."""
        self.instance = instance
        self.client = httpx.Client(base_url=instance.base_url, timeout=30.0)

    def get(self, path: str, **params: Any) -> Any:
        """GET and decode JSON (asserting 200)."""
        response = self.client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: dict[str, Any] | None = None, expect: int = 200) -> Any:
        """POST JSON and decode (asserting the status)."""
        response = self.client.post(path, json=body or {})
        assert response.status_code == expect, response.text
        return response.json()

    def last_incident_id(self, playbook_id: str) -> int:
        """Id of the newest incident of a playbook (0 if none)."""
        found = self.get("/api/guardian/incidents", playbook=playbook_id, limit=1)["incidents"]
        return found[0]["id"] if found else 0

    def inject(self, playbook_id: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Inject a playbook's fault through the API."""
        return self.post(f"/api/guardian/faults/{playbook_id}", options)

    def wait_incident(
        self, playbook_id: str, after_id: int, statuses: set[str], timeout_s: float = 40.0
    ) -> dict[str, Any]:
        """Wait for an incident newer than ``after_id`` to reach one of ``statuses``."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for incident in self.get("/api/guardian/incidents", playbook=playbook_id, limit=5)[
                "incidents"
            ]:
                if incident["id"] > after_id:
                    last = incident
                    if incident["status"] in statuses:
                        return incident
            time.sleep(0.2)
        raise AssertionError(f"{playbook_id}: no incident reached {statuses}; last {last}")

    def approve_pending(self, playbook_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait for a pending approval of ``playbook_id`` and approve it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for approval in self.get("/api/guardian/approvals", status="pending")["approvals"]:
                if approval["playbook_id"] == playbook_id:
                    return self.post(
                        f"/api/guardian/approvals/{approval['id']}/approve",
                        {"by": "test", "reason": "e2e"},
                    )
            time.sleep(0.2)
        raise AssertionError(f"no pending approval for {playbook_id}")

    def rollback(self, incident_id: int, timeout_s: float = 30.0) -> dict[str, Any]:
        """Request an operator rollback and wait until the healer served it."""
        request = self.post(f"/api/guardian/incidents/{incident_id}/rollback", expect=202)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.get(f"/api/guardian/heal_requests/{request['request_id']}")
            if state["status"] != "pending":
                return dict(state)
            time.sleep(0.2)
        raise AssertionError(f"rollback of {incident_id} not served")


def can_write(instance: Instance) -> bool:
    """The test's own write probe: can the write lock be taken within 200 ms (then released)."""
    conn = sqlite3.connect(instance.data_dir.db_path, timeout=0.2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()
