"""Client side of ``guardian status`` and ``guardian submit``: talk to a running instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from guardian import procutil
from guardian.errors import GuardianError
from guardian.paths import DataDir
from guardian.store import Store

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_DEGRADED = 3
EXIT_NOT_READY = 4
EXIT_UNREACHABLE = 5


class UnreachableError(GuardianError):
    """The instance did not answer over HTTP."""


def http_status(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Query /healthz and /readyz of ``url``; raise UnreachableError if it does not answer."""
    base = url.rstrip("/")
    try:
        live = httpx.get(f"{base}/healthz", timeout=timeout_s)
        ready = httpx.get(f"{base}/readyz", timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise UnreachableError(f"{base} did not answer: {exc}") from exc
    try:
        ready_body = ready.json()
    except ValueError:
        ready_body = {"status": "unknown", "raw": ready.text[:200]}
    return {
        "url": base,
        "live": live.status_code == 200,
        "ready_http_status": ready.status_code,
        "readiness": ready_body,
    }


def data_dir_status(root: Path) -> dict[str, Any]:
    """Report pids (and whether each is alive) and task counts straight from a data dir."""
    data_dir = DataDir(root)
    pids = {
        name: {"pid": pid, "alive": procutil.pid_alive(pid)}
        for name, pid in data_dir.read_pids().items()
    }
    report: dict[str, Any] = {
        "data_dir": str(root),
        "pids": pids,
        "log_file": str(data_dir.log_path),
    }
    if data_dir.db_path.exists():
        store = Store(data_dir.db_path)
        try:
            report["tasks"] = store.status_counts()
        finally:
            store.close()
    return report


def exit_code_for(report: dict[str, Any]) -> int:
    """Pick the ``status`` exit code from an HTTP status report."""
    state = report.get("readiness", {}).get("status")
    if state == "ready":
        return EXIT_OK
    if state == "degraded":
        return EXIT_DEGRADED
    return EXIT_NOT_READY


def submit(
    url: str, kind: str, payload: dict[str, Any], timeout_s: float = 10.0
) -> tuple[int, dict[str, Any]]:
    """Submit one task; return (HTTP status, JSON body). Raises UnreachableError."""
    try:
        response = httpx.post(
            f"{url.rstrip('/')}/api/tasks",
            json={"kind": kind, "payload": payload},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise UnreachableError(f"{url} did not answer: {exc}") from exc
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = {"error": "non_json_response", "message": response.text[:200]}
    return response.status_code, body
