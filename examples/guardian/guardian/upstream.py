"""A small stand-in for the external service that ``dependency`` tasks call.

``POST /work`` answers according to the current mode; ``GET /control`` shows the mode and the
counts of requests served; ``POST /control`` with ``{"mode": ..., "delay_ms": N}`` changes it:

* ``ok`` — 200 with a JSON echo (after ``delay_ms`` if non-zero);
* ``slow`` — like ok, after ``delay_ms`` (default 3000);
* ``429`` — 429 with ``Retry-After: 1``;
* ``quota`` — a rate limiter: ``quota_per_s`` requests per second (token bucket, burst of one
  second's worth) are answered like ok, the rest get 429 with ``Retry-After`` (whole seconds
  until the next token);
* ``500`` — 500;
* ``down`` — the connection is closed without any response.

Requests carry an ``Idempotency-Key`` (the task id); repeats are counted as ``duplicates`` so a
test can tell how often the at-least-once delivery actually repeated a call.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("guardian.upstream")
MODES = ("ok", "slow", "429", "500", "down", "quota")
MAX_DELAY_MS = 60_000
MAX_QUOTA_PER_S = 10_000
MAX_BODY_BYTES = 64 * 1024


class UpstreamState:
    """Mode and counters shared by the handler threads."""

    def __init__(self) -> None:
        """Start in mode ok with zeroed counters."""
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay_ms = 0
        self.by_status: dict[str, int] = {}
        self.requests = 0
        self.seen_keys: set[str] = set()
        self.duplicates = 0
        self.quota_per_s = 0
        self.tokens = 0.0
        self.refilled_at = time.monotonic()

    def set_mode(self, mode: object, delay_ms: object, quota_per_s: object = None) -> None:
        """Validate and apply a new mode; raises ValueError on bad input."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if delay_ms is None:
            delay_ms = 3000 if mode == "slow" else 0
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int):
            raise ValueError("delay_ms must be an integer")
        if not 0 <= delay_ms <= MAX_DELAY_MS:
            raise ValueError(f"delay_ms must be between 0 and {MAX_DELAY_MS}")
        if quota_per_s is None:
            quota_per_s = 2 if mode == "quota" else 0
        if isinstance(quota_per_s, bool) or not isinstance(quota_per_s, int):
            raise ValueError("quota_per_s must be an integer")
        if not 0 <= quota_per_s <= MAX_QUOTA_PER_S or (mode == "quota" and not quota_per_s):
            raise ValueError(f"quota_per_s must be between 1 and {MAX_QUOTA_PER_S}")
        with self.lock:
            self.mode, self.delay_ms, self.quota_per_s = str(mode), delay_ms, quota_per_s
            self.tokens, self.refilled_at = float(quota_per_s), time.monotonic()

    def take_token(self) -> float | None:
        """Quota mode: take a token (None) or return the seconds until the next one."""
        with self.lock:
            now = time.monotonic()
            burst = float(max(1, self.quota_per_s))
            self.tokens = min(burst, self.tokens + (now - self.refilled_at) * self.quota_per_s)
            self.refilled_at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return None
            return (1.0 - self.tokens) / self.quota_per_s

    def snapshot(self) -> dict[str, Any]:
        """Return mode and counters as JSON-ready data."""
        with self.lock:
            return {
                "mode": self.mode,
                "delay_ms": self.delay_ms,
                "quota_per_s": self.quota_per_s,
                "requests": self.requests,
                "by_status": dict(self.by_status),
                "distinct_keys": len(self.seen_keys),
                "duplicates": self.duplicates,
            }

    def count(self, status: str, key: str | None) -> None:
        """Count one answered (or dropped) request."""
        with self.lock:
            self.requests += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if key is not None and status == "200":
                if key in self.seen_keys:
                    self.duplicates += 1
                self.seen_keys.add(key)


class UpstreamHandler(BaseHTTPRequestHandler):
    """HTTP handler of the stand-in upstream."""

    server: UpstreamServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Send access logs to the JSON logger instead of raw stderr."""
        log.debug(format, *args)

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Write a JSON response."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_json(self) -> Any:
        """Read and decode a bounded JSON body."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        """GET /control (mode and counters) and GET /healthz."""
        if self.path == "/control":
            self._send_json(200, self.server.state.snapshot())
        elif self.path == "/healthz":
            self._send_json(200, {"status": "ok"})
        else:
            self._send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        """POST /control changes the mode; POST /work is the dependency call."""
        try:
            body = self._read_json()
        except ValueError:
            self._send_json(400, {"error": "invalid_json"})
            return
        if self.path == "/control":
            try:
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object")
                self.server.state.set_mode(
                    body.get("mode"), body.get("delay_ms"), body.get("quota_per_s")
                )
            except ValueError as exc:
                self._send_json(400, {"error": "invalid_mode", "message": str(exc)})
                return
            log.info("mode changed", extra=self.server.state.snapshot())
            self._send_json(200, self.server.state.snapshot())
        elif self.path == "/work":
            self._work(body)
        else:
            self._send_json(404, {"error": "not_found"})

    def _work(self, body: Any) -> None:
        """Answer a dependency call according to the current mode."""
        state = self.server.state
        with state.lock:
            mode, delay_ms = state.mode, state.delay_ms
        key = self.headers.get("Idempotency-Key")
        if delay_ms:
            time.sleep(delay_ms / 1000)
        if mode == "down":
            state.count("dropped", key)
            self.close_connection = True
            self.connection.close()
            return
        if mode == "429":
            state.count("429", key)
            self._send_json(429, {"error": "rate_limited"}, {"Retry-After": "1"})
            return
        wait_s = state.take_token() if mode == "quota" else None
        if wait_s is not None:
            state.count("429", key)
            retry_after = str(max(1, math.ceil(wait_s)))
            self._send_json(429, {"error": "rate_limited"}, {"Retry-After": retry_after})
            return
        if mode == "500":
            state.count("500", key)
            self._send_json(500, {"error": "internal"})
            return
        state.count("200", key)
        echo = body.get("echo", "") if isinstance(body, dict) else ""
        self._send_json(200, {"ok": True, "echo": str(echo)[:256], "served_at": time.time()})


class UpstreamServer(ThreadingHTTPServer):
    """Threading HTTP server carrying the shared state."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        """Bind to ``address``."""
        super().__init__(address, UpstreamHandler)
        self.state = UpstreamState()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a connection dropped by a client (closed pools do that) instead of a traceback."""
        log.debug("connection error", extra={"client": str(client_address)}, exc_info=True)


def serve(host: str, port: int) -> UpstreamServer:
    """Create (bind) the server; the caller runs ``serve_forever``."""
    return UpstreamServer((host, port))
