"""H7: the target's canary probes for layers 2-7: their metrics exist, are live, and move under a fault.

On an instance of its own (the gate's service arguments, so the healer and its canaries run) the
harness scrapes the metrics endpoint itself: first for two canary intervals and a margin, where
every layer's `up` and `last check` gauges must be present and the last-check value must change
(live telemetry, not a constant); then, per declared fault, it causes the fault at the layer one
canary watches (a dependency's port closed by stopping it, a wrong response through the target's
fault injection, a Toxiproxy toxic on the harness's own proxy in front of the API, which the
target's canaries are told to reach it through) and measures, from the injection, the first scrape
in which that canary reads 0 from a check run after the fault. A canary must move within its
interval plus `slack_s`. A toxic is removed once its reaction is measured; the other layers down in
that scrape are recorded (a fault at L5 also takes the layers above it down; L4 must stay up).

A layer in `must_react` (default L4-L7) with no fault declared is NOT_RUN. Layers left out of it,
at which no fault can be caused on this host (L2/L3 on a shared loopback), are reported as not
observable with the declared reason: never a PASS. Collect records the scraped values; the judge
is pure over them.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from chaos.toxiproxy_client import ToxiproxyClient, find_or_start_toxiproxy, stop_toxiproxy
from gates.playbooks.config import CanaryCheck, PlaybookPolicy
from gates.playbooks.observe import call
from harness.errors import HarnessError
from harness.procs import stop_many

if TYPE_CHECKING:
    from gates.playbooks.instances import PlaybookInstances
    from harness.lifecycle import Instance

STOP_GRACE_S = 3.0
FRONT_PROXY = "pb-canary-front"


def read_canaries(port: int, metrics_path: str, check: CanaryCheck) -> dict[str, Any]:
    """One scrape of the metrics endpoint: {at, layers: {layer: {up, last}}, error} (never raises)."""
    at = time.time()
    url = f"http://127.0.0.1:{port}{metrics_path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return {"at": round(at, 3), "layers": {}, "error": f"{type(exc).__name__}: {exc}"[:200]}
    layers: dict[str, dict[str, float]] = {}
    wanted = {check.up_metric: "up", check.last_check_metric: "last"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = wanted.get(sample.name)
            layer = sample.labels.get(check.layer_label)
            if key and layer in check.layers:
                layers.setdefault(layer, {})[key] = float(sample.value)
    return {"at": round(at, 3), "layers": layers, "error": None}


def _scrape_for(port: int, path: str, check: CanaryCheck, seconds: float, cancel: threading.Event) -> list[Any]:
    """Scrape every scrape_interval_s for `seconds`."""
    scrapes = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not cancel.is_set():
        scrapes.append(read_canaries(port, path, check))
        time.sleep(check.scrape_interval_s)
    return scrapes


def _passing(scrape: dict[str, Any], layer: str, since: float) -> bool:
    """Whether this scrape shows the layer's canary passed in a check recorded at or after `since`."""
    seen = scrape["layers"].get(layer, {})
    return seen.get("up") == 1.0 and float(seen.get("last", 0.0)) >= since


def _moved(scrape: dict[str, Any], layer: str, since: float) -> bool:
    """Whether this scrape shows the layer's canary failed in a check that ran at or after `since`."""
    seen = scrape["layers"].get(layer, {})
    return seen.get("up") == 0.0 and float(seen.get("last", 0.0)) >= since


def _cause(policy: PlaybookPolicy, instance: Instance, fault: Any, front: ToxiproxyClient | None) -> dict[str, Any]:
    """Cause one fault; what was done, as recorded evidence."""
    if fault.toxic:
        if front is None:
            return {"error": "a toxic fault needs [gates.PB.canaries] front_env: the canaries bypass the proxy"}
        try:
            added = front.add_toxic(FRONT_PROXY, fault.toxic, stream=fault.stream, attributes=fault.attributes)
        except (HarnessError, OSError) as exc:
            return {"error": f"toxic {fault.toxic} not added: {exc}"[:300]}
        return {"toxic": added.type, "name": added.name, "stream": added.stream, "attributes": dict(added.attributes)}
    if fault.stop_dependency:
        proc = instance.procs.get(fault.stop_dependency)
        if proc is None:
            return {"error": f"the instance has no dependency {fault.stop_dependency!r}"}
        stop_many([proc], STOP_GRACE_S)
        return {"stopped": fault.stop_dependency, "pid": proc.pid, "returncode": proc.poll()}
    answer = call(instance.port, policy.target_api.inject, {"id": fault.inject}, policy.target_api.inject.body or {})
    return {"inject": fault.inject, "status": answer["status"], "error": answer["error"]}


