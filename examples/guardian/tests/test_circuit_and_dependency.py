"""Tests of the shared circuit breaker and the retrying upstream client."""

from __future__ import annotations

import random

import httpx
import pytest

from guardian.circuit import CircuitBreaker
from guardian.dependency import UpstreamClient, backoff_delay_s
from guardian.errors import CircuitOpenError, DependencyError, PermanentTaskError
from guardian.store import Store
from tests.helpers_upstream import running_upstream, url_of


class FakeClock:
    """A settable clock for breaker timing."""

    def __init__(self) -> None:
        """Start at t=1000."""
        self.now = 1000.0

    def __call__(self) -> float:
        """Return the current fake time."""
        return self.now


def test_breaker_opens_at_threshold_and_recovers(store: Store) -> None:
    """Closed → open after N failures → half-open probe after open_s → closed on success."""
    clock = FakeClock()
    breaker = CircuitBreaker(store, failure_threshold=2, open_s=5.0, clock=clock)
    breaker.before_call()
    assert breaker.record_failure().state == "closed"
    assert breaker.record_failure().state == "open"
    with pytest.raises(CircuitOpenError) as info:
        breaker.before_call()
    assert 0 < info.value.retry_after_s <= 5.0
    clock.now += 5.1
    breaker.before_call()  # this caller wins the probe
    assert breaker.snapshot().state == "half_open"
    with pytest.raises(CircuitOpenError):
        CircuitBreaker(store, clock=clock).before_call()  # others wait for the probe
    breaker.record_success()
    assert breaker.snapshot().state == "closed"
    assert breaker.snapshot().value == 0


def test_failed_probe_reopens(store: Store) -> None:
    """A failure while half-open re-opens the breaker immediately."""
    clock = FakeClock()
    breaker = CircuitBreaker(store, failure_threshold=1, open_s=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.5
    breaker.before_call()
    state = breaker.record_failure()
    assert state.state == "open"
    assert state.value == 2


def test_lost_probe_is_retried_after_timeout(store: Store) -> None:
    """If the probing worker died, another caller may probe after 2 x open_s."""
    clock = FakeClock()
    breaker = CircuitBreaker(store, failure_threshold=1, open_s=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.5
    breaker.before_call()
    clock.now += 2.5
    breaker.before_call()
    assert breaker.snapshot().state == "half_open"


def test_success_when_closed_writes_nothing(store: Store) -> None:
    """record_success on a clean breaker does not create a row."""
    CircuitBreaker(store).record_success()
    assert store.read("SELECT COUNT(*) FROM circuit")[0][0] == 0


def test_backoff_full_jitter_bounds() -> None:
    """Jittered back-off stays within [0, min(cap, base*2**attempt)]."""
    rng = random.Random(7)
    samples = [backoff_delay_s(3, 0.1, 0.5, rng) for _ in range(200)]
    assert all(0 <= s <= 0.5 for s in samples)
    assert max(samples) > 0.3


def _client(
    store: Store, handler: httpx.MockTransport, retries: int = 2, threshold: int = 3
) -> tuple[UpstreamClient, list[float]]:
    """Build a client over a fake transport that records its sleeps."""
    sleeps: list[float] = []
    breaker = CircuitBreaker(store, failure_threshold=threshold, open_s=30.0)
    client = UpstreamClient(
        "http://upstream.test",
        breaker,
        retries=retries,
        sleep=sleeps.append,
        transport=handler,
        rng=random.Random(1),
    )
    return client, sleeps


def test_retries_then_succeeds(store: Store) -> None:
    """Two 500s then a 200: the call succeeds after two jittered sleeps."""
    answers = iter([500, 500, 200])

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Idempotency-Key"] == "t1"
        status = next(answers)
        return httpx.Response(status, json={"ok": status == 200})

    client, sleeps = _client(store, httpx.MockTransport(handle))
    assert client.call("t1", {"x": 1}) == {"ok": True}
    assert len(sleeps) == 2
    client.close()


def test_429_honours_retry_after_up_to_cap(store: Store) -> None:
    """A 429 with Retry-After waits at least that long (capped) before retrying."""
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0.7"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    client, sleeps = _client(store, httpx.MockTransport(lambda request: next(answers)))
    client.call("t2", {})
    assert sleeps[0] >= 0.7


def test_exhausted_retries_raise_and_open_circuit(store: Store) -> None:
    """Persistent failures raise DependencyError and, at the threshold, open the breaker."""
    client, _ = _client(
        store, httpx.MockTransport(lambda request: httpx.Response(503)), retries=1, threshold=2
    )
    for _ in range(2):
        with pytest.raises(DependencyError):
            client.call("t3", {})
    assert client.breaker.snapshot().state == "open"
    with pytest.raises(CircuitOpenError):
        client.call("t3", {})


def test_transport_errors_are_retried(store: Store) -> None:
    """Connection errors and timeouts count as retryable failures."""
    errors = iter(
        [
            httpx.ConnectError("refused"),
            httpx.ReadTimeout("slow"),
            httpx.RemoteProtocolError("closed"),
        ]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        raise next(errors)

    client, sleeps = _client(store, httpx.MockTransport(handle), retries=2)
    with pytest.raises(DependencyError, match="transport_error"):
        client.call("t4", {})
    assert len(sleeps) == 2


def test_4xx_is_permanent_and_keeps_circuit_closed(store: Store) -> None:
    """A 400 from the upstream fails the task permanently without tripping the breaker."""
    client, _ = _client(store, httpx.MockTransport(lambda request: httpx.Response(400)))
    with pytest.raises(PermanentTaskError):
        client.call("t5", {})
    assert client.breaker.snapshot().state == "closed"


def test_non_json_success_is_a_failure(store: Store) -> None:
    """A 200 without a JSON body is treated as a bad answer and retried."""
    client, _ = _client(
        store,
        httpx.MockTransport(lambda request: httpx.Response(200, content=b"<html>")),
        retries=0,
    )
    with pytest.raises(DependencyError, match="bad_body"):
        client.call("t6", {})


def test_against_real_upstream_modes(store: Store) -> None:
    """Against the real stand-in: ok works, 500 mode fails after retries, ok again works."""
    with running_upstream() as server:
        breaker = CircuitBreaker(store, failure_threshold=5)
        client = UpstreamClient(
            url_of(server), breaker, retries=1, timeout_s=2.0, backoff_base_s=0.01
        )
        assert client.call("a", {"echo": "hi"})["echo"] == "hi"
        server.state.set_mode("500", None)
        with pytest.raises(DependencyError):
            client.call("b", {})
        server.state.set_mode("down", None)
        with pytest.raises(DependencyError):
            client.call("c", {})
        server.state.set_mode("ok", None)
        assert client.call("a", {})["ok"] is True
        snapshot = server.state.snapshot()
        assert snapshot["duplicates"] == 1
        assert snapshot["by_status"]["500"] == 2
        client.close()
