"""The MTTR store: incidents from detection to verified recovery, plus learning and counters.

An incident is opened when a playbook first detects its fault and closed with one outcome:
``healed`` (verified), ``rolled_back`` (verification failed, execute undone), ``failed``,
``timed_out`` (watchdog), ``rejected`` (approval refused) or ``cleared`` (the fault went away
before any action). MTTR is ``resolved_at - detected_at`` of healed incidents, real timestamps.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from guardian.store import Store

OPEN_STATUSES = ("open", "awaiting_approval", "blocked", "running")
FINAL_STATUSES = ("healed", "rolled_back", "failed", "timed_out", "rejected", "cleared")
UNSUCCESSFUL = ("rolled_back", "failed", "timed_out")
COUNTERS = (
    "ticks",
    "detections",
    "proposals",
    "duplicate_suppressed",
    "skips_blocked",
    "skips_paused",
    "backoffs",
    "runs",
    "rollbacks",
)


@dataclass(frozen=True)
class Incident:
    """One row of the incidents table."""

    id: int
    playbook_id: str
    diagnosis: str
    service: str
    subject: str
    status: str
    detected_at: float
    decided_at: float | None
    resolved_at: float | None
    approval_id: int | None
    params: dict[str, Any]
    detail: dict[str, Any]

    @property
    def recovery_s(self) -> float | None:
        """Seconds from detection to verified recovery (healed incidents only)."""
        if self.status != "healed" or self.resolved_at is None:
            return None
        return self.resolved_at - self.detected_at

    def to_json(self) -> dict[str, Any]:
        """Public JSON shape."""
        return {**self.__dict__, "recovery_s": self.recovery_s}


_COLUMNS = (
    "id, playbook_id, diagnosis, service, subject, status, detected_at, decided_at, "
    "resolved_at, approval_id, params, detail"
)


def _row(row: Any) -> Incident:
    """Build an Incident from a row."""
    values = list(row)
    values[10] = json.loads(values[10])
    values[11] = json.loads(values[11])
    return Incident(*values)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class IncidentStore:
    """Read and write incidents, counters and the aggregates built on them."""

    def __init__(self, store: Store) -> None:
        """Use ``store``."""
        self.store = store

    def open(
        self,
        playbook_id: str,
        service: str,
        diagnosis: str,
        subject: str,
        evidence: dict[str, Any],
        detected_at: float | None = None,
    ) -> Incident:
        """Open an incident at the moment of detection."""
        with self.store.write() as conn:
            cursor = conn.execute(
                "INSERT INTO incidents(playbook_id, diagnosis, service, subject, status, "
                "detected_at, params, detail) VALUES (?, ?, ?, ?, 'open', ?, '{}', ?)",
                (
                    playbook_id,
                    diagnosis,
                    service,
                    subject,
                    time.time() if detected_at is None else detected_at,
                    json.dumps({"detection": evidence}, default=str),
                ),
            )
            new_id = int(cursor.lastrowid or 0)
        return self.get(new_id)

    def get(self, incident_id: int) -> Incident:
        """Return one incident (KeyError if absent)."""
        rows = self.store.read(
            f"SELECT {_COLUMNS} FROM incidents WHERE id = ?",  # noqa: S608 - constant
            (incident_id,),
        )
        if not rows:
            raise KeyError(incident_id)
        return _row(rows[0])

    def open_for(self, playbook_id: str) -> Incident | None:
        """Return the open incident of a playbook, if any."""
        marks = ",".join("?" * len(OPEN_STATUSES))
        rows = self.store.read(
            f"SELECT {_COLUMNS} FROM incidents WHERE playbook_id = ? AND status IN ({marks}) "  # noqa: S608 - placeholders only
            "ORDER BY id DESC LIMIT 1",
            (playbook_id, *OPEN_STATUSES),
        )
        return _row(rows[0]) if rows else None

    def update(
        self,
        incident_id: int,
        status: str,
        *,
        detail: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        approval_id: int | None = None,
        decided: bool = False,
    ) -> None:
        """Change status (closing it if final) and merge ``detail``."""
        current = self.get(incident_id)
        merged = {**current.detail, **(detail or {})}
        now = time.time()
        with self.store.write() as conn:
            conn.execute(
                "UPDATE incidents SET status = ?, detail = ?, params = ?, "
                "approval_id = COALESCE(?, approval_id), "
                "decided_at = CASE WHEN ? THEN COALESCE(decided_at, ?) ELSE decided_at END, "
                "resolved_at = CASE WHEN ? THEN ? ELSE resolved_at END WHERE id = ?",
                (
                    status,
                    json.dumps(merged, default=str),
                    json.dumps(params if params is not None else current.params),
                    approval_id,
                    decided,
                    now,
                    status in FINAL_STATUSES,
                    now,
                    incident_id,
                ),
            )

    def list(self, playbook_id: str | None = None, limit: int = 100) -> list[Incident]:
        """Newest-first incidents, optionally of one playbook."""
        where, params = ("WHERE playbook_id = ?", [playbook_id]) if playbook_id else ("", [])
        rows = self.store.read(
            f"SELECT {_COLUMNS} FROM incidents {where} ORDER BY id DESC LIMIT ?",  # noqa: S608 - constant clauses
            [*params, limit],
        )
        return [_row(r) for r in rows]

    # -- counters ----------------------------------------------------------------------------

    def bump(self, name: str, amount: int = 1) -> None:
        """Add to one scheduler counter."""
        with self.store.write() as conn:
            conn.execute(
                "INSERT INTO healer_counters(name, n) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
                (name, amount),
            )

    def counters(self) -> dict[str, int]:
        """Every scheduler counter (zero when never bumped)."""
        found = dict(self.store.read("SELECT name, n FROM healer_counters"))
        return {name: int(found.get(name, 0)) for name in (*COUNTERS, *sorted(found))}

    # -- aggregates --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Compute runs, outcomes and MTTR percentiles computed from the incidents table."""
        outcomes = dict(self.store.read("SELECT status, COUNT(*) FROM incidents GROUP BY status"))
        recoveries = [
            float(r)
            for (r,) in self.store.read(
                "SELECT resolved_at - detected_at FROM incidents WHERE status = 'healed'"
            )
        ]
        p50, p95 = percentile(recoveries, 50), percentile(recoveries, 95)
        return {
            "incidents": sum(outcomes.values()),
            "outcomes": {s: int(outcomes.get(s, 0)) for s in (*OPEN_STATUSES, *FINAL_STATUSES)},
            "runs": int(
                self.store.read(
                    "SELECT COUNT(*) FROM incidents WHERE decided_at IS NOT NULL "
                    "AND status NOT IN ('rejected', 'cleared')"
                )[0][0]
            ),
            "mttr_s": {
                "count": len(recoveries),
                "p50": p50,
                "p95": p95,
                "max": max(recoveries) if recoveries else None,
                "mean": sum(recoveries) / len(recoveries) if recoveries else None,
            },
            "mttr_under_2_min": (p95 is not None and p95 < 120.0),
        }

    def learning(self, now: float | None = None) -> dict[str, Any]:
        """Outcome counts in the last 24 h, 7 d and all time, and success rate by diagnosis."""
        when = time.time() if now is None else now
        buckets = {"24h": when - 86_400, "7d": when - 7 * 86_400, "all": 0.0}
        result: dict[str, Any] = {}
        for name, since in buckets.items():
            rows = self.store.read(
                "SELECT playbook_id, diagnosis, status, COUNT(*) FROM incidents "
                "WHERE detected_at >= ? GROUP BY playbook_id, diagnosis, status",
                (since,),
            )
            outcomes: dict[str, int] = {}
            by_diag: dict[str, dict[str, Any]] = {}
            for playbook_id, diagnosis, status, count in rows:
                outcomes[status] = outcomes.get(status, 0) + count
                entry = by_diag.setdefault(
                    diagnosis, {"playbook_id": playbook_id, "healed": 0, "unsuccessful": 0}
                )
                if status == "healed":
                    entry["healed"] += count
                elif status in UNSUCCESSFUL:
                    entry["unsuccessful"] += count
            for entry in by_diag.values():
                attempted = entry["healed"] + entry["unsuccessful"]
                entry["success_rate"] = entry["healed"] / attempted if attempted else None
            result[name] = {"outcomes": outcomes, "by_diagnosis": by_diag}
        return result