def _undo(front: ToxiproxyClient | None, caused: dict[str, Any]) -> dict[str, Any] | None:
    """Remove a toxic fault once measured (other faults are not undone); what happened, or None."""
    if front is None or "name" not in caused:
        return None
    try:
        front.delete_toxic(FRONT_PROXY, caused["name"])
    except (HarnessError, OSError) as exc:
        return {"removed": False, "error": str(exc)[:300]}
    return {"removed": True, "at": round(time.time(), 3)}


def _run_fault(  # noqa: PLR0917 - the canary instance's context, passed down from collect
    policy: PlaybookPolicy,
    instance: Instance,
    path: str,
    fault: Any,
    cancel: threading.Event,
    front: ToxiproxyClient | None,
    fresh_since: float,
) -> Any:
    """Wait for the layer's canary to pass, cause the fault, scrape until it moves or the budget ends.

    The pass must come from a check recorded at or after `fresh_since` (the end of the previous fault):
    a round still failing from that fault must not be taken for this fault's reaction.
    """
    check = policy.canaries
    assert check is not None  # noqa: S101 - only run when declared
    before = _scrape_for(instance.port, path, check, 0.0, cancel)
    deadline = time.monotonic() + 3 * check.interval_s
    while time.monotonic() < deadline and not cancel.is_set():
        before.append(read_canaries(instance.port, path, check))
        if _passing(before[-1], fault.layer, fresh_since):
            break
        time.sleep(check.scrape_interval_s)
    fault_at = time.time()
    caused = _cause(policy, instance, fault, front)
    after: list[dict[str, Any]] = []
    deadline = time.monotonic() + check.interval_s + check.slack_s + 5.0
    while time.monotonic() < deadline and not cancel.is_set():
        after.append(read_canaries(instance.port, path, check))
        if _moved(after[-1], fault.layer, fault_at):
            break
        time.sleep(check.scrape_interval_s)
    return {
        "layer": fault.layer,
        "title": fault.title,
        "fresh_since": round(fresh_since, 3),
        "before": before[-3:],
        "fault_at": round(fault_at, 3),
        "caused": caused,
        "after": after,
        "undone": _undo(front, caused),
    }


@contextlib.contextmanager
def _front_door(instances: PlaybookInstances, check: CanaryCheck) -> Iterator[tuple[ToxiproxyClient, str] | None]:
    """A Toxiproxy-compatible server with one proxy for the canaries to reach the API through (None: not needed).

    The proxy's upstream is set once the instance's port is known; the server is stopped afterwards.
    """
    if not check.front_env or not any(fault.toxic for fault in check.faults):
        yield None
        return
    base_url, process = find_or_start_toxiproxy(instances.ctx.scratch / "canary-toxiproxy")
    try:
        client = ToxiproxyClient(base_url, timeout_s=5.0)
        # Port 9 (discard) until the instance runs: nothing listens there, so early canaries fail, not hang.
        proxy = client.create_proxy(FRONT_PROXY, "127.0.0.1:9")
        yield client, f"127.0.0.1:{proxy.port}"
    finally:
        stop_toxiproxy(process)


def collect_canaries(
    instances: PlaybookInstances, policy: PlaybookPolicy, metrics_path: str, cancel: threading.Event
) -> dict[str, Any]:
    """The canary instance: a live window of scrapes, then every declared fault in turn."""
    check = policy.canaries
    assert check is not None  # noqa: S101 - only run when declared
    record: dict[str, Any] = {"metrics_path": metrics_path, "faults": []}
    with _front_door(instances, check) as door:
        env = {check.front_env: door[1]} if door else {}
        front = door[0] if door else None
        with instances.running("PB-canaries", env) as instance:
            record["instance"] = instance.name
            if front is not None:
                front.update_proxy(FRONT_PROXY, upstream=f"127.0.0.1:{instance.port}")
                record["front"] = {"env": check.front_env, "listen": door[1] if door else "", "api_port": instance.port}
            window_s = 2 * check.interval_s + check.slack_s
            record["live"] = _scrape_for(instance.port, metrics_path, check, window_s, cancel)
            fresh_since = 0.0
            for fault in check.faults:
                record["faults"].append(_run_fault(policy, instance, metrics_path, fault, cancel, front, fresh_since))
                fresh_since = time.time()
    return record


