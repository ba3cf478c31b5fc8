"""Governance, watchdog, approvals, MTTR store and audit tamper detection, in process.

The healer runs here against a real store with small fake playbooks defined in this file; the
built-in playbooks are exercised against real instances in test_healing_e2e.py.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest

from guardian.healing import governance as gov
from guardian.healing.audit import AuditLog
from guardian.healing.env import HealEnv
from guardian.healing.healer import Healer, HealerConfig
from guardian.healing.incidents import IncidentStore, percentile
from guardian.healing.playbooks import (
    BasePlaybook,
    Detection,
    ParamSpec,
    PlaybookOutcome,
    PlaybookRegistry,
    PlaybookSpec,
    RiskTier,
    RunContext,
)
from guardian.paths import DataDir
from guardian.store import Store


class FlagPlaybook(BasePlaybook):
    """Fake: the fault is a flag in memory; execute clears it after ``delay_s``."""

    def __init__(
        self,
        tier: RiskTier = RiskTier.TIER_1,
        timeout_s: float = 5.0,
        delay_s: float = 0.0,
        fixes: bool = True,
    ) -> None:
        """Configure the fake."""
        self.spec = PlaybookSpec(
            id=f"flag-{tier.value}",
            title="flag",
            failure_mode="flag set",
            tier=tier,
            params=(ParamSpec("scale_step", int, 1, -3, 3), ParamSpec("note", str, "", 0, 10)),
            timeout_s=timeout_s,
            verify_timeout_s=0.3,
        )
        self.fault = False
        self.delay_s = delay_s
        self.fixes = fixes
        self.rolled_back = 0

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Flag set."""
        return Detection("flag set", "flag") if self.fault else None

    def plan(self, ctx: RunContext) -> list[str]:
        """Clear it."""
        return ["clear flag"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Clear the flag (if it ``fixes``), slowly, checking for cancellation."""
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline and not ctx.cancel.is_set():
            time.sleep(0.01)
        if self.fixes:
            self.fault = False
        ctx.undo["was"] = True
        return PlaybookOutcome(True, "cleared")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Set the flag again."""
        self.rolled_back += 1
        return PlaybookOutcome(True, "restored")


def make_healer(data_dir: DataDir, playbook: FlagPlaybook, now: datetime) -> Healer:
    """A healer over one fake playbook with a fixed governance clock."""
    registry = PlaybookRegistry()
    registry.register(playbook)
    env = HealEnv(data_dir)
    env.clock.fixed = now.timestamp()
    return Healer(env, registry, HealerConfig(tick_s=0.01, backoff_s=0.0))


MONDAY = datetime(2025, 1, 6, 10, 0)
SATURDAY = datetime(2025, 1, 11, 10, 0)


def actions(data_dir: DataDir) -> list[str]:
    """Audit actions in order."""
    store = Store(data_dir.db_path)
    try:
        return [e.action for e in AuditLog(store).entries()]
    finally:
        store.close()


def test_tier1_heals_and_records_mttr(data_dir: DataDir) -> None:
    """Tier 1 runs automatically; the incident is healed with a real recovery time."""
    playbook = FlagPlaybook()
    healer = make_healer(data_dir, playbook, SATURDAY)
    playbook.fault = True
    incident = healer.consider(playbook)
    assert incident is not None and incident.status == "healed"
    assert incident.recovery_s is not None and incident.recovery_s >= 0
    assert actions(data_dir) == ["detected", "ran", "healed"]
    stats = IncidentStore(healer.env.store()).stats()
    assert stats["mttr_s"]["count"] == 1 and stats["runs"] == 1


def test_failed_verification_rolls_back(data_dir: DataDir) -> None:
    """Execute that does not fix the fault is rolled back and recorded as rolled_back."""
    playbook = FlagPlaybook(fixes=False)
    healer = make_healer(data_dir, playbook, MONDAY)
    playbook.fault = True
    incident = healer.consider(playbook)
    assert incident is not None and incident.status == "rolled_back"
    assert playbook.rolled_back == 1
    assert "rollback" in actions(data_dir)


def test_watchdog_aborts_and_rolls_back(data_dir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The global run timeout caps a slower playbook's own budget and aborts it cleanly."""
    monkeypatch.setenv(gov.RUN_TIMEOUT_ENV, "1")
    playbook = FlagPlaybook(timeout_s=60.0, delay_s=30.0)
    healer = make_healer(data_dir, playbook, MONDAY)
    playbook.fault = True
    started = time.monotonic()
    incident = healer.consider(playbook)
    assert time.monotonic() - started < 10
    assert incident is not None and incident.status == "timed_out"
    assert playbook.rolled_back == 1
    assert "timed_out" in actions(data_dir)


def test_tier2_needs_approval_and_rejection_is_final(data_dir: DataDir) -> None:
    """Tier 2 waits for approval; a rejected request closes the incident without running."""
    playbook = FlagPlaybook(tier=RiskTier.TIER_2)
    healer = make_healer(data_dir, playbook, MONDAY)
    playbook.fault = True
    incident = healer.consider(playbook)
    assert incident is not None and incident.status == "awaiting_approval"
    book = gov.ApprovalBook(healer.env.store())
    [pending] = book.list("pending")
    book.decide(pending.id, approve=False, who="ops", reason="not now")
    incident = healer.consider(playbook)
    assert incident is not None and incident.status == "rejected"
    assert playbook.fault is True
    with pytest.raises(gov.GovernanceError):
        book.decide(pending.id, approve=True, who="ops", reason="changed my mind")


def test_tier3_blocked_outside_window_even_when_approved(data_dir: DataDir) -> None:
    """Tier 3 with an approved request still waits for the change window."""
    playbook = FlagPlaybook(tier=RiskTier.TIER_3)
    healer = make_healer(data_dir, playbook, SATURDAY)
    playbook.fault = True
    healer.consider(playbook)
    book = gov.ApprovalBook(healer.env.store())
    book.decide(book.list("pending")[0].id, approve=True, who="ops", reason="ok")
    incident = healer.consider(playbook)
    assert incident is not None and incident.status == "blocked"
    assert "change window" in incident.detail["blocked_reason"]
    healer.env.clock.fixed = MONDAY.timestamp()
    incident = healer.consider(playbook)
    assert incident is not None and incident.status == "healed"
    assert book.list("used")


def test_duplicate_approval_guard(store: Store) -> None:
    """Same service and diagnosis within ten minutes returns the existing request."""
    spec = FlagPlaybook(tier=RiskTier.TIER_2).spec
    book = gov.ApprovalBook(store)
    first, created = book.request(spec, "flag set", "a", {}, None, 1000.0)
    again, created_again = book.request(spec, "flag set", "b", {}, None, 1000.0 + 599)
    later, created_later = book.request(spec, "flag set", "c", {}, None, 1000.0 + 601)
    assert created and not created_again and again.id == first.id
    assert created_later and later.id != first.id


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"surprise": 1}, "unexpected"),
        ({"scale_step": 4}, "between -3 and 3"),
        ({"scale_step": True}, "integer"),
        ({"scale_step": "2"}, "integer"),
        ({"note": "x" * 11}, "at most 10"),
        ({"note": 5}, "string"),
    ],
)
def test_parameter_whitelist_rejects(raw: dict[str, Any], message: str) -> None:
    """Unknown names, wrong types, out-of-bounds numbers and long strings are refused."""
    with pytest.raises(gov.GovernanceError, match=message):
        gov.validate_params(FlagPlaybook().spec, raw)


