"""The healer loop: detect → open incident → govern → dry-run → execute → verify → rollback.

It runs as its own process (role ``healer``) under the supervisor when the instance is started
with ``--healer``. Every decision is appended to the hash-chained audit log, every incident is
recorded with real timestamps in the MTTR store, and operator rollbacks requested through the
API are served here so that all side effects come from one governed place.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from guardian.errors import GuardianError
from guardian.healing import governance as gov
from guardian.healing.audit import AuditLog
from guardian.healing.canary import CanaryRunner
from guardian.healing.env import HealEnv, read_state, write_state
from guardian.healing.incidents import Incident, IncidentStore
from guardian.healing.playbooks import (
    BasePlaybook,
    Detection,
    PlaybookOutcome,
    PlaybookRegistry,
    RiskTier,
    RunContext,
)

log = logging.getLogger("guardian.healer")
ACTOR = "healer"


@dataclass(frozen=True)
class HealerConfig:
    """Tunables of the healer loop."""

    tick_s: float = 0.5
    heartbeat_s: float = 1.0
    backoff_s: float = 5.0
    pause_after_rollback_s: float = 300.0
    rollback_timeout_s: float = 30.0


class Healer:
    """One healer for one instance."""

    def __init__(
        self,
        env: HealEnv,
        registry: PlaybookRegistry,
        config: HealerConfig | None = None,
        window: gov.ChangeWindow | None = None,
    ) -> None:
        """Bind to an instance and the playbooks it may run."""
        self.env = env
        self.registry = registry
        self.config = config or HealerConfig()
        self.window = window or gov.ChangeWindow.from_env()
        self.stopping = False
        self.backoff_until: dict[str, float] = {}
        self.ticks = 0
        self.ticks_counted = 0
        self.next_beat = 0.0

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def incidents(self) -> IncidentStore:
        """Incident store on this thread's connection."""
        return IncidentStore(self.env.store())

    @property
    def approvals(self) -> gov.ApprovalBook:
        """Approval book on this thread's connection."""
        return gov.ApprovalBook(self.env.store())

    def audit(self, action: str, detail: dict[str, Any], actor: str = ACTOR) -> None:
        """Append one decision to the tamper-evident log."""
        AuditLog(self.env.store()).append(actor, action, detail)

    def request_stop(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        """Signal handler: stop after the current tick."""
        del frame
        log.info("healer stop requested", extra={"signal": signum})
        self.stopping = True

    def run(self, max_duration_s: float | None = None) -> None:
        """Tick until stopped."""
        started = time.monotonic()
        while not self.stopping:
            if max_duration_s is not None and time.monotonic() - started > max_duration_s:
                break
            try:
                self.tick()
            except GuardianError:
                log.exception("healer tick failed; continuing")
            time.sleep(self.config.tick_s)

    def tick(self) -> None:
        """One pass over operator requests and every playbook."""
        self.ticks += 1
        # Playbooks that heal an unwritable store run first: everything below writes.
        for playbook in self.registry.healing():
            if not playbook.spec.needs_store:
                self.consider_storeless(playbook)
        store = self.env.store()
        if time.monotonic() >= self.next_beat:
            # One write a second, not one per tick: the heartbeat is read with a 10 s staleness
            # bound, and every write competes with the service's submissions for the lock.
            self.next_beat = time.monotonic() + self.config.heartbeat_s
            write_state(
                store,
                "healer",
                {"pid": os.getpid(), "heartbeat_at": time.time(), "ticks": self.ticks},
                counters={"ticks": self.ticks - self.ticks_counted},
            )
            self.ticks_counted = self.ticks
        self.serve_requests()
        for playbook in self.registry.healing():
            if self.stopping:
                return
            if playbook.spec.needs_store:
                self.consider(playbook)

    def consider_storeless(self, playbook: BasePlaybook) -> Incident | None:
        """Detect and heal without writing; record the incident once the store is writable."""
        spec = playbook.spec
        if time.time() < self._storeless_pause_until(spec.id):
            return None
        params = gov.validate_params(spec, None)
        detection = playbook.detect(self.env, params)
        if detection is None:
            return None
        detected_at = time.time()
        ctx = RunContext(self.env, params, detection)
        result = gov.run_with_watchdog(
            lambda: self._execute_and_verify(playbook, ctx), gov.run_timeout_s(spec), ctx.cancel
        )
        detail: dict[str, Any]
        if not result.finished:
            status, detail = "timed_out", {"error": "aborted by the watchdog"}
        elif result.error is not None:
            status, detail = "failed", {"error": f"{type(result.error).__name__}: {result.error}"}
        else:
            status, detail = result.value
        if status == "unverified":
            detail["rollback"] = self._rollback(playbook, ctx, 0).__dict__
            status = "rolled_back"
        incident = self.incidents.open(
            spec.id,
            spec.service,
            detection.diagnosis,
            detection.subject,
            detection.evidence,
            detected_at=detected_at,
        )
        self.audit("detected", self._describe(incident, detection))
        self.incidents.update(incident.id, "running", decided=True, params=params)
        self.incidents.bump("detections")
        self.incidents.bump("runs")
        self.audit(
            "ran", {"incident": incident.id, "playbook": spec.id, "why": "tier 1: automatic"}
        )
        self.incidents.update(incident.id, status, detail=detail)
        self.audit(status, {"incident": incident.id, "playbook": spec.id, **_short(detail)})
        return self.incidents.get(incident.id)

    def _storeless_pause_until(self, playbook_id: str) -> float:
        """Return when an operator rollback's pause of a storeless playbook ends (unreadable: 0)."""
        try:
            return float(read_state(self.env.store(), f"pause:{playbook_id}", 0.0))
        except GuardianError:
            return 0.0

    # -- one playbook ------------------------------------------------------------------------

    def consider(self, playbook: BasePlaybook) -> Incident | None:
        """Detect one fault and act on it according to governance; return the incident."""
        spec = playbook.spec
        now = time.time()
        if now < self.backoff_until.get(spec.id, 0.0):
            return None
        if now < float(read_state(self.env.store(), f"pause:{spec.id}", 0.0)):
            return None
        try:
            params = gov.validate_params(spec, read_state(self.env.store(), f"params:{spec.id}"))
        except gov.GovernanceError as exc:
            self._note_once(spec.id, "params", "blocked", {"playbook": spec.id, "reason": str(exc)})
            return None
        detection = playbook.detect(self.env, params)
        incident = self.incidents.open_for(spec.id)
        if detection is None:
            if incident is not None and incident.status != "running":
                self.incidents.update(incident.id, "cleared")
                self.audit("cleared", {"incident": incident.id, "playbook": spec.id})
            return None
        if incident is None:
            incident = self.incidents.open(
                spec.id, spec.service, detection.diagnosis, detection.subject, detection.evidence
            )
            self.incidents.bump("detections")
            self.audit("detected", self._describe(incident, detection))
        return self._govern(playbook, params, detection, incident)

    def _govern(
        self,
        playbook: BasePlaybook,
        params: dict[str, Any],
        detection: Detection,
        incident: Incident,
    ) -> Incident:
        """Apply tiers, approvals and the change window, then run or record the block."""
        spec = playbook.spec
        approval = None
        if spec.tier is not RiskTier.TIER_1:
            approval = self._approval_for(playbook, params, detection, incident)
            if approval.status == "rejected":
                self.incidents.update(incident.id, "rejected", decided=True)
                self.audit(
                    "rejected",
                    {"incident": incident.id, "playbook": spec.id, "approval": approval.id},
                )
                self.backoff_until[spec.id] = time.time() + self.config.backoff_s
                return self.incidents.get(incident.id)
        window_open = self.window.is_open(self.env.clock.local())
        approved = approval is not None and approval.status == "approved"
        decision = gov.decide(spec, approved, window_open, self.window)
        if not decision.allowed:
            status = "awaiting_approval" if decision.needs_approval else "blocked"
            if incident.detail.get("blocked_reason") != decision.reason:
                self.incidents.update(
                    incident.id, status, detail={"blocked_reason": decision.reason}
                )
                self.incidents.bump("skips_blocked")
                self.audit(
                    "blocked",
                    {"incident": incident.id, "playbook": spec.id, "reason": decision.reason},
                )
            return self.incidents.get(incident.id)
        if approval is not None:
            self.approvals.consume(approval.id)
        return self.run_playbook(playbook, params, detection, incident, decision.reason)

    def _approval_for(
        self,
        playbook: BasePlaybook,
        params: dict[str, Any],
        detection: Detection,
        incident: Incident,
    ) -> gov.Approval:
        """Return the incident's approval request, creating it (duplicate-guarded) if needed."""
        if incident.approval_id is not None:
            return self.approvals.get(incident.approval_id)
        approval, created = self.approvals.request(
            playbook.spec,
            detection.diagnosis,
            detection.subject,
            params,
            incident.id,
            # The governance clock: the duplicate window is measured on it, like the change window.
            self.env.clock.now(),
        )
        self.incidents.bump("proposals" if created else "duplicate_suppressed")
        self.audit(
            "approval_requested" if created else "duplicate_suppressed",
            {"incident": incident.id, "playbook": playbook.spec.id, "approval": approval.id},
        )
        self.incidents.update(incident.id, "awaiting_approval", approval_id=approval.id)
        return approval

    def run_playbook(
        self,
        playbook: BasePlaybook,
        params: dict[str, Any],
        detection: Detection,
        incident: Incident,
        why: str,
    ) -> Incident:
        """Dry-run, execute and verify under the watchdog; roll back on anything but success."""
        spec = playbook.spec
        ctx = RunContext(self.env, params, detection)
        plan = playbook.dry_run(ctx)
        budget_s = gov.run_timeout_s(spec)
        self.incidents.update(
            incident.id, "running", decided=True, params=params, detail={"plan": plan.evidence}
        )
        self.incidents.bump("runs")
        self.audit(
            "ran",
            {
                "incident": incident.id,
                "playbook": spec.id,
                "why": why,
                "params": params,
                "plan": plan.summary,
                "budget_s": budget_s,
            },
        )
        result = gov.run_with_watchdog(
            lambda: self._execute_and_verify(playbook, ctx), budget_s, ctx.cancel
        )
        detail: dict[str, Any]
        if not result.finished:
            status, detail = "timed_out", {"error": f"aborted by the watchdog after {budget_s} s"}
        elif result.error is not None:
            status, detail = "failed", {"error": f"{type(result.error).__name__}: {result.error}"}
        else:
            status, detail = result.value
        detail["undo"] = ctx.undo
        if status != "healed":
            detail["rollback"] = self._rollback(playbook, ctx, incident.id).__dict__
            if status == "unverified":
                status = "rolled_back"
            self.backoff_until[spec.id] = time.time() + self.config.backoff_s
            self.incidents.bump("backoffs")
        self.incidents.update(incident.id, status, detail=detail)
        self.audit(status, {"incident": incident.id, "playbook": spec.id, **_short(detail)})
        log.info("playbook finished", extra={"playbook": spec.id, "outcome": status})
        return self.incidents.get(incident.id)

    def _execute_and_verify(
        self, playbook: BasePlaybook, ctx: RunContext
    ) -> tuple[str, dict[str, Any]]:
        """Execute, then poll verify until it passes or its own deadline passes."""
        executed = playbook.execute(ctx)
        detail: dict[str, Any] = {"execute": executed.__dict__}
        if not executed.ok:
            return "unverified", detail
        deadline = time.monotonic() + playbook.spec.verify_timeout_s
        while True:
            verified = playbook.verify(ctx)
            detail["verify"] = verified.__dict__
            if verified.ok:
                return "healed", detail
            if time.monotonic() >= deadline or ctx.cancel.is_set():
                return "unverified", detail
            time.sleep(0.2)

    def _rollback(
        self, playbook: BasePlaybook, ctx: RunContext, incident_id: int
    ) -> PlaybookOutcome:
        """Roll back under its own bounded watchdog; never raises."""
        result = gov.run_with_watchdog(
            lambda: playbook.rollback(ctx), self.config.rollback_timeout_s, threading.Event()
        )
        if not result.finished:
            outcome = PlaybookOutcome(False, "rollback aborted by the watchdog")
        elif result.error is not None:
            outcome = PlaybookOutcome(False, f"rollback failed: {result.error}")
        else:
            outcome = result.value
        self.incidents.bump("rollbacks")
        self.audit(
            "rollback",
            {
                "incident": incident_id,
                "playbook": playbook.spec.id,
                "ok": outcome.ok,
                "summary": outcome.summary,
            },
        )
        return outcome

    # -- operator requests -------------------------------------------------------------------

    def serve_requests(self) -> None:
        """Run pending operator rollbacks of healed incidents."""
        store = self.env.store()
        for request_id, incident_id in store.read(
            "SELECT id, incident_id FROM heal_requests WHERE status = 'pending' "
            "AND action = 'rollback' ORDER BY id"
        ):
            incident = self.incidents.get(incident_id)
            playbook = self.registry.get(incident.playbook_id)
            assert isinstance(playbook, BasePlaybook)
            ctx = RunContext(self.env, incident.params, None, dict(incident.detail.get("undo", {})))
            outcome = self._rollback(playbook, ctx, incident.id)
            pause_until = time.time() + self.config.pause_after_rollback_s
            write_state(store, f"pause:{playbook.spec.id}", pause_until)
            with store.write() as conn:
                conn.execute(
                    "UPDATE heal_requests SET status = ?, done_at = ?, result = ? WHERE id = ?",
                    ("done" if outcome.ok else "failed", time.time(), outcome.summary, request_id),
                )
            self.incidents.update(
                incident.id, incident.status, detail={"operator_rollback": outcome.__dict__}
            )

    # -- helpers -----------------------------------------------------------------------------

    def _note_once(self, playbook_id: str, key: str, action: str, detail: dict[str, Any]) -> None:
        """Audit a recurring condition only when it first appears."""
        marker = f"noted:{playbook_id}:{key}"
        if read_state(self.env.store(), marker) != detail:
            write_state(self.env.store(), marker, detail)
            self.audit(action, detail)

    @staticmethod
    def _describe(incident: Incident, detection: Detection) -> dict[str, Any]:
        """Audit detail of a detection."""
        return {
            "incident": incident.id,
            "playbook": incident.playbook_id,
            "diagnosis": detection.diagnosis,
            "subject": detection.subject,
        }


def _short(detail: dict[str, Any]) -> dict[str, Any]:
    """Return the part of a run's detail worth chaining into the audit log."""
    out: dict[str, Any] = {}
    for key in ("error", "execute", "verify", "rollback"):
        value = detail.get(key)
        if isinstance(value, dict):
            out[key] = {"ok": value.get("ok"), "summary": value.get("summary")}
        elif value is not None:
            out[key] = value
    return out


def main(env: HealEnv, canary: CanaryRunner | None = None) -> int:
    """Entry point of the ``healer`` process (with the layer canaries beside it, if given)."""
    from guardian.healing.book import default_registry  # noqa: PLC0415 - heavy imports

    healer = Healer(env, default_registry())
    signal.signal(signal.SIGTERM, healer.request_stop)
    signal.signal(signal.SIGINT, healer.request_stop)
    log.info("healer started", extra={"playbooks": len(healer.registry)})
    if canary is not None:
        canary.start()
    try:
        healer.run()
    finally:
        if canary is not None:
            canary.stop()
        env.close()
    return 0
