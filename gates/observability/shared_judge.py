"""G6's pure assessment of the run-wide Prometheus: G2's load profiles and G4's chaos faults, seen from outside.

Reads only G6's evidence under shared/ (written by shared.record_shared): the windows, Prometheus's
answers, the ALERTS and `up` range queries and the load generator's raw rows of each profile.
"""

from __future__ import annotations

import math
from typing import Any

from gates.observability import evidence as ev
from gates.observability.check import Check
from gates.observability.exposition import bucket_delta, bucket_range, quantile_bucket
from gates.observability.judge import compare_quantile, harness_rows, prom_delta, within
from gates.observability.policy import ObservabilityPolicy
from gates.observability.prom import INSTALL_HINT
from harness.model import Measurement, Status, worst
from load.stats import RawRow, nearest_rank, parse_raw

RUN = "shared/run.json"
ANSWERS = "shared/answers.json"
ALERTS = "shared/alerts-range.json"
UP = "shared/up-range.json"
MIN_SCRAPE_SHARE = 0.8


def _series(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The result list of a successful range query, else empty."""
    return list(body.get("data", {}).get("result", [])) if body.get("status") == "success" else []


def alert_series(body: dict[str, Any]) -> list[tuple[str, str, list[float]]]:
    """(alert name, instance label or '', unix times firing) of each firing ALERTS series."""
    out = []
    for series in _series(body):
        labels = series.get("metric", {})
        if labels.get("alertstate") == "firing":
            times = [float(t) for t, _ in series.get("values", [])]
            out.append((str(labels.get("alertname", "?")), str(labels.get("instance", "")), times))
    return out


def fired_in(
    alerts: list[tuple[str, str, list[float]]], instance: str, start: float, end: float, *, alone: bool = True
) -> dict[str, float]:
    """Alert -> first firing time in [start, end] on that instance.

    A series without an instance label counts only for a window that had the machine to itself
    (`alone`): beside another experiment's instance it could be that one's alert.
    """
    fired: dict[str, float] = {}
    for name, where, times in alerts:
        if (where and where != instance) or (not where and not alone):
            continue
        inside = [t for t in times if start <= t <= end]
        if inside:
            fired[name] = min(fired.get(name, math.inf), *inside)
    return fired


def _buckets(body: dict[str, Any]) -> dict[float, float]:
    """Cumulative counts by `le` from a `sum by (le)` instant query."""
    if body.get("status") != "success":
        return {}
    return {float(s["metric"]["le"]): float(s["value"][1]) for s in body["data"]["result"] if "le" in s["metric"]}


def check_shared_scrape(facts: dict[str, Any], up: dict[str, Any], policy: ObservabilityPolicy) -> Check:
    """Prometheus scraped each load profile's instance before, throughout and after the profile."""
    findings, table = [], []
    by_instance: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for series in _series(up):
        key = (series["metric"].get("certify_gate", ""), series["metric"].get("certify_name", ""))
        by_instance.setdefault(key, []).extend((float(t), float(v)) for t, v in series.get("values", []))
    for window in (w for w in facts["windows"] if w["kind"] == "load"):
        entry = instance_of(facts["instances"], window)
        seen = by_instance.get((window["gate"], window["name"]), [])
        samples = [v for t, v in seen if window["start"] <= t <= window["end"]]
        expected = max(1, math.floor((window["end"] - window["start"]) / facts.get("range_step_s", 1.0)))
        row = {
            "window": window["name"],
            "up_samples": len(samples),
            "expected": expected,
            "down": sum(1 for v in samples if v != 1.0),
            "first_scrape_before": entry.get("first_scrape") is not None and entry["first_scrape"] <= window["start"],
            "scraped_after": entry.get("last_scrape") is not None and entry["last_scrape"] >= window["end"],
        }
        ok = row["first_scrape_before"] and row["scraped_after"] and len(samples) >= MIN_SCRAPE_SHARE * expected
        if not ok:
            findings.append(
                f"{window['name']}: {len(samples)} scrapes for ~{expected} expected; scraped before the profile: "
                f"{row['first_scrape_before']}, after it: {row['scraped_after']}"
            )
        row["status"] = (Status.PASS if ok else Status.FAIL).value
        table.append(row)
    status = Status.FAIL if findings else Status.PASS
    summary = f"{len(table) - len(findings)} of {len(table)} load profiles scraped throughout"
    return Check("shared scrape", status, summary, findings, [], table)


def instance_of(instances: list[dict[str, Any]], window: dict[str, Any]) -> dict[str, Any]:
    """The watched-instance record of a window (by gate and name), or {}."""
    return next((i for i in instances if i["gate"] == window["gate"] and i["name"] == window["name"]), {})


def check_shared_counters(
    view: ev.EvidenceView, facts: dict[str, Any], answers: dict[str, Any], policy: ObservabilityPolicy
) -> Check:
    """Per load profile, each target counter's increase (via Prometheus) agrees with the generator's count."""
    statuses, findings, table, measures = [], [], [], []
    for window in (w for w in facts["windows"] if w["kind"] == "load"):
        got = answers.get(window["name"], {})
        if not window.get("raw") or got.get("after_at") is None:
            statuses.append(Status.INCONCLUSIVE)
            why = "no raw rows were kept" if not window.get("raw") else "Prometheus did not scrape it after the profile"
            findings.append(f"{window['name']}: not compared: {why}")
            continue
        rows = parse_raw(view.read_bytes(window["raw"]))
        for item in policy.cross_checks:
            harness = len(harness_rows(rows, item))
            target = prom_delta(got["cross"], item.name)
            status = Status.PASS
            if target is None:
                status = Status.FAIL
                findings.append(f"{window['name']} {item.name}: Prometheus could not answer the query")
            elif harness == 0 and not item.may_be_zero:
                status = Status.INCONCLUSIVE
            elif not within(target, harness, policy.tolerance):
                status = Status.FAIL
                findings.append(
                    f"{window['name']} {item.name}: Prometheus shows {target:g}, the generator {harness} "
                    f"(> {policy.tolerance:.0%})"
                )
            row = {"window": window["name"], "name": item.name, "harness": harness, "prometheus": target}
            table.append({**row, "status": status.value})
            statuses.append(status)
            if target is not None:
                label = f"{window['name']} {item.name}: |Prometheus - generator|"
                allowed = policy.tolerance * max(harness, 1)
                measures.append(Measurement.judged(label, abs(target - harness), "<=", allowed))
    if not policy.cross_checks:
        return Check("shared cross-check", Status.INCONCLUSIVE, "no cross-checks declared ([[gates.G6.cross_checks]])")
    agreed = sum(1 for row in table if row["status"] == "PASS")
    summary = f"{agreed} of {len(table)} profile counters agree with the load generator"
    return Check("shared cross-check", worst(statuses or [Status.INCONCLUSIVE]), summary, findings, measures, table)


def check_shared_latency(
    view: ev.EvidenceView, facts: dict[str, Any], answers: dict[str, Any], policy: ObservabilityPolicy
) -> Check:
    """Per load profile, the histogram's quantile bucket (via Prometheus) is consistent with the measured one."""
    statuses, findings, table = [], [], []
    for window in (w for w in facts["windows"] if w["kind"] == "load" and w.get("raw")):
        got = answers.get(window["name"], {}).get("latency", {})
        rows: list[RawRow] = parse_raw(view.read_bytes(window["raw"]))
        for item in policy.latency_checks:
            body = got.get(item.name, {})
            buckets = bucket_delta(_buckets(body.get("before", {})), _buckets(body.get("after", {})))
            index = quantile_bucket(buckets, item.quantile)
            samples = sorted(r.end_s - r.sent_s for r in harness_rows(rows, item) if r.end_s is not None)
            row: dict[str, Any] = {"window": window["name"], "name": item.name, "n_harness": len(samples)}
            status = Status.PASS
            if not samples:
                status = Status.INCONCLUSIVE
            elif index is None:
                status = Status.FAIL
                findings.append(f"{window['name']} {item.name}: {item.histogram} recorded nothing during the profile")
            else:
                measured = nearest_rank(samples, item.quantile)
                distance, finding = compare_quantile(buckets, index, measured, item.client_overhead_ms / 1000)
                bucket = list(bucket_range(buckets, index))
                row |= {"harness_s": round(measured, 6), "bucket": bucket, "distance": distance}
                if finding:
                    status = Status.FAIL
                    findings.append(f"{window['name']} {item.name}: measured p{item.quantile * 100:g} {finding}")
            row["status"] = status.value
            table.append(row)
            statuses.append(status)
    if not policy.latency_checks:
        return Check("shared latency", Status.INCONCLUSIVE, "no latency checks declared ([[gates.G6.latency_checks]])")
    summary = f"{len(table)} profile histogram(s) against the measured quantile"
    return Check("shared latency", worst(statuses or [Status.INCONCLUSIVE]), summary, findings, [], table)


def check_shared_alerts(facts: dict[str, Any], alerts_body: dict[str, Any], policy: ObservabilityPolicy) -> Check:
    """Expected alerts fire during each chaos experiment's fault; none fires during a load profile."""
    alerts = alert_series(alerts_body)
    grace = policy.shared.grace_s
    findings, table, statuses = [], [], []
    for window in facts["windows"]:
        alone = not window.get("concurrent")
        fired = fired_in(alerts, window.get("instance", ""), window["start"], window["end"] + grace, alone=alone)
        expected: tuple[str, ...] = ()
        if window["kind"] == "chaos":
            expected = policy.shared.chaos_alerts.get(window["name"].split("#", 1)[0], ())
        length = window["end"] - window["start"] + grace
        checkable = [a for a in expected if facts["alert_for_s"].get(a, 0.0) <= length]
        missing = [a for a in checkable if a not in fired]
        status = Status.PASS
        if missing:
            status = Status.FAIL
            findings += [f"{window['name']}: {a} did not fire between the injection and recovery" for a in missing]
        if window["kind"] == "load" and policy.shared.quiet_during_load and fired:
            status = Status.FAIL
            findings.append(f"{window['name']}: {', '.join(sorted(fired))} fired during a load profile with no fault")
        unknown = [a for a in expected if a not in facts["alert_for_s"]]
        if unknown:
            status = Status.FAIL
            findings.append(f"{window['name']}: expected alert(s) {', '.join(unknown)} are in no loaded rule file")
        row = {
            "window": window["name"],
            "kind": window["kind"],
            "fired": {name: round(t - window["start"], 1) for name, t in sorted(fired.items())},
            "expected": list(expected),
            "not_checkable": [a for a in expected if a not in checkable and a not in unknown],
            "length_s": round(length, 1),
            "status": status.value,
        }
        table.append(row)
        statuses.append(status)
    wanted = sum(len(r["expected"]) - len(r["not_checkable"]) for r in table)
    skipped = sum(len(r["not_checkable"]) for r in table)
    summary = f"{len(table)} windows; {wanted} expected chaos alert firing(s) checked"
    if skipped:
        summary += f", {skipped} not checkable (the rule's for: is longer than the fault and recovery)"
    status = worst(statuses or [Status.INCONCLUSIVE])
    chaos = [r for r in table if r["kind"] == "chaos"]
    if status is Status.PASS and chaos and not any(r["expected"] for r in chaos):
        status = Status.INCONCLUSIVE
        findings.append("no alert is expected during any chaos experiment ([gates.G6.shared] chaos_alerts)")
    return Check("shared alerts", status, summary, findings, [], table)


def assess_shared(view: ev.EvidenceView, policy: ObservabilityPolicy) -> list[Check]:
    """The shared-Prometheus checks; none when G6 ran without a watched gate before it."""
    if not view.exists(RUN):
        return []
    facts = view.read_json(RUN)
    if not facts["running"]:
        status = Status.NOT_RUN if "not installed" in facts["failure"] else Status.INCONCLUSIVE
        hint = f" (install: {INSTALL_HINT})" if status is Status.NOT_RUN else ""
        return [Check("shared Prometheus", status, f"{facts['failure']}{hint}")]
    if not facts["windows"]:
        gates = ", ".join(facts["gates"])
        return [Check("shared Prometheus", Status.INCONCLUSIVE, f"{gates} recorded no window to observe")]
    checks = []
    if any(window["kind"] == "load" for window in facts["windows"]):
        answers = view.read_json(ANSWERS)
        checks += [
            check_shared_scrape(facts, view.read_json(UP), policy),
            check_shared_counters(view, facts, answers, policy),
            check_shared_latency(view, facts, answers, policy),
        ]
    return [*checks, check_shared_alerts(facts, view.read_json(ALERTS), policy)]
