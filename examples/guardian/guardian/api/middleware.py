"""ASGI middleware: request ids, per-route latency histogram and one JSON log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guardian.logsetup import request_id_var
from guardian.metrics import HTTP_REQUEST_DURATION

log = logging.getLogger("guardian.api.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestObservationMiddleware:
    """Observe every HTTP request: id, latency by route template, status, access log."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_s = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            HTTP_REQUEST_DURATION.labels(template, scope["method"], str(status[0])).observe(
                duration_s
            )
            level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
            log.log(
                level,
                "%s %s %s",
                scope["method"],
                template,
                status[0],
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status[0],
                    "duration_ms": round(duration_s * 1000, 3),
                },
            )
            request_id_var.reset(token)


def _request_id(scope: Scope) -> str:
    """Use a well-formed incoming X-Request-ID, otherwise mint one."""
    headers: Any = scope.get("headers") or []
    for name, value in headers:
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _REQUEST_ID_RE.match(candidate):
                return candidate
    return uuid.uuid4().hex[:16]