def _layer_rows(check: CanaryCheck, live: list[dict[str, Any]]) -> tuple[dict[str, str], list[str], list[Any]]:
    """Per layer: metrics present, last-check value changing while the service ran."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    rows = []
    seconds = (live[-1]["at"] - live[0]["at"]) if len(live) > 1 else 0.0
    for layer in check.layers:
        seen = [s["layers"][layer] for s in live if layer in s["layers"]]
        present = any("up" in v and "last" in v for v in seen)
        values = sorted({v["last"] for v in seen if "last" in v})
        checks[f"{layer} metrics"] = "PASS" if present else "FAIL"
        checks[f"{layer} live"] = "PASS" if len(values) >= 2 else "FAIL"
        if not present:
            reasons.append(f"canary {layer}: {check.up_metric} / {check.last_check_metric} absent from the scrapes")
        elif len(values) < 2:
            reasons.append(f"canary {layer}: {check.last_check_metric} did not change in {seconds:.1f} s of scrapes")
        rows.append({"layer": layer, "scrapes": len(seen), "distinct_last_checks": len(values)})
    return checks, reasons, rows


def judge_canaries(policy: PlaybookPolicy, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Metrics, liveness and fault reactions per layer; None when H7 is not declared. Pure."""
    check = policy.canaries
    if check is None:
        return None
    if record is None:
        return {
            "checks": {"canaries": "NOT_RUN"},
            "reasons": ["canaries: no canary record"],
            "layers": [],
            "faults": [],
            "unobservable": dict(check.unobservable),
            "budget_s": 0.0,
        }
    if record.get("start_error"):
        return {
            "checks": {"canaries": "FAIL"},
            "reasons": [f"canaries: instance did not start: {record['start_error']}"],
            "layers": [],
            "faults": [],
            "unobservable": dict(check.unobservable),
            "budget_s": 0.0,
        }
    checks, reasons, rows = _layer_rows(check, record.get("live", []))
    budget_s = check.interval_s + check.slack_s
    faults = []
    for fault in record.get("faults", []):
        layer, at = fault["layer"], fault["fault_at"]
        moved = [s for s in fault["after"] if _moved(s, layer, at)]
        reaction_s = round(moved[0]["at"] - at, 3) if moved else None
        ok = reaction_s is not None and reaction_s <= budget_s
        checks[f"{layer} fault"] = "PASS" if ok else "FAIL"
        # Recorded since the ordering fix: the layer passed in a check after the previous fault ended.
        before = fault.get("before")
        if ok and before is not None and not any(_passing(s, layer, fault.get("fresh_since", 0.0)) for s in before):
            checks[f"{layer} fault"] = "INCONCLUSIVE"
            reasons.append(
                f"canary {layer}: not seen passing after the previous fault, so its move is not this fault's"
            )
        if fault["caused"].get("error"):
            reasons.append(
                f"canary {layer}: the fault ({fault['title']}) could not be caused: {fault['caused']['error']}"
            )
        if reaction_s is None:
            reasons.append(f"canary {layer}: did not read 0 within {budget_s:g} s of the fault ({fault['title']})")
        elif not ok:
            reasons.append(f"canary {layer}: moved {reaction_s:.1f} s after the fault, > {budget_s:g} s")
        # The other layers that read 0 in the same scrape: how far up (or down) the stack the fault reached.
        down = moved[0]["layers"].items() if moved else ()
        also = sorted(other for other, seen in down if other != layer and seen.get("up") == 0.0)
        faults.append(
            {
                "layer": layer,
                "title": fault["title"],
                "reaction_s": reaction_s,
                "status": checks[f"{layer} fault"],
                "also_down": also,
            }
        )
    if not faults:
        checks["faults"] = "FAIL"
        reasons.append("canaries: no [[gates.PB.canaries.faults]] declared: no canary was shown to react to a fault")
    faulted = {f["layer"] for f in faults}
    for layer in (layer for layer in check.layers if layer in check.must_react and layer not in faulted):
        checks[f"{layer} fault"] = "NOT_RUN"
        why = check.unobservable.get(layer, "none declared")
        reasons.append(f"canary {layer}: no fault caused at this layer, so its reaction is not shown ({why})")
    not_shown = {
        layer: check.unobservable.get(layer, "no fault declared for this layer")
        for layer in check.layers
        if layer not in faulted
    }
    return {
        "checks": checks,
        "reasons": reasons,
        "layers": rows,
        "faults": faults,
        "unobservable": not_shown,
        "budget_s": budget_s,
    }
