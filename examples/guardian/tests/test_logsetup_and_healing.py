"""Tests of JSON logging and of the self-healing extension points."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from guardian import logsetup
from guardian.healing.audit import AuditLog
from guardian.healing.faults import FaultHook, FaultHookError, FaultHookRegistry
from guardian.healing.playbooks import (
    Playbook,
    PlaybookError,
    PlaybookOutcome,
    PlaybookRegistry,
    RiskTier,
)
from guardian.store import Store


def test_log_lines_are_json_with_required_fields(tmp_path: Path) -> None:
    """Every record is one JSON line with ts, level, logger, msg, service and extras."""
    path = tmp_path / "logs" / "guardian.log"
    logsetup.configure("test", path, "DEBUG")
    token = logsetup.request_id_var.set("req-1")
    try:
        logging.getLogger("guardian.test").info("hello %s", "world", extra={"task_id": "t1"})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("guardian.test").exception("failed")
    finally:
        logsetup.request_id_var.reset(token)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    first = lines[0]
    assert first["msg"] == "hello world"
    assert first["service"] == "guardian"
    assert first["task_id"] == "t1"
    assert first["request_id"] == "req-1"
    assert first["ts"].endswith("Z")
    assert "ValueError" in lines[1]["exc"]
    logsetup.set_level("nonsense")
    assert logging.getLogger().level == logging.INFO


def test_tail_lines(tmp_path: Path) -> None:
    """tail_lines returns the last lines, dropping a partial first line of the window."""
    path = tmp_path / "log"
    assert logsetup.tail_lines(path) == []
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert logsetup.tail_lines(path, max_lines=3) == ["line 997", "line 998", "line 999"]
    window = logsetup.tail_lines(path, max_lines=1000, max_bytes=100)
    assert window[-1] == "line 999"
    assert all(line.startswith("line ") for line in window)


def test_file_handler_counts_dropped_lines(tmp_path: Path) -> None:
    """A write failure (e.g. disk full) drops the line and counts it instead of raising."""
    handler = logsetup.AppendFileHandler(tmp_path / "x.log")
    handler.setFormatter(logsetup.JsonFormatter("test"))
    handler.close()
    handler.emit(logging.LogRecord("x", logging.INFO, "f", 1, "msg", None, None))
    assert handler.dropped_lines == 1


class _Restart:
    """A minimal object satisfying the Playbook protocol (for registry tests only)."""

    name = "restart-worker"
    failure_mode = "worker-crash"
    tier = RiskTier.TIER_1

    def _ok(self, context: dict[str, Any]) -> PlaybookOutcome:
        return PlaybookOutcome(True, "ok", dict(context))

    dry_run = execute = verify = rollback = _ok


def test_playbook_registry_starts_empty_and_validates() -> None:
    """The registry ships empty, refuses duplicates and non-playbooks."""
    registry = PlaybookRegistry()
    assert len(registry) == 0
    registry.register(_Restart())
    assert registry.names() == ["restart-worker"]
    assert isinstance(registry.get("restart-worker"), Playbook)
    with pytest.raises(PlaybookError):
        registry.register(_Restart())
    with pytest.raises(PlaybookError):
        registry.register(object())  # type: ignore[arg-type]
    with pytest.raises(PlaybookError):
        registry.get("missing")


def test_fault_hook_registry() -> None:
    """Fault hooks register once per failure mode and can be looked up."""
    registry = FaultHookRegistry()
    state: list[str] = []
    hook = FaultHook(
        "worker-crash", "kill a worker", lambda: state.append("in"), lambda: state.append("out")
    )
    registry.register(hook)
    registry.get("worker-crash").inject()
    registry.get("worker-crash").clear()
    assert state == ["in", "out"]
    assert registry.failure_modes() == ["worker-crash"]
    with pytest.raises(FaultHookError):
        registry.register(hook)
    with pytest.raises(FaultHookError):
        registry.get("nope")


def test_audit_chain_detects_tampering(store: Store) -> None:
    """The audit chain verifies when intact and pinpoints an edited entry."""
    audit = AuditLog(store)
    assert audit.verify() == (True, None)
    for i in range(3):
        audit.append("tester", "approve", {"i": i})
    assert [e.detail["i"] for e in audit.entries()] == [0, 1, 2]
    assert audit.verify() == (True, None)
    store.conn.execute("UPDATE audit_log SET detail = '{\"i\": 9}' WHERE seq = 2")
    assert audit.verify() == (False, 2)
