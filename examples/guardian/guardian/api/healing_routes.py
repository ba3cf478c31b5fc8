"""HTTP surface of the self-healing layer: playbooks, incidents, stats, approvals, audit, faults.

Every figure comes from the instance database (incidents, approvals, counters, audit_log);
nothing here is computed from constants. Fault injection and the governance clock override
answer 403 unless the instance was started with ``--enable-fault-injection``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from guardian.api.context import AppState, readiness
from guardian.errors import GuardianError
from guardian.healing import canary
from guardian.healing import governance as gov
from guardian.healing.audit import AuditLog
from guardian.healing.env import (
    FaultInjectionDisabledError,
    HealEnv,
    fault_injection_enabled,
    read_state,
    write_state,
)
from guardian.healing.incidents import IncidentStore
from guardian.healing.playbooks import (
    BasePlaybook,
    Detection,
    PlaybookError,
    PlaybookOutcome,
    RunContext,
)

MAX_JSON_BYTES = 4096


class HealingRequestError(GuardianError):
    """A healing request is malformed or not allowed in the current state."""


class HealingSurface:
    """Shared objects of the healing routes (one registry and env per API process)."""

    def __init__(self, state: AppState) -> None:
        """Build the registry and the env lazily-opened stores use."""
        from guardian.healing.book import default_registry  # noqa: PLC0415

        self.state = state
        self.registry = default_registry()
        self.env = HealEnv(state.config.data_dir, state.config.upstream_url)

    def playbook(self, playbook_id: str) -> BasePlaybook:
        """Return a built-in playbook or raise PlaybookError."""
        playbook = self.registry.get(playbook_id)
        assert isinstance(playbook, BasePlaybook)
        return playbook


async def _json_body(request: Request) -> dict[str, Any]:
    """Read a small optional JSON object body."""
    raw = await request.body()
    if len(raw) > MAX_JSON_BYTES:
        raise HealingRequestError(f"body exceeds {MAX_JSON_BYTES} bytes")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise HealingRequestError("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise HealingRequestError("body must be a JSON object")
    return data


def _plan(
    playbook: BasePlaybook, env: HealEnv, params: dict[str, Any]
) -> tuple[Detection | None, PlaybookOutcome]:
    """Detect and dry-run one playbook (no side effects)."""
    detection = playbook.detect(env, params)
    return detection, playbook.dry_run(RunContext(env, params, detection))


def healer_health(surface: HealingSurface) -> dict[str, Any]:
    """Heartbeat of the healer process as recorded by it."""
    beat = read_state(surface.state.stores.get(), "healer")
    if not beat:
        return {"running": False, "heartbeat_age_s": None, "ticks": 0}
    age_s = time.time() - float(beat["heartbeat_at"])
    return {"running": age_s < 10.0, "heartbeat_age_s": round(age_s, 3), "ticks": beat["ticks"]}


def focus(surface: HealingSurface) -> dict[str, Any]:
    """Health-distress summary: what needs attention now, from live state."""
    store = surface.state.stores.get()
    incidents = IncidentStore(store)
    status, ready = readiness(surface.state)
    open_rows = store.read(
        "SELECT playbook_id, status, COUNT(*) FROM incidents WHERE status IN "
        "('open', 'awaiting_approval', 'blocked', 'running') GROUP BY playbook_id, status"
    )
    recent_failures = store.read(
        "SELECT playbook_id, COUNT(*) FROM incidents WHERE status IN "
        "('rolled_back', 'failed', 'timed_out') AND detected_at >= ? GROUP BY playbook_id",
        (time.time() - 3600,),
    )
    pending = len(gov.ApprovalBook(store).list("pending"))
    healer = healer_health(surface)
    reasons = []
    if status != 200:
        reasons.append("service not ready")
    if not healer["running"]:
        reasons.append("healer not running")
    reasons += [f"{n} {s} incident(s) for {p}" for p, s, n in open_rows]
    reasons += [f"{n} unsuccessful run(s) of {p} in the last hour" for p, n in recent_failures]
    if pending:
        reasons.append(f"{pending} approval(s) pending")
    level = "ok" if not reasons else ("critical" if status != 200 else "attention")
    return {
        "distress": level,
        "reasons": reasons,
        "readiness": ready["status"],
        "healer": healer,
        "pending_approvals": pending,
        "mttr_s": incidents.stats()["mttr_s"],
    }


def build_healing_router(state: AppState) -> APIRouter:  # noqa: PLR0915 - one closure per route
    """Create the healing API routes bound to ``state``."""
    router = APIRouter()
    surface = HealingSurface(state)
    state.healing = surface  # type: ignore[attr-defined]

    @router.get("/api/guardian/playbooks")
    def list_playbooks() -> dict[str, Any]:
        """Every registered playbook with its last outcome."""
        store = state.stores.get()
        last = dict(
            store.read(
                "SELECT playbook_id, status FROM incidents WHERE id IN "
                "(SELECT MAX(id) FROM incidents GROUP BY playbook_id)"
            )
        )
        items = [
            {**p.spec.to_json(), "last_outcome": last.get(p.spec.id)}
            for p in surface.registry.healing()
        ]
        return {"count": len(items), "playbooks": items}

    @router.post("/api/guardian/playbooks/{playbook_id}/dry-run")
    async def dry_run(playbook_id: str, request: Request) -> dict[str, Any]:
        """Detect and plan, with no side effects."""
        playbook = surface.playbook(playbook_id)
        try:
            params = gov.validate_params(playbook.spec, await _json_body(request))
        except gov.GovernanceError as exc:
            # H13: a refusal is a decision too, so it goes into the audit log before the 409.
            AuditLog(state.stores.get()).append(
                "api", "params_rejected", {"playbook": playbook_id, "reason": str(exc)[:300]}
            )
            raise
        # Off the event loop (detection may wait on I/O), and off the route thread pool too, so
        # a dry-run still answers while that pool is exhausted (the api-stalled fault).
        detection, outcome = await asyncio.to_thread(_plan, playbook, surface.env, params)
        return {
            "playbook": playbook_id,
            "params": params,
            "detected": detection is not None,
            "detection": detection.__dict__ if detection else None,
            "plan": outcome.evidence.get("plan", []),
            "summary": outcome.summary,
        }

    @router.get("/api/guardian/incidents")
    def list_incidents(
        playbook: str | None = None, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        """Newest incidents."""
        found = IncidentStore(state.stores.get()).list(playbook, limit)
        return {"count": len(found), "incidents": [i.to_json() for i in found]}

    @router.post("/api/guardian/incidents/{incident_id}/rollback", status_code=202)
    def request_rollback(incident_id: int) -> dict[str, Any]:
        """Ask the healer to roll back a healed incident (it then pauses that playbook)."""
        store = state.stores.get()
        try:
            incident = IncidentStore(store).get(incident_id)
        except KeyError as exc:
            raise HealingRequestError(f"no incident {incident_id}") from exc
        if incident.status != "healed":
            raise HealingRequestError(f"incident {incident_id} is {incident.status}, not healed")
        with store.write() as conn:
            cursor = conn.execute(
                "INSERT INTO heal_requests(incident_id, action, status, requested_at) "
                "VALUES (?, 'rollback', 'pending', ?)",
                (incident_id, time.time()),
            )
        AuditLog(store).append("operator", "rollback_requested", {"incident": incident_id})
        return {"request_id": cursor.lastrowid, "incident": incident_id, "status": "pending"}

    @router.get("/api/guardian/heal_requests/{request_id}")
    def heal_request(request_id: int) -> dict[str, Any]:
        """State of an operator request."""
        rows = state.stores.get().read(
            "SELECT id, incident_id, action, status, requested_at, done_at, result "
            "FROM heal_requests WHERE id = ?",
            (request_id,),
        )
        if not rows:
            raise HealingRequestError(f"no request {request_id}")
        keys = ("id", "incident_id", "action", "status", "requested_at", "done_at", "result")
        return dict(zip(keys, rows[0], strict=True))

    @router.get("/api/guardian/healer/stats")
    def healer_stats() -> dict[str, Any]:
        """Report runs, outcomes, MTTR p50/p95 (incidents table) and the healer heartbeat."""
        store = state.stores.get()
        return {
            **IncidentStore(store).stats(),
            "healer": healer_health(surface),
            "playbooks_registered": len(surface.registry),
            "counters": IncidentStore(store).counters(),
        }

    @router.get("/api/self_heal/learning")
    def learning() -> dict[str, Any]:
        """Outcome aggregates (24 h, 7 d, all) and success rate by diagnosis."""
        return IncidentStore(state.stores.get()).learning()

    @router.get("/api/self_heal/scheduler_counters")
    def scheduler_counters() -> dict[str, Any]:
        """Healer loop counters: ticks, detections, proposals, skips, back-offs, runs."""
        return IncidentStore(state.stores.get()).counters()

    @router.get("/api/meta/focus")
    def meta_focus() -> dict[str, Any]:
        """Health-distress summary."""
        return focus(surface)

    @router.get("/api/guardian/approvals")
    def approvals(status: str | None = None) -> dict[str, Any]:
        """Approval requests, newest first."""
        if status is not None and status not in {"pending", "approved", "rejected", "used"}:
            raise HealingRequestError("status must be pending, approved, rejected or used")
        found = gov.ApprovalBook(state.stores.get()).list(status)
        return {"count": len(found), "approvals": [a.to_json() for a in found]}

    async def _decide(approval_id: int, request: Request, approve: bool) -> dict[str, Any]:
        body = await _json_body(request)
        who = str(body.get("by", "operator"))
        reason = str(body.get("reason", ""))
        store = state.stores.get()
        decided = gov.ApprovalBook(store).decide(approval_id, approve, who, reason)
        AuditLog(store).append(
            who, "approved" if approve else "rejected", {"approval": approval_id, "reason": reason}
        )
        return decided.to_json()

    @router.post("/api/guardian/approvals/{approval_id}/approve")
    async def approve(approval_id: int, request: Request) -> dict[str, Any]:
        """Approve a pending request."""
        return await _decide(approval_id, request, True)

    @router.post("/api/guardian/approvals/{approval_id}/reject")
    async def reject(approval_id: int, request: Request) -> dict[str, Any]:
        """Reject a pending request."""
        return await _decide(approval_id, request, False)

    @router.get("/api/guardian/canaries")
    def canaries() -> dict[str, Any]:
        """Last canary result and timestamp per OSI layer (L2-L7), as the healer recorded them."""
        return canary.json_report(state.stores.get())

    @router.get("/api/guardian/audit/verify")
    def audit_verify() -> dict[str, Any]:
        """Verify the chain and head; report the first broken entry."""
        return AuditLog(state.stores.get()).report().to_json()

    @router.post("/api/guardian/faults/{playbook_id}")
    async def inject_fault(playbook_id: str, request: Request) -> dict[str, Any]:
        """Inject the fault ``playbook_id`` heals (testing only)."""
        if not fault_injection_enabled():
            raise FaultInjectionDisabledError("fault injection is disabled on this instance")
        playbook = surface.playbook(playbook_id)
        options = await _json_body(request)
        # Audited before injecting: some faults (a held write lock) stop all writes.
        AuditLog(state.stores.get()).append(
            "fault-injector", "fault_injecting", {"playbook": playbook_id, "options": options}
        )
        if getattr(playbook, "inject_on_event_loop", False):
            injected = playbook.inject(surface.env, options)
        else:
            injected = await anyio.to_thread.run_sync(playbook.inject, surface.env, options)
        return {"playbook": playbook_id, "injected": injected, "at": time.time()}

    @router.post("/api/guardian/clock")
    async def set_clock(request: Request) -> dict[str, Any]:
        """Set (epoch seconds) or clear (null) the governance clock override (testing only)."""
        if not fault_injection_enabled():
            raise FaultInjectionDisabledError("the clock override is disabled on this instance")
        body = await _json_body(request)
        epoch = body.get("epoch")
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, float))):
            raise HealingRequestError("epoch must be a number or null")
        write_state(state.stores.get(), "clock_override", epoch)
        return {"clock_override": epoch}

    _add_pages(router, state)
    return router


def _add_pages(router: APIRouter, state: AppState) -> None:
    """Server-rendered incidents and approvals pages."""
    from fastapi.responses import HTMLResponse, RedirectResponse  # noqa: PLC0415

    from guardian.api.ui import render  # noqa: PLC0415 - ui imports app helpers

    @router.get("/ui/incidents", response_class=HTMLResponse)
    def incidents_page() -> HTMLResponse:
        """Incidents with MTTR figures."""
        incidents = IncidentStore(state.stores.get())
        return render(
            "incidents.html",
            title="Incidents",
            incidents=incidents.list(None, 200),
            stats=incidents.stats(),
        )

    @router.get("/ui/approvals", response_class=HTMLResponse)
    def approvals_page() -> HTMLResponse:
        """Approval requests with approve/reject forms."""
        found = gov.ApprovalBook(state.stores.get()).list(None, 200)
        return render("approvals.html", title="Approvals", approvals=found)

    @router.post("/ui/approvals/{approval_id}")
    async def decide_form(approval_id: int, request: Request) -> RedirectResponse:
        """Approve or reject from the form, then come back to the list."""
        form = await request.form()
        who, reason = str(form.get("by", ""))[:256], str(form.get("reason", ""))[:256]
        approve = str(form.get("decision")) == "approve"
        store = state.stores.get()
        gov.ApprovalBook(store).decide(approval_id, approve, who or "operator", reason)
        AuditLog(store).append(
            who or "operator",
            "approved" if approve else "rejected",
            {"approval": approval_id, "reason": reason},
        )
        return RedirectResponse("/ui/approvals", status_code=303)


ERRORS: dict[type[GuardianError], tuple[int, str]] = {
    FaultInjectionDisabledError: (403, "fault_injection_disabled"),
    PlaybookError: (404, "playbook_not_found"),
    gov.GovernanceError: (409, "governance_refused"),
    HealingRequestError: (422, "invalid_healing_request"),
}
