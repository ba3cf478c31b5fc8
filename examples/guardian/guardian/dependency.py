"""Client for the upstream dependency: timeouts, retries with full jitter, circuit breaker."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from guardian.circuit import CircuitBreaker
from guardian.errors import DependencyError, PermanentTaskError
from guardian.metrics import DEPENDENCY_CALL_DURATION, DEPENDENCY_ERRORS, DEPENDENCY_RETRIES

log = logging.getLogger("guardian.dependency")
DEPENDENCY_NAME = "upstream"
# A worker makes one call at a time: a small bounded pool is plenty, and a bound makes a
# connection leak show as pool time-outs instead of unbounded sockets.
POOL_MAX_CONNECTIONS = 16
PACING_SLICE_S = 0.5


def backoff_delay_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap_s, base_s * (2**attempt)))


class UpstreamClient:
    """Calls ``POST {base_url}/work`` on behalf of dependency tasks."""

    def __init__(
        self,
        base_url: str,
        breaker: CircuitBreaker,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_base_s: float = 0.1,
        backoff_cap_s: float = 1.0,
        checkpoint: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
        min_interval_s: float = 0.0,
    ) -> None:
        """Configure the client; ``checkpoint`` runs between attempts (heartbeat, stop check).

        ``min_interval_s`` paces this client: attempts start at least that far apart.
        """
        self.base_url = base_url.rstrip("/")
        self.breaker = breaker
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.checkpoint = checkpoint
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.min_interval_s = min_interval_s
        self.transport = transport
        self.outcomes: Counter[tuple[int, str]] = Counter()
        self._last_attempt_at: float | None = None
        self.client = self._new_client()

    def _new_client(self) -> httpx.Client:
        """Build the pooled HTTP client."""
        return httpx.Client(
            transport=self.transport,
            timeout=self.timeout_s,
            limits=httpx.Limits(
                max_connections=POOL_MAX_CONNECTIONS,
                max_keepalive_connections=POOL_MAX_CONNECTIONS,
            ),
        )

    def close(self) -> None:
        """Close pooled connections."""
        self.client.close()

    def recycle(self) -> None:
        """Close the pool (every connection, also ones never returned) and open a fresh one."""
        old, self.client = self.client, self._new_client()
        old.close()
        log.warning("upstream connection pool recycled")

    def take_outcomes(self) -> Counter[tuple[int, str]]:
        """Return and reset the per-second attempt outcome counts kept since the last call."""
        taken, self.outcomes = self.outcomes, Counter()
        return taken

    def pacing_wait_s(self) -> float:
        """Seconds until pacing allows the next attempt (0: now)."""
        if self._last_attempt_at is None or self.min_interval_s <= 0:
            return 0.0
        return max(0.0, self._last_attempt_at + self.min_interval_s - time.monotonic())

    def _pace(self) -> None:
        """Wait until ``min_interval_s`` has passed since the previous attempt started."""
        if self._last_attempt_at is not None and self.min_interval_s > 0:
            remaining = self._last_attempt_at + self.min_interval_s - time.monotonic()
            while remaining > 0:
                self.checkpoint()
                self.sleep(min(remaining, PACING_SLICE_S))
                remaining = self._last_attempt_at + self.min_interval_s - time.monotonic()
        self._last_attempt_at = time.monotonic()

    def call(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Make the call with retries; raise DependencyError / CircuitOpenError on failure."""
        self.breaker.before_call()
        last_reason = "no attempt"
        for attempt in range(self.retries + 1):
            self.checkpoint()
            if attempt:
                DEPENDENCY_RETRIES.labels(DEPENDENCY_NAME).inc()
            outcome, payload, retry_after_s = self._attempt(task_id, body)
            if outcome == "ok":
                self.breaker.record_success()
                return payload
            last_reason = outcome
            if attempt < self.retries:
                delay_s = backoff_delay_s(
                    attempt, self.backoff_base_s, self.backoff_cap_s, self.rng
                )
                if retry_after_s is not None:
                    delay_s = max(delay_s, min(retry_after_s, self.backoff_cap_s))
                self.sleep(delay_s)
        state = self.breaker.record_failure()
        log.warning(
            "upstream call failed",
            extra={
                "task_id": task_id,
                "reason": last_reason,
                "circuit": state.state,
                "attempts": self.retries + 1,
            },
        )
        raise DependencyError(f"upstream failed after {self.retries + 1} attempts: {last_reason}")

    def _attempt(
        self, task_id: str, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any], float | None]:
        """Make one HTTP attempt; return (outcome, json body, Retry-After seconds)."""
        self._pace()
        started = time.perf_counter()
        try:
            response = self.client.post(
                f"{self.base_url}/work",
                json=body,
                headers={"Idempotency-Key": task_id},
            )
        except httpx.PoolTimeout:
            # No connection free in this process's own pool: a local fault, not the upstream's.
            return self._failed("pool_timeout", started), {}, None
        except httpx.TimeoutException:
            return self._failed("timeout", started), {}, None
        except httpx.TransportError as exc:
            reason = "connect_error" if isinstance(exc, httpx.ConnectError) else "transport_error"
            return self._failed(reason, started), {}, None
        if response.is_success:
            DEPENDENCY_CALL_DURATION.labels(DEPENDENCY_NAME, "ok").observe(
                time.perf_counter() - started
            )
            try:
                answer = dict(response.json())
            except ValueError:
                return self._failed("bad_body", started), {}, None
            self.outcomes[(int(time.time()), "ok")] += 1
            return "ok", answer, None
        if response.status_code == 429 or response.status_code >= 500:
            reason = "http_429" if response.status_code == 429 else "http_5xx"
            return self._failed(reason, started), {}, _retry_after_s(response)
        self._failed("http_4xx", started)
        # The upstream answered, so it is healthy; the request itself is bad and never will work.
        self.breaker.record_success()
        raise PermanentTaskError(f"upstream rejected the request with {response.status_code}")

    def _failed(self, reason: str, started: float) -> str:
        """Record a failed attempt's latency and error counter; return the reason."""
        DEPENDENCY_CALL_DURATION.labels(DEPENDENCY_NAME, reason).observe(
            time.perf_counter() - started
        )
        DEPENDENCY_ERRORS.labels(DEPENDENCY_NAME, reason).inc()
        self.outcomes[(int(time.time()), reason)] += 1
        return reason


def _retry_after_s(response: httpx.Response) -> float | None:
    """Parse a numeric Retry-After header (seconds), ignoring HTTP-date forms."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None
