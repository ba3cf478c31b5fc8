"""Governance: parameter whitelist, tiers, approvals, change window, duplicate guard, watchdog.

Every rule here is enforced by the healer before a playbook runs and cannot be switched off by
a playbook or its parameters: tier 2 and 3 actions need an approved request, tier 3 also needs
the change window, parameters must pass the central whitelist, and every run is bounded by the
global watchdog.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guardian.errors import GuardianError
from guardian.healing.playbooks import PlaybookSpec, RiskTier
from guardian.store import Store

DEFAULT_RUN_TIMEOUT_S = 600.0
RUN_TIMEOUT_ENV = "GUARDIAN_HEALER_RUN_TIMEOUT_S"
DUPLICATE_WINDOW_S = 600.0
MAX_STRING_CHARS = 256
# Central bounds applied on top of every playbook's own: no number beyond these, ever.
GLOBAL_INT_BOUNDS = (-1_000_000_000, 1_000_000_000)
SCALE_STEP_BOUND = 3  # parameters named *step* (worker scaling) are limited to ±3


class GovernanceError(GuardianError):
    """A parameter, approval or decision was refused by governance."""


def validate_params(spec: PlaybookSpec, raw: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``raw`` against the central whitelist and the spec; return the full value set."""
    values = spec.defaults()
    raw = raw or {}
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise GovernanceError(f"unexpected parameter(s) for {spec.id}: {', '.join(unknown)[:200]}")
    for name, value in raw.items():
        param = known[name]
        if param.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise GovernanceError(f"{spec.id}.{name} must be an integer")
            low = max(param.minimum, GLOBAL_INT_BOUNDS[0])
            high = min(param.maximum, GLOBAL_INT_BOUNDS[1])
            if "step" in name:
                low, high = max(low, -SCALE_STEP_BOUND), min(high, SCALE_STEP_BOUND)
            if not low <= value <= high:
                raise GovernanceError(f"{spec.id}.{name} must be between {low} and {high}")
        else:
            limit = min(param.maximum or MAX_STRING_CHARS, MAX_STRING_CHARS)
            if not isinstance(value, str) or len(value) > limit:
                raise GovernanceError(f"{spec.id}.{name} must be a string of at most {limit}")
        values[name] = value
    return values


@dataclass(frozen=True)
class ChangeWindow:
    """Days (0 = Monday) and local hours in which tier 3 actions may run."""

    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start_hour: int = 9
    end_hour: int = 18

    @classmethod
    def from_env(cls) -> ChangeWindow:
        """Read ``GUARDIAN_CHANGE_WINDOW`` like ``0-4 09-18`` (days, hours); default weekdays."""
        raw = os.environ.get("GUARDIAN_CHANGE_WINDOW")
        if not raw:
            return cls()
        try:
            days_part, hours_part = raw.split()
            first_day, last_day = (int(x) for x in days_part.split("-"))
            start, end = (int(x) for x in hours_part.split("-"))
        except ValueError as exc:
            raise GovernanceError(
                f"GUARDIAN_CHANGE_WINDOW {raw!r} is not like '0-4 09-18'"
            ) from exc
        return cls(tuple(range(first_day, last_day + 1)), start, end)

    def is_open(self, when: datetime) -> bool:
        """Tell whether ``when`` (local) falls inside the window."""
        return when.weekday() in self.days and self.start_hour <= when.hour < self.end_hour

    def describe(self) -> str:
        """Human form, e.g. ``days 0-4, 09:00-18:00 local``."""
        hours = f"{self.start_hour:02d}:00-{self.end_hour:02d}:00"
        return f"days {self.days[0]}-{self.days[-1]}, {hours} local"


@dataclass(frozen=True)
class Decision:
    """Whether a run may go ahead, and why."""

    allowed: bool
    reason: str
    needs_approval: bool = False


def decide(spec: PlaybookSpec, approved: bool, window_open: bool, window: ChangeWindow) -> Decision:
    """Apply the tier rules (H8, H9)."""
    if spec.tier is RiskTier.TIER_1:
        return Decision(True, "tier 1: automatic")
    if not approved:
        where = "inside" if window_open else "outside"
        return Decision(
            False, f"tier {spec.tier.value} needs an approved request ({where} change window)", True
        )
    if spec.tier is RiskTier.TIER_3 and not window_open:
        return Decision(False, f"tier 3 outside the change window ({window.describe()})")
    return Decision(True, f"tier {spec.tier.value}: approved")


def run_timeout_s(spec: PlaybookSpec) -> float:
    """Return the run budget: the playbook's own, capped by the global watchdog."""
    try:
        global_s = float(os.environ.get(RUN_TIMEOUT_ENV, DEFAULT_RUN_TIMEOUT_S))
    except ValueError:
        global_s = DEFAULT_RUN_TIMEOUT_S
    global_s = max(1.0, global_s)
    return min(spec.timeout_s, global_s)


