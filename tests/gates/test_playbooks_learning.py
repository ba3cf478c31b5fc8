"""Tests for PB.learning (H14): learning aggregates and scheduler counters recomputed from the target's own logs."""

from __future__ import annotations

from typing import Any

from gates.playbooks.config import PlaybookPolicy
from gates.playbooks.learning import learning_findings
from tests.gates.test_playbooks import MINIMAL_API

NOW = 1_800_000_000.0
DAY_S = 86_400.0


def _policy(**api: Any) -> PlaybookPolicy:
    """A PB policy with the learning and counters endpoints declared."""
    declared = {
        "learning": {"path": "/api/self_heal/learning"},
        "scheduler_counters": {"path": "/api/self_heal/scheduler_counters"},
        "counter_audit_actions": {"proposals": "approval_requested", "runs": "ran"},
    } | api
    return PlaybookPolicy.model_validate({"api": MINIMAL_API | declared})


def _incident(status: str, age_s: float) -> dict[str, Any]:
    """One incident of the incident list, detected `age_s` before the read."""
    return {"id": 1, "playbook_id": "p", "status": status, "detected_at": NOW - age_s}


INCIDENTS = [_incident("healed", 60), _incident("healed", 2 * DAY_S), _incident("failed", 10 * DAY_S)]
AUDIT = {
    "rows": [[1, "healer", "ran", "{}", NOW], [2, "healer", "ran", "{}", NOW], [3, "h", "approval_requested", "", NOW]]
}


def _run(learning: dict[str, Any], counters: dict[str, Any]) -> dict[str, Any]:
    """A run record with the closing H14 reads."""
    return {
        "playbook": "p",
        "learning_read": {
            "learning": {"before": INCIDENTS, "after": INCIDENTS, "answer": {"body": learning}, "read_at": NOW},
            "counters": {"audit_before": AUDIT, "audit_after": AUDIT, "answer": {"body": counters}},
        },
    }


HONEST = {
    "24h": {"outcomes": {"healed": 1}},
    "7d": {"outcomes": {"healed": 2}},
    "all": {"outcomes": {"healed": 2, "failed": 1}},
}


def test_honest_aggregates_and_counters_pass() -> None:
    """Windows recomputed from detected_at and counters from audit actions equal the answers: PASS."""
    status, reasons, rows = learning_findings(_policy(), _run(HONEST, {"proposals": 1, "runs": 2, "ticks": 99}))
    assert status == "PASS", reasons
    assert {r["window"] for r in rows if "window" in r} == {"24h", "7d", "all"}


def test_stubbed_counts_fail_naming_the_window_and_counter() -> None:
    """A constant learning answer and stubbed counters FAIL, each figure named with both values."""
    stub = {w: {"outcomes": {"healed": 5}} for w in ("24h", "7d", "all")}
    status, reasons, _ = learning_findings(_policy(), _run(stub, {"proposals": 0, "runs": 7}))
    assert status == "FAIL"
    text = "\n".join(reasons)
    assert "p: learning 24h says healed = 5, its incident list says 1" in text
    assert "p: learning all says failed = 0, its incident list says 1" in text
    assert "scheduler counter runs = 7, the audit log has 2 'ran' entries" in text
    assert "scheduler counter proposals = 0" in text


def test_undeclared_is_not_applicable_and_unread_is_not_run() -> None:
    """No endpoint declared: n/a; declared but never read: NOT_RUN, never PASS."""
    none = PlaybookPolicy.model_validate({"api": MINIMAL_API})
    assert learning_findings(none, {"playbook": "p"})[0] == "n/a"
    assert learning_findings(_policy(), {"playbook": "p"})[0] == "NOT_RUN"
