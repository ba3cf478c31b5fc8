"""Canary probes for OSI layers 2-7, run beside the healer; results live in ``healer_state``.

Two daemon threads of the healer process probe the instance from the outside of the API, the
way a client on this host would reach it, and record one result per layer:

* L2 link — the kernel state of the interface the API is reached through (``lo``): admin up,
  carrier, error counters, read from ``/sys/class/net`` (read-only, no root);
* L3 network — address resolution (``getaddrinfo``) and a kernel route lookup (a UDP
  ``connect``, which sends nothing) for the API host and the upstream host;
* L4 transport — a TCP connect to the API port and to the upstream port, with latency;
* L5 session — one HTTP/1.1 keep-alive connection reused for two requests;
* L6 presentation — the canary task's payload (non-ASCII text, quotes, escapes) comes back
  byte-identical as ``application/json`` in both the 201 answer and a later read; when the
  instance serves HTTPS (``serve --tls``), also a TLS handshake and the served certificate's
  expiry;
* L7 application — a canary task submitted through the API and completed by a worker, with
  its end-to-end latency from the service's own timestamps.

With ``GUARDIAN_CANARY_FRONT=host:port`` (the address clients reach the API through: a proxy or
load balancer in front of it) the L5-L7 probes go through that address, as a client's requests
would; L3 and L4 keep looking at the API listener itself.

On loopback L2 and L3 see little: there is no cable, switch, ARP or DNS server involved.
``docs/operations/canaries.md`` says what each layer can and cannot see.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from guardian import settings as settings_mod
from guardian import tls
from guardian.errors import StoreError
from guardian.healing.env import HealEnv, read_state, write_state
from guardian.paths import DataDir
from guardian.store import Store

log = logging.getLogger("guardian.canary")
LAYERS = {
    "L2": "link",
    "L3": "network",
    "L4": "transport",
    "L5": "session",
    "L6": "presentation",
    "L7": "application",
}
STATE_PREFIX = "canary:"
KNOWN_GOOD_KEY = "canary_known_good"
IFF_UP = 0x1
STALE_AFTER_S = 30.0
RETRY_S = 0.5  # next round after a failed one
L6_SAMPLE = 'canary ✓ «L6» "quoted" \\ tab\t end'
FRONT_ENV = "GUARDIAN_CANARY_FRONT"


@dataclass(frozen=True)
class ProbeResult:
    """One layer's observation: healthy or not, how long it took, and what was seen."""

    layer: str
    ok: bool
    latency_s: float
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class CanaryTarget:
    """Where the canaries look: the API listener and (optionally) the upstream dependency."""

    api_host: str
    api_port: int
    upstream_url: str | None = None
    interface: str = "lo"
    sys_net: Path = Path("/sys/class/net")
    front: tuple[str, int] | None = None

    @property
    def api_url(self) -> str:
        """Base URL the L6/L7 probes use: the front address when one is set, else the API's own."""
        host, port = self.client_address
        return f"http://{host}:{port}"

    @property
    def client_address(self) -> tuple[str, int]:
        """(host, port) clients reach the API at: the front address, else the listener."""
        return self.front or (self.api_host, self.api_port)

    @classmethod
    def with_front_from_env(cls, target: CanaryTarget) -> CanaryTarget:
        """Return the target with ``GUARDIAN_CANARY_FRONT`` (host:port) applied, when it is set."""
        raw = os.environ.get(FRONT_ENV, "").strip()
        if not raw:
            return target
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{FRONT_ENV}={raw!r} is not host:port")
        return replace(target, front=(host, int(port)))

    def upstream(self) -> tuple[str, int] | None:
        """(host, port) of the upstream, if one is configured."""
        if not self.upstream_url:
            return None
        parts = urlsplit(self.upstream_url)
        if not parts.hostname:
            return None
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _timed(layer: str, body: Callable[[dict[str, Any]], None]) -> ProbeResult:
    """Run ``body(detail)``; an exception is the layer's failure (its message is kept)."""
    detail: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        body(detail)
    except (OSError, ValueError, KeyError, http.client.HTTPException, httpx.HTTPError) as exc:
        return ProbeResult(
            layer, False, time.perf_counter() - started, detail, f"{type(exc).__name__}: {exc}"
        )
    return ProbeResult(layer, True, time.perf_counter() - started, detail)


