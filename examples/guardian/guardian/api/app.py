"""FastAPI application: task API, health, readiness, metrics, error mapping."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from guardian import kinds, metrics, releases, tls
from guardian.api.context import ApiConfig, AppState, readiness
from guardian.api.middleware import RequestObservationMiddleware
from guardian.errors import (
    GuardianError,
    InvalidTaskError,
    SettingsError,
    StoreError,
    TaskNotFoundError,
    TaskStateError,
)
from guardian.logsetup import request_id_var
from guardian.store import TASK_STATUSES, NewTask, TaskRecord, is_task_id

log = logging.getLogger("guardian.api")


class ApiError(GuardianError):
    """An error with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        """Build the error."""
        super().__init__(message)
        self.status = status
        self.code = code


_ERROR_STATUS: dict[type[GuardianError], tuple[int, str]] = {
    TaskNotFoundError: (404, "task_not_found"),
    TaskStateError: (409, "invalid_state"),
    InvalidTaskError: (422, "invalid_task"),
    SettingsError: (422, "invalid_setting"),
    StoreError: (503, "store_unavailable"),
}


def error_status(exc: Exception) -> tuple[int, str, str]:
    """Map any exception to (HTTP status, error code, human message)."""
    from guardian.api.healing_routes import ERRORS  # noqa: PLC0415 - avoids an import cycle

    if isinstance(exc, ApiError):
        return exc.status, exc.code, str(exc)
    for error_type, (status, code) in {**ERRORS, **_ERROR_STATUS}.items():
        if isinstance(exc, error_type):
            return status, code, str(exc)
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, f"http_{exc.status_code}", str(exc.detail)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return 422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"
    return 500, "internal_error", "internal error"


def json_error(exc: Exception) -> JSONResponse:
    """Render an exception as the JSON error body every API endpoint uses."""
    status, code, message = error_status(exc)
    if status >= 500:
        log.error("request failed", exc_info=exc if status == 500 else None, extra={"error": code})
    return JSONResponse(
        {"error": code, "message": message, "request_id": request_id_var.get()}, status_code=status
    )


async def read_body_limited(request: Request, limit_bytes: int) -> bytes:
    """Read the request body, refusing (413) anything above ``limit_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise ApiError(413, "payload_too_large", f"body exceeds {limit_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit_bytes:
            raise ApiError(413, "payload_too_large", f"body exceeds {limit_bytes} bytes")
    return bytes(body)


def parse_submission(data: object, upstream_url: str | None) -> tuple[str, dict[str, Any]]:
    """Validate a decoded submission body and return (kind, payload)."""
    if not isinstance(data, dict):
        raise InvalidTaskError("body must be a JSON object with 'kind' and 'payload'")
    unknown = sorted(set(data) - {"kind", "payload"})
    if unknown:
        names = ", ".join(str(k)[:40] for k in unknown[:5])
        raise InvalidTaskError(f"unexpected field(s): {names}")
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise InvalidTaskError("kind must be a string")
    payload = kinds.validate_payload(kind, data.get("payload", {}))
    if kind == "dependency" and upstream_url is None:
        raise InvalidTaskError("dependency tasks are disabled: no upstream URL configured")
    return kind, payload


def check_task_id(task_id: str) -> str:
    """Reject malformed ids with 400 before they reach a query."""
    if not is_task_id(task_id):
        raise ApiError(400, "invalid_task_id", "task id must be 32 lowercase hex digits")
    return task_id


def create_app(config: ApiConfig) -> FastAPI:  # noqa: PLR0915 - one closure per route
    """Build the FastAPI app for one instance."""
    state = AppState(config)
    registry = metrics.build_registry(state.stores.get, config.heartbeat_max_age_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        log.info("api ready to serve", extra={"data_dir": str(config.data_dir.root)})
        yield
        state.batcher.stop()
        state.stores.close_all()
        healing = getattr(state, "healing", None)
        if healing is not None:
            healing.env.close()

    app = FastAPI(
        title="guardian", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.guardian = state
    # C6: the active release (re-read from <data-dir>/releases), inside the request observation
    release_state = releases.ReleaseState(config.data_dir.root)
    app.add_middleware(releases.ReleaseMiddleware, state=release_state)
    registry.register(releases.ReleaseCollector(release_state))
    app.add_middleware(RequestObservationMiddleware)
    _install_error_handlers(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the API process is up and its event loop answers."""
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Readiness: store writable, a worker alive, dependency circuit state."""
        status, body = readiness(state)
        return JSONResponse(body, status_code=status)

    @app.get("/api/tls")
    def tls_status(min_days: int = Query(14, ge=0, le=3650)) -> dict[str, Any]:
        """Report the certificate the HTTPS listener presents now (a real handshake)."""
        return tls.status(config.data_dir, min_days)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        """Prometheus exposition of every guardian metric."""
        body, content_type = metrics.render(registry)
        return Response(body, media_type=content_type)

    @app.post("/api/tasks", status_code=201)
    async def submit_task(request: Request) -> JSONResponse:
        """Accept a task; answer 201 only after it is durably committed."""
        raw = await read_body_limited(request, kinds.MAX_BODY_BYTES)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_json", "request body is not valid JSON") from exc
        kind, payload = parse_submission(data, config.upstream_url)
        record = await state.batcher.submit(
            NewTask(
                kind=kind,
                payload=payload,
                request_id=request_id_var.get(),
                max_attempts=kinds.MAX_ATTEMPTS[kind],
            )
        )
        log.info("task accepted", extra={"task_id": record.id, "kind": kind})
        return JSONResponse(
            record.to_json(), status_code=201, headers={"Location": f"/api/tasks/{record.id}"}
        )

    @app.get("/api/tasks/{task_id}")
    def get_task(task_id: str) -> dict[str, Any]:
        """Return one task."""
        return state.stores.get().get(check_task_id(task_id)).to_json()

    @app.get("/api/tasks")
    def list_tasks(
        status: str | None = None,
        kind: str | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """List newest tasks, filtered by status and/or kind."""
        if status is not None and status not in TASK_STATUSES:
            raise ApiError(
                422, "invalid_filter", f"status must be one of {', '.join(TASK_STATUSES)}"
            )
        if kind is not None and kind not in kinds.KIND_NAMES:
            raise ApiError(
                422, "invalid_filter", f"kind must be one of {', '.join(kinds.KIND_NAMES)}"
            )
        tasks: list[TaskRecord] = state.stores.get().list_tasks(status, kind, limit)
        return {"tasks": [t.to_json() for t in tasks], "count": len(tasks)}

    @app.post("/api/tasks/{task_id}/cancel")
    def cancel_task(task_id: str) -> dict[str, Any]:
        """Cancel a queued or running task (409 if it already finished)."""
        record = state.stores.get().cancel(check_task_id(task_id))
        log.info("task cancelled", extra={"task_id": task_id})
        return record.to_json()

    from guardian.api.healing_routes import build_healing_router  # noqa: PLC0415
    from guardian.api.ui import build_router  # noqa: PLC0415 - ui imports helpers from here

    app.include_router(build_router(state))
    app.include_router(build_healing_router(state))
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Route every error to JSON (API) or an escaped HTML page (UI)."""
    from guardian.api.ui import html_error  # noqa: PLC0415 - ui imports helpers from here

    async def handle(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if path == "/" or path.startswith("/ui"):
            return html_error(request, exc)
        return json_error(exc)

    for exc_type in (GuardianError, StarletteHTTPException, RequestValidationError, Exception):
        app.add_exception_handler(exc_type, handle)