def test_parameter_whitelist_accepts_bounds() -> None:
    """Values at the bounds pass and defaults fill the rest."""
    assert gov.validate_params(FlagPlaybook().spec, {"scale_step": -3}) == {
        "scale_step": -3,
        "note": "",
    }


def test_change_window_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """GUARDIAN_CHANGE_WINDOW configures days and hours; garbage is refused."""
    monkeypatch.setenv("GUARDIAN_CHANGE_WINDOW", "5-6 10-12")
    window = gov.ChangeWindow.from_env()
    assert window.is_open(SATURDAY) and not window.is_open(MONDAY)
    monkeypatch.setenv("GUARDIAN_CHANGE_WINDOW", "weekdays")
    with pytest.raises(gov.GovernanceError):
        gov.ChangeWindow.from_env()
    assert gov.ChangeWindow().is_open(MONDAY) and not gov.ChangeWindow().is_open(SATURDAY)


def test_watchdog_returns_values_and_errors() -> None:
    """Finished runs hand back their value or their exception."""
    assert gov.run_with_watchdog(lambda: 3, 1.0, threading.Event()).value == 3
    result = gov.run_with_watchdog(lambda: 1 / 0, 1.0, threading.Event())
    assert isinstance(result.error, ZeroDivisionError)


def test_audit_detects_edit_middle_delete_and_tail_delete(store: Store) -> None:
    """Editing an entry, deleting a middle one, or deleting the newest is reported."""
    audit = AuditLog(store)
    for n in range(5):
        audit.append("healer", "ran", {"n": n})
    assert audit.report().intact
    with store.write() as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = 5")
    report = audit.report()
    assert not report.intact and report.first_broken_seq == 5 and "removed" in report.reason
    audit.head_path.unlink()
    assert not audit.report().intact
    with store.write() as conn:
        conn.execute("UPDATE audit_log SET detail = '{\"n\": 99}' WHERE seq = 2")
    assert audit.report().first_broken_seq == 2


def test_learning_buckets_and_percentiles(store: Store) -> None:
    """Learning groups outcomes by window and diagnosis; percentiles use nearest rank."""
    incidents = IncidentStore(store)
    healed = incidents.open("p", "guardian", "d", "s", {})
    incidents.update(healed.id, "healed", decided=True)
    failed = incidents.open("p", "guardian", "d", "s", {})
    incidents.update(failed.id, "failed", decided=True)
    learning = incidents.learning()
    assert learning["24h"]["by_diagnosis"]["d"]["success_rate"] == 0.5
    assert learning["all"]["outcomes"] == {"healed": 1, "failed": 1}
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([], 50) is None