def probe_link(target: CanaryTarget) -> ProbeResult:
    """L2: the interface is administratively up and has carrier (sysfs, read-only)."""

    def body(detail: dict[str, Any]) -> None:
        base = target.sys_net / target.interface
        flags = int((base / "flags").read_text().strip(), 16)
        carrier = (base / "carrier").read_text().strip()
        detail.update(
            interface=target.interface,
            operstate=(base / "operstate").read_text().strip(),
            admin_up=bool(flags & IFF_UP),
            carrier=carrier == "1",
        )
        for name in ("rx_errors", "tx_errors", "rx_dropped", "tx_dropped"):
            detail[name] = int((base / "statistics" / name).read_text().strip())
        if not (detail["admin_up"] and detail["carrier"]):
            raise ValueError(f"{target.interface} is not up with carrier")

    return _timed("L2", body)


def probe_network(target: CanaryTarget) -> ProbeResult:
    """L3: every host resolves, and the kernel has a route to it (UDP connect sends nothing)."""

    def body(detail: dict[str, Any]) -> None:
        endpoints = [(target.api_host, target.api_port)]
        upstream = target.upstream()
        if upstream is not None:
            endpoints.append(upstream)
        for host, port in endpoints:
            started = time.perf_counter()
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect(address)
                source = probe.getsockname()[0]
            detail[host] = {
                "address": address[0],
                "source": source,
                "seconds": round(time.perf_counter() - started, 6),
            }

    return _timed("L3", body)


def probe_transport(target: CanaryTarget, timeout_s: float = 2.0) -> ProbeResult:
    """L4: a TCP connection is accepted on the API port (and the upstream port)."""

    def body(detail: dict[str, Any]) -> None:
        endpoints = {"api": (target.api_host, target.api_port)}
        upstream = target.upstream()
        if upstream is not None:
            endpoints["upstream"] = upstream
        for name, endpoint in endpoints.items():
            started = time.perf_counter()
            with socket.create_connection(endpoint, timeout=timeout_s):
                detail[name] = {"port": endpoint[1], "connect_s": time.perf_counter() - started}

    return _timed("L4", body)


