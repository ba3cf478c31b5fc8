"""Server-rendered web UI (Jinja2, autoescaped, no JavaScript)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from guardian import kinds, logsetup
from guardian import settings as settings_mod
from guardian.api.context import AppState, readiness
from guardian.errors import GuardianError, InvalidTaskError, SettingsError
from guardian.leases import live_workers
from guardian.logsetup import request_id_var
from guardian.store import TASK_STATUSES, NewTask

log = logging.getLogger("guardian.api.ui")
MAX_FORM_PAYLOAD_CHARS = kinds.MAX_BODY_BYTES


def _fmt_ts(value: float | None) -> str:
    """Format a Unix timestamp as ISO-8601 UTC for display."""
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _fmt_json(value: object) -> str:
    """Pretty-print a JSON value for a <pre> block (escaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


templates = Environment(
    loader=PackageLoader("guardian.api", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    undefined=StrictUndefined,
)
templates.filters["ts"] = _fmt_ts
templates.filters["pretty"] = _fmt_json


def render(name: str, http_status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template to an HTML response."""
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=http_status)


def html_error(request: Request, exc: Exception) -> HTMLResponse:
    """Render an error page (used by the app's exception handlers for UI paths)."""
    from guardian.api.app import error_status  # noqa: PLC0415 - avoids an import cycle

    status, code, message = error_status(exc)
    if status >= 500:
        log.error("ui request failed", exc_info=exc if status == 500 else None)
    del request
    return render(
        "error.html",
        http_status=status,
        title=f"Error {status}",
        code=code,
        message=message,
        request_id=request_id_var.get(),
    )


def build_router(state: AppState) -> APIRouter:  # noqa: PLR0915 - one closure per page
    """Create the UI routes bound to ``state``."""
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse)
    def dashboard() -> HTMLResponse:
        """Dashboard: readiness, queue, workers, circuit, counters and recent tasks."""
        return render("dashboard.html", **_dashboard_context(state))

    @router.get("/ui/tasks", response_class=HTMLResponse)
    def task_list(status: str | None = None, kind: str | None = None) -> HTMLResponse:
        """Task list with status/kind filters."""
        status = status or None
        kind = kind or None
        if status is not None and status not in TASK_STATUSES:
            raise InvalidTaskError(f"status must be one of {', '.join(TASK_STATUSES)}")
        if kind is not None and kind not in kinds.KIND_NAMES:
            raise InvalidTaskError(f"kind must be one of {', '.join(kinds.KIND_NAMES)}")
        tasks = state.stores.get().list_tasks(status, kind, 100)
        return render(
            "tasks.html",
            title="Tasks",
            tasks=tasks,
            statuses=TASK_STATUSES,
            kinds=kinds.KIND_NAMES,
            status=status,
            kind=kind,
        )

    @router.post("/ui/tasks")
    async def submit_form(request: Request) -> Response:
        """Submit a task from the form, then redirect to its page."""
        form = await request.form()
        kind = str(form.get("kind", ""))
        payload_text = str(form.get("payload", "") or "{}")
        try:
            if len(payload_text) > MAX_FORM_PAYLOAD_CHARS:
                raise InvalidTaskError(f"payload exceeds {MAX_FORM_PAYLOAD_CHARS} characters")
            try:
                payload = json.loads(payload_text)
            except ValueError as exc:
                raise InvalidTaskError("payload is not valid JSON") from exc
            from guardian.api.app import parse_submission  # noqa: PLC0415 - import cycle

            kind, payload = parse_submission(
                {"kind": kind, "payload": payload}, state.config.upstream_url
            )
        except InvalidTaskError as exc:
            context = _dashboard_context(state)
            context.update(form_error=str(exc), form_kind=kind, form_payload=payload_text)
            return render("dashboard.html", http_status=422, **context)
        record = await state.batcher.submit(
            NewTask(kind, payload, request_id_var.get(), kinds.MAX_ATTEMPTS[kind])
        )
        log.info("task accepted from ui", extra={"task_id": record.id, "kind": kind})
        return RedirectResponse(f"/ui/tasks/{record.id}", status_code=303)

    @router.get("/ui/tasks/{task_id}", response_class=HTMLResponse)
    def task_detail(task_id: str) -> HTMLResponse:
        """One task with payload, result and error."""
        from guardian.api.app import check_task_id  # noqa: PLC0415 - import cycle

        task = state.stores.get().get(check_task_id(task_id))
        return render("task.html", title=f"Task {task.id}", task=task)

    @router.post("/ui/tasks/{task_id}/cancel")
    def cancel_form(task_id: str) -> RedirectResponse:
        """Cancel from the task page and come back to it."""
        from guardian.api.app import check_task_id  # noqa: PLC0415 - import cycle

        state.stores.get().cancel(check_task_id(task_id))
        return RedirectResponse(f"/ui/tasks/{task_id}", status_code=303)

    @router.get("/ui/settings", response_class=HTMLResponse)
    def settings_page(saved: int = 0) -> HTMLResponse:
        """Show the persisted settings in an editable form."""
        current = settings_mod.load(state.stores.get())
        return render(
            "settings.html",
            title="Settings",
            settings=current.to_dict(),
            bounds=settings_mod.INT_BOUNDS,
            levels=logsetup.LEVELS,
            saved=bool(saved),
            error=None,
        )

    @router.post("/ui/settings")
    async def save_settings(request: Request) -> Response:
        """Validate and persist settings; the supervisor and workers pick them up."""
        form = await request.form()
        values = {key: str(value) for key, value in form.items()}
        store = state.stores.get()
        try:
            saved = settings_mod.save(store, values)
        except SettingsError as exc:
            merged = {**settings_mod.load(store).to_dict(), **values}
            return render(
                "settings.html",
                http_status=422,
                title="Settings",
                settings=merged,
                bounds=settings_mod.INT_BOUNDS,
                levels=logsetup.LEVELS,
                saved=False,
                error=str(exc),
            )
        logsetup.set_level(saved.log_level)
        log.info("settings saved", extra={"settings": saved.to_dict()})
        return RedirectResponse("/ui/settings?saved=1", status_code=303)

    @router.get("/ui/logs", response_class=HTMLResponse)
    def logs_page(lines: int = 200) -> HTMLResponse:
        """Tail of the instance's JSON log file."""
        count = max(1, min(lines, 1000))
        path = state.config.data_dir.log_path
        return render(
            "logs.html",
            title="Logs",
            lines=logsetup.tail_lines(path, count),
            path=str(path),
            count=count,
        )

    return router


def _dashboard_context(state: AppState) -> dict[str, Any]:
    """Gather the live figures the dashboard shows."""
    store = state.stores.get()
    status_code, ready = readiness(state)
    events = store.event_counts()
    per_kind = {
        kind: {
            event: events.get((kind, event), 0)
            for event in ("submitted", "completed", "failed", "cancelled")
        }
        for kind in kinds.KIND_NAMES
    }
    slots = store.read(
        "SELECT role, slot, state, pid, consecutive_failures FROM slots ORDER BY role, slot"
    )
    restarts = store.read(
        "SELECT role, COUNT(*) FROM supervisor_events WHERE event LIKE 'restart_%' GROUP BY role"
    )
    return {
        "title": "Guardian dashboard",
        "ready": ready,
        "ready_http_status": status_code,
        "counts": store.status_counts(),
        "per_kind": per_kind,
        "workers": live_workers(store, 3600),
        "now": time.time(),
        "slots": slots,
        "restarts": dict(restarts),
        "recent": store.list_tasks(limit=15),
        "kinds": kinds.KIND_NAMES,
        "form_error": None,
        "form_kind": "orchestrate",
        "form_payload": "{}",
    }


__all__ = ["GuardianError", "build_router", "html_error", "render"]