@dataclass(frozen=True)
class WatchdogResult:
    """What happened to a function run under the watchdog."""

    finished: bool
    value: Any = None
    error: BaseException | None = None


def run_with_watchdog(
    fn: Callable[[], Any], timeout_s: float, cancel: threading.Event
) -> WatchdogResult:
    """Run ``fn`` in a thread; after ``timeout_s`` set ``cancel`` and return unfinished."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller, not swallowed
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="playbook-run")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        cancel.set()
        thread.join(min(5.0, timeout_s))
        return WatchdogResult(False)
    return WatchdogResult(True, box.get("value"), box.get("error"))


@dataclass(frozen=True)
class Approval:
    """One approval request."""

    id: int
    playbook_id: str
    service: str
    diagnosis: str
    subject: str
    tier: int
    params: dict[str, Any]
    status: str
    requested_at: float
    decided_at: float | None
    decided_by: str | None
    reason: str | None
    incident_id: int | None

    def to_json(self) -> dict[str, Any]:
        """Public JSON shape."""
        return dict(self.__dict__)


_APPROVAL_COLUMNS = (
    "id, playbook_id, service, diagnosis, subject, tier, params, status, requested_at, "
    "decided_at, decided_by, reason, incident_id"
)


def _row_to_approval(row: Any) -> Approval:
    """Build an Approval from a row."""
    values = list(row)
    values[6] = json.loads(values[6])
    return Approval(*values)


class ApprovalBook:
    """Approval requests in the ``approvals`` table, with the duplicate guard (H12)."""

    def __init__(self, store: Store) -> None:
        """Use ``store``."""
        self.store = store

    def request(
        self,
        spec: PlaybookSpec,
        diagnosis: str,
        subject: str,
        params: dict[str, Any],
        incident_id: int | None,
        now: float,
    ) -> tuple[Approval, bool]:
        """Create a pending request; return (request, created). A duplicate returns the old one.

        A duplicate is a pending or approved request for the same service and diagnosis made
        within the last ten minutes.
        """
        with self.store.write() as conn:
            row = conn.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE service = ? AND diagnosis = ? "  # noqa: S608 - constant
                "AND status IN ('pending', 'approved') AND requested_at >= ? "
                "ORDER BY id DESC LIMIT 1",
                (spec.service, diagnosis, now - DUPLICATE_WINDOW_S),
            ).fetchone()
            if row is not None:
                return _row_to_approval(row), False
            cursor = conn.execute(
                "INSERT INTO approvals(playbook_id, service, diagnosis, subject, tier, params, "
                "status, requested_at, incident_id) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (
                    spec.id,
                    spec.service,
                    diagnosis,
                    subject,
                    spec.tier.value,
                    json.dumps(params, sort_keys=True),
                    now,
                    incident_id,
                ),
            )
            new_id = int(cursor.lastrowid or 0)
        return self.get(new_id), True

    def get(self, approval_id: int) -> Approval:
        """Return one request."""
        rows = self.store.read(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE id = ?",  # noqa: S608 - constant
            (approval_id,),
        )
        if not rows:
            raise GovernanceError(f"no approval request {approval_id}")
        return _row_to_approval(rows[0])

    def list(self, status: str | None = None, limit: int = 100) -> list[Approval]:
        """Return newest-first requests, optionally of one status."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = self.store.read(
            f"SELECT {_APPROVAL_COLUMNS} FROM approvals {where} ORDER BY id DESC LIMIT ?",  # noqa: S608 - constant clauses
            [*params, limit],
        )
        return [_row_to_approval(r) for r in rows]

    def decide(self, approval_id: int, approve: bool, who: str, reason: str) -> Approval:
        """Approve or reject a pending request."""
        if len(who) > MAX_STRING_CHARS or len(reason) > MAX_STRING_CHARS:
            raise GovernanceError("approver and reason are limited to 256 characters")
        with self.store.write() as conn:
            cursor = conn.execute(
                "UPDATE approvals SET status = ?, decided_at = ?, decided_by = ?, reason = ? "
                "WHERE id = ? AND status = 'pending'",
                ("approved" if approve else "rejected", time.time(), who, reason, approval_id),
            )
            changed = cursor.rowcount
        if changed != 1:
            current = self.get(approval_id)
            raise GovernanceError(f"approval {approval_id} is {current.status}, not pending")
        return self.get(approval_id)

    def consume(self, approval_id: int) -> None:
        """Mark an approved request as used by the run it allowed."""
        with self.store.write() as conn:
            conn.execute(
                "UPDATE approvals SET status = 'used' WHERE id = ? AND status = 'approved'",
                (approval_id,),
            )