def probe_session(target: CanaryTarget, timeout_s: float = 3.0) -> ProbeResult:
    """L5: two requests travel over one kept-alive HTTP/1.1 connection (via the front, if set)."""

    def body(detail: dict[str, Any]) -> None:
        conn = http.client.HTTPConnection(*target.client_address, timeout=timeout_s)
        try:
            ports = []
            for _ in range(2):
                conn.request("GET", "/healthz", headers={"Connection": "keep-alive"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise ValueError(f"/healthz answered {response.status}")
                if conn.sock is None:
                    raise ValueError("the server closed the connection after answering")
                ports.append(conn.sock.getsockname()[1])
        finally:
            conn.close()
        detail.update(local_ports=ports, reused=ports[0] == ports[1])
        if not detail["reused"]:
            raise ValueError("the server closed the kept-alive connection between requests")

    return _timed("L5", body)


def canary_payload(now: float) -> dict[str, Any]:
    """Return the canary task's payload: one cheap step whose cost comes from the settings."""
    return {"steps": 1, "note": f"{L6_SAMPLE} {now:.3f}"}


def probe_application(
    target: CanaryTarget, slo_s: float = 0.5, deadline_s: float = 10.0
) -> tuple[ProbeResult, ProbeResult]:
    """L7 and L6: submit a canary task, wait for a worker to complete it, compare the payload."""
    payload = canary_payload(time.time())
    echoes: list[tuple[str, Any]] = []
    damaged: list[str] = []

    def body(detail: dict[str, Any]) -> None:
        with httpx.Client(base_url=target.api_url, timeout=5.0) as client:
            try:
                answer = client.post("/api/tasks", json={"kind": "orchestrate", "payload": payload})
                created = answer.json() if answer.status_code == 201 else None
            except (httpx.RemoteProtocolError, ValueError) as exc:
                # The answer arrived cut short or is not JSON: its representation is damaged (L6).
                damaged.append(f"{type(exc).__name__}: {exc}"[:200])
                raise
            detail["submit_status"] = answer.status_code
            if created is None:
                raise ValueError(f"submit answered {answer.status_code}: {answer.text[:160]}")
            echoes.append((answer.headers.get("content-type", ""), created["payload"]))
            task = _await_completion(client, answer.json()["id"], deadline_s)
            echoes.append(("read", task["payload"]))
        detail.update(task_id=task["id"], status=task["status"], result=task["result"])
        if task["status"] != "completed":
            raise ValueError(f"canary task not completed within {deadline_s:g} s")
        latency_s = float(task["finished_at"]) - float(task["created_at"])
        detail.update(task_latency_s=round(latency_s, 6), slo_s=slo_s)
        if latency_s > slo_s:
            raise ValueError(f"canary task took {latency_s:.3f} s > SLO {slo_s:g} s")

    l7 = _timed("L7", body)
    if damaged:
        cut = f"the submit answer could not be read whole: {damaged[0]}"
        return l7, ProbeResult("L6", False, 0.0, {"damaged": damaged[0]}, cut)
    if not echoes:
        return l7, ProbeResult("L6", False, 0.0, {}, "no answer to compare (L7 failed first)")
    same = all(echo == payload for _, echo in echoes)
    json_type = echoes[0][0].startswith("application/json")
    detail = {"content_type": echoes[0][0], "compared": len(echoes), "identical": same}
    error = None if same and json_type else "payload or content type changed on the way back"
    return l7, ProbeResult("L6", error is None, 0.0, detail, error)


def probe_tls(data_dir: DataDir, host: str, l6: ProbeResult) -> ProbeResult:
    """Add a TLS handshake with the HTTPS listener to L6, when the instance serves one."""
    port = tls.listener_port(data_dir)
    if port is None or not tls.cert_path(data_dir).exists():
        return ProbeResult(l6.layer, l6.ok, l6.latency_s, {**l6.detail, "tls": "off"}, l6.error)
    started = time.perf_counter()
    try:
        served = tls.served_certificate(host, port)
    except (OSError, ValueError) as exc:
        failed = f"TLS handshake with port {port} failed: {exc}"
        return ProbeResult(l6.layer, False, time.perf_counter() - started, l6.detail, failed)
    elapsed_s = time.perf_counter() - started
    seen = {"port": port, **served.to_json()}
    expired = "the served certificate has expired" if served.days_left() < 0 else None
    error = l6.error or expired
    return ProbeResult(l6.layer, error is None, elapsed_s, {**l6.detail, "tls": seen}, error)


def _await_completion(client: httpx.Client, task_id: str, deadline_s: float) -> dict[str, Any]:
    """Poll the task with a growing interval until it is final or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    delay_s = 0.05
    while True:
        task: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
        if task["status"] in {"completed", "failed", "cancelled"} or time.monotonic() > deadline:
            return task
        time.sleep(delay_s)
        delay_s = min(0.5, delay_s * 1.5)


def record(
    store: Store, results: list[ProbeResult], now: float | None = None
) -> list[dict[str, Any]]:
    """Store one round's results with their running counts, in one transaction."""
    when = time.time() if now is None else now
    entries = []
    with store.write() as conn:
        for result in results:
            key = STATE_PREFIX + result.layer
            row = conn.execute("SELECT value FROM healer_state WHERE key = ?", (key,)).fetchone()
            previous = json.loads(row[0]) if row else {}
            failed = 0 if result.ok else 1
            entry = {
                "layer": result.layer,
                "name": LAYERS[result.layer],
                "ok": result.ok,
                "latency_s": round(result.latency_s, 6),
                "checked_at": when,
                "detail": result.detail,
                "error": result.error,
                "consecutive_failures": previous.get("consecutive_failures", 0) + 1
                if failed
                else 0,
                "checks_total": previous.get("checks_total", 0) + 1,
                "failures_total": previous.get("failures_total", 0) + failed,
            }
            conn.execute(
                "INSERT INTO healer_state(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(entry)),
            )
            entries.append(entry)
    return entries


def load(store: Store, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Last result of every layer that has one, each marked stale when too old."""
    when = time.time() if now is None else now
    found = {}
    for layer in LAYERS:
        entry = read_state(store, STATE_PREFIX + layer)
        if entry:
            entry["age_s"] = round(when - float(entry["checked_at"]), 3)
            entry["stale"] = entry["age_s"] > STALE_AFTER_S
            found[layer] = entry
    return found


def failing(store: Store, layer: str, min_failures: int = 2) -> dict[str, Any] | None:
    """Return the layer's fresh last result if it failed ``min_failures`` times in a row."""
    entry = load(store).get(layer)
    if entry is None or entry["stale"] or entry["consecutive_failures"] < min_failures:
        return None
    return entry


def metric_families(store: Store) -> list[GaugeMetricFamily | CounterMetricFamily]:
    """Prometheus families of the canary results (read at scrape time, like the task metrics)."""
    up = GaugeMetricFamily(
        "guardian_canary_up", "Last canary result per OSI layer: 1 ok, 0 failed.", labels=["layer"]
    )
    latency = GaugeMetricFamily(
        "guardian_canary_latency_seconds",
        "Duration of the last canary probe per layer (L7: submit to completion).",
        labels=["layer"],
    )
    age = GaugeMetricFamily(
        "guardian_canary_last_check_timestamp_seconds",
        "Unix time of the last canary probe per layer.",
        labels=["layer"],
    )
    checks = CounterMetricFamily("guardian_canary_checks", "Canary probes run.", labels=["layer"])
    failures = CounterMetricFamily(
        "guardian_canary_failures", "Canary probes that failed.", labels=["layer"]
    )
    for layer, entry in load(store).items():
        up.add_metric([layer], 1.0 if entry["ok"] else 0.0)
        task_latency = entry["detail"].get("task_latency_s") if layer == "L7" else None
        latency.add_metric([layer], float(task_latency or entry["latency_s"]))
        age.add_metric([layer], float(entry["checked_at"]))
        checks.add_metric([layer], float(entry["checks_total"]))
        failures.add_metric([layer], float(entry["failures_total"]))
    return [up, latency, age, checks, failures]


class CanaryRunner:
    """Two daemon threads: the network layers (L2-L5) and the application layers (L6-L7)."""

    def __init__(
        self,
        env: HealEnv,
        target: CanaryTarget,
        interval_s: float = 5.0,
        slo_s: float = 0.5,
    ) -> None:
        """Bind to the instance; ``start`` launches the threads."""
        self.env = env
        self.target = CanaryTarget.with_front_from_env(target)
        self.interval_s = interval_s
        self.slo_s = slo_s
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Launch both probe loops."""
        for name, round_ in (("canary-net", self.network_round), ("canary-app", self.app_round)):
            thread = threading.Thread(target=self._loop, args=(round_,), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        log.info("canaries started", extra={"api": self.target.api_url})

    def stop(self, timeout_s: float = 12.0) -> None:
        """Ask both loops to stop and wait for them (bounded)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout_s)

    def _loop(self, round_: Callable[[], list[ProbeResult]]) -> None:
        """Probe, record, sleep; after a failure the next round comes sooner (confirmation).

        The results are telemetry: this thread's connection commits without fsync
        (``synchronous=NORMAL``, still crash-safe in WAL mode), so it holds the write lock for
        microseconds, not for a disk flush.
        """
        self.env.store().conn.execute("PRAGMA synchronous=NORMAL")
        while not self.stopping.is_set():
            healthy = True
            try:
                results = round_()
                healthy = all(result.ok for result in results)
                for entry in record(self.env.store(), results):
                    if entry["consecutive_failures"] == 1:
                        log.warning(
                            "canary failed",
                            extra={"layer": entry["layer"], "error": entry["error"]},
                        )
            except StoreError:
                log.exception("canary could not record its result")
            self.stopping.wait(self.interval_s if healthy else RETRY_S)

    def network_round(self) -> list[ProbeResult]:
        """L2-L5, towards the upstream the workers use now (a settings override wins)."""
        target = self.target
        override = getattr(settings_mod.load(self.env.store()), "upstream_url", "")
        if override:
            target = replace(target, upstream_url=override)
        return [
            probe_link(target),
            probe_network(target),
            probe_transport(target),
            probe_session(target),
        ]

    def app_round(self) -> list[ProbeResult]:
        """L7 then L6; a passing L7 round also records the configuration it proved good."""
        l7, l6 = probe_application(self.target, self.slo_s)
        l6 = probe_tls(self.env.data_dir, self.target.api_host, l6)
        result = l7.detail.get("result") or {}
        if l7.ok and "cost_ms" in result:
            good = {"orchestrate_cost_ms": int(result["cost_ms"]), "at": time.time()}
            if (known_good(self.env.store()) or {}).get("orchestrate_cost_ms") != good[
                "orchestrate_cost_ms"
            ]:
                write_state(self.env.store(), KNOWN_GOOD_KEY, good)
        return [l7, l6]


def known_good(store: Store) -> dict[str, Any] | None:
    """Return the configuration the last passing L7 canary ran with, if any."""
    value = read_state(store, KNOWN_GOOD_KEY)
    return value if isinstance(value, dict) else None


def json_report(store: Store) -> dict[str, Any]:
    """Return the JSON shape of ``GET /api/guardian/canaries``."""
    layers = load(store)
    return {
        "layers": {
            layer: {**layers[layer], "name": name} if layer in layers else {"name": name}
            for layer, name in LAYERS.items()
        },
        "stale_after_s": STALE_AFTER_S,
        "known_good": known_good(store),
        "generated_at": time.time(),
    }
