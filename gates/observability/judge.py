"""G6's pure assessment: every check recomputed from the evidence (scrapes, raw traffic, Prometheus answers, logs).

Both `evaluate` (on the pack) and `collect` (on the recorder, to write the report) call `assess`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from gates.observability import evidence as ev
from gates.observability.check import Check, not_run_prometheus
from gates.observability.exposition import (
    Scrape,
    bucket_counts,
    bucket_delta,
    bucket_range,
    changed_samples,
    parse_scrape,
    quantile_bucket,
    selected_sum,
)
from gates.observability.logs import check_lines
from gates.observability.policy import CrossCheck, LatencyCheck, ObservabilityPolicy
from gates.observability.rulecheck import assess_dashboards, assess_rules_static
from gates.observability.slo_judge import check_slo
from harness.model import Measurement, Status, worst
from load.stats import RawRow, nearest_rank, parse_raw

ALERT_GRACE_S = 5.0


def scrapes(view: ev.EvidenceView) -> dict[str, Scrape]:
    """The direct scrapes recorded, parsed."""
    return {
        label: parse_scrape(view.read_text(ev.scrape_name(label)))
        for label in ev.SCRAPES
        if view.exists(ev.scrape_name(label))
    }


def family_key(name: str, types: dict[str, str]) -> str:
    """A policy family name as prometheus_client names it (counters lose `_total`)."""
    if name not in types and name.endswith("_total") and name.removesuffix("_total") in types:
        return name.removesuffix("_total")
    return name


def check_metrics(parsed: dict[str, Scrape], policy: ObservabilityPolicy) -> Check:
    """Exposition parses; no duplicate samples; required families present with the right types."""
    if "after-load" not in parsed:
        return Check("metrics", Status.FAIL, "no scrape of /metrics after the load was recorded")
    scrape = parsed["after-load"]
    findings = [f"/metrics ({label}) does not parse: {s.error}" for label, s in parsed.items() if s.error]
    findings += [f"duplicate sample {name}" for name in scrape.duplicates[:5]]
    rows = []
    for name, wanted in sorted(policy.required_families.items()):
        key = family_key(name, scrape.types)
        found = scrape.types.get(key)
        rows.append({"family": name, "wanted": wanted, "found": found or "missing"})
        if found is None:
            findings.append(f"required family {name} ({wanted}) is not exposed")
        elif found != wanted:
            findings.append(f"family {name} is a {found}, policy requires a {wanted}")
    if not policy.required_families and not findings:
        return Check("metrics", Status.INCONCLUSIVE, "no required families declared ([gates.G6] required_families)")
    status = Status.FAIL if findings else Status.PASS
    summary = f"{len(scrape.types)} families, {len(scrape.samples)} samples; {len(policy.required_families)} required"
    found_n = sum(1 for row in rows if row["found"] == row["wanted"])
    measure = Measurement.judged("required families present with the right type", found_n, ">=", len(rows))
    return Check("metrics", status, summary, findings, [measure], rows)


def harness_rows(rows: list[RawRow], check: CrossCheck | LatencyCheck) -> list[RawRow]:
    """The generator's rows a check counts."""
    kinds = ("task",) if isinstance(check, CrossCheck) and check.rows == "tasks" else check.kinds
    picked = [r for r in rows if r.kind in kinds and (not check.requests or r.request in check.requests)]
    if isinstance(check, CrossCheck):
        if check.status:
            picked = [r for r in picked if re.fullmatch(check.status, r.status)]
        if check.ok is not None:
            picked = [r for r in picked if r.ok is check.ok]
    return picked


def prom_delta(prom: dict[str, Any], name: str) -> float | None:
    """after - before of a cross-check's Prometheus queries (an empty result is 0); None if a query failed."""
    values = []
    for when in ("before", "after"):
        body = prom.get(name, {}).get(when, {})
        if body.get("status") != "success":
            return None
        result = body["data"]["result"]
        values.append(float(result[0]["value"][1]) if result else 0.0)
    return values[1] - values[0]


def _prom_value(prom: dict[str, Any] | None, name: str) -> float | None:
    """The value of a check's Prometheus query at the end of the load window (informative; None if absent)."""
    body = (prom or {}).get(name, {}).get("after", {})
    result = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
    value = float(result[0]["value"][1]) if result else math.nan
    return round(value, 6) if math.isfinite(value) else None


def within(value: float, reference: float, tolerance: float) -> bool:
    """|value - reference| <= tolerance x max(reference, 1)."""
    return abs(value - reference) <= tolerance * max(abs(reference), 1.0) + 1e-9


def check_cross(
    parsed: dict[str, Scrape], rows: list[RawRow], prom: dict[str, Any] | None, policy: ObservabilityPolicy
) -> Check:
    """Each target counter's delta over the load window agrees with the generator's count."""
    if not policy.cross_checks:
        return Check("cross-check", Status.INCONCLUSIVE, "no cross-checks declared ([[gates.G6.cross_checks]])")
    if "before-load" not in parsed or "after-load" not in parsed:
        return Check("cross-check", Status.FAIL, "the scrapes around the load window are missing")
    statuses, findings, table, measures = [], [], [], []
    for item in policy.cross_checks:
        harness = len(harness_rows(rows, item))
        before, _ = selected_sum(parsed["before-load"], item.metric, item.labels)
        after, matched = selected_sum(parsed["after-load"], item.metric, item.labels)
        direct = after - before
        via_prom = None if prom is None else prom_delta(prom, item.name)
        row = {"name": item.name, "harness": harness, "target": direct, "prometheus": via_prom, "matched": matched}
        status = Status.PASS
        if item.metric not in parsed["after-load"].sample_names:
            status = Status.FAIL
            findings.append(f"{item.name}: the target does not expose {item.metric}")
        elif matched == 0 and harness > 0:
            status = Status.FAIL
            findings.append(f"{item.name}: no sample of {item.metric} matches {item.labels or '{}'}")
        elif harness == 0 and not item.may_be_zero:
            status = Status.INCONCLUSIVE
            findings.append(f"{item.name}: the generator counted nothing to compare with")
        elif not within(direct, harness, policy.tolerance):
            status = Status.FAIL
            findings.append(
                f"{item.name}: target counted {direct:g}, the generator {harness} (> {policy.tolerance:.0%})"
            )
        if via_prom is None and prom is not None:
            status = worst([status, Status.FAIL])
            findings.append(f"{item.name}: Prometheus could not answer the query")
        elif via_prom is not None and not within(via_prom, harness, policy.tolerance):
            status = worst([status, Status.FAIL])
            findings.append(f"{item.name}: Prometheus shows {via_prom:g}, the generator {harness}")
        row["status"] = status.value
        table.append(row)
        statuses.append(status)
        measures.append(
            Measurement.judged(
                f"{item.name}: |target - generator|", abs(direct - harness), "<=", policy.tolerance * max(harness, 1)
            )
        )
    if prom is None:
        statuses.append(Status.NOT_RUN)
        findings.append("the Prometheus column was not measured (prometheus not installed)")
    agreed = sum(1 for row in table if row["status"] == "PASS")
    return Check(
        "cross-check",
        worst(statuses),
        f"{agreed} of {len(table)} counters agree with the generator",
        findings,
        measures,
        table,
    )


def check_latency(
    parsed: dict[str, Scrape], rows: list[RawRow], prom: dict[str, Any] | None, policy: ObservabilityPolicy
) -> Check:
    """The histogram's quantile bucket holds (or neighbours) the generator's measured quantile."""
    if not policy.latency_checks:
        return Check("latency", Status.INCONCLUSIVE, "no latency checks declared ([[gates.G6.latency_checks]])")
    statuses, findings, table = [], [], []
    for item in policy.latency_checks:
        samples = sorted((r.end_s - r.sent_s) for r in harness_rows(rows, item) if r.end_s is not None)
        before = bucket_counts(parsed.get("before-load", Scrape()), item.histogram, item.labels)
        buckets = bucket_delta(before, bucket_counts(parsed.get("after-load", Scrape()), item.histogram, item.labels))
        index = quantile_bucket(buckets, item.quantile)
        row: dict[str, Any] = {
            "name": item.name,
            "n_harness": len(samples),
            "n_target": buckets[-1][1] if buckets else 0,
            "prometheus_s": _prom_value(prom, item.name),
        }
        if not samples:
            statuses.append(Status.INCONCLUSIVE)
            findings.append(f"{item.name}: the generator has no samples")
        elif index is None:
            statuses.append(Status.FAIL)
            findings.append(f"{item.name}: {item.histogram} recorded no observation while the load ran")
        else:
            measured_s = nearest_rank(samples, item.quantile)
            low, high = bucket_range(buckets, index)
            distance, finding = compare_quantile(buckets, index, measured_s, item.client_overhead_ms / 1000)
            row |= {"harness_s": round(measured_s, 6), "bucket": [low, high], "distance": distance}
            statuses.append(Status.FAIL if finding else Status.PASS)
            if finding:
                findings.append(f"{item.name}: measured p{item.quantile * 100:g} {finding}")
        row["status"] = statuses[-1].value
        table.append(row)
    return Check(
        "latency", worst(statuses), f"{len(table)} histogram(s) against the measured quantile", findings, [], table
    )


def compare_quantile(
    buckets: list[tuple[float, float]], index: int, measured_s: float, overhead_s: float
) -> tuple[int, str]:
    """Bucket distance of the generator's quantile from the histogram's, and a finding if they disagree.

    The generator times each request from outside, so it sees the server's own time plus loopback
    and queueing: a histogram quantile more than one bucket above the measured one is impossible for
    honest timing, one below it is allowed as long as the measured value stays within one bucket or
    within `overhead_s` of the histogram bucket's upper bound.
    """
    mine = next((i for i, (bound, _) in enumerate(buckets) if measured_s <= bound), len(buckets) - 1)
    low, high = bucket_range(buckets, index)
    distance = mine - index
    where = f"{measured_s * 1000:.1f} ms is {abs(distance)} buckets"
    if distance < -1:
        return distance, f"{where} below the histogram's ({low * 1000:g}, {high * 1000:g}] ms bucket"
    if distance > 1 and measured_s > high + overhead_s:
        return distance, (
            f"{where} above the histogram's ({low * 1000:g}, {high * 1000:g}] ms bucket, more than "
            f"{overhead_s * 1000:g} ms of client-side overhead can explain"
        )
    return distance, ""


def check_movement(parsed: dict[str, Scrape], policy: ObservabilityPolicy) -> Check:
    """Counters and histograms do not stay frozen while the load and the fault run."""
    first, last = parsed.get("before-load"), parsed.get("after-fault") or parsed.get("after-load")
    if first is None or last is None:
        return Check("live metrics", Status.FAIL, "the scrapes before and after the run are missing")
    families = policy.moving_families
    if families is None:
        families = tuple(n for n, t in policy.required_families.items() if t in ("counter", "histogram"))
    if not families:
        return Check("live metrics", Status.INCONCLUSIVE, "no family to watch (required counters/histograms)")
    findings, table = [], []
    for name in sorted(families):
        key = family_key(name, last.types)
        moved = changed_samples(first, last, key)
        table.append({"family": name, "changed_samples": moved})
        if moved == 0:
            findings.append(f"{name} did not change while the load and the fault ran (frozen or placeholder)")
    status = Status.FAIL if findings else Status.PASS
    return Check(
        "live metrics",
        status,
        f"{len(families) - len(findings)} of {len(families)} families moved",
        findings,
        [],
        table,
    )


def check_logs(view: ev.EvidenceView, facts: dict[str, Any], policy: ObservabilityPolicy) -> Check:
    """Every log line of the run is JSON with the required fields; the fault left warnings or errors."""
    log = facts["log"]
    if not log.get("file"):
        return Check("logs", Status.INCONCLUSIVE, f"no log checked: {log.get('why', 'no [service] log_file')}")
    result = check_lines(
        view.read_text(log["file"]),
        policy.log_required_fields,
        policy.log_ts_field,
        policy.log_level_field,
        policy.log_msg_field,
    )
    findings = [f"{n} line(s): {why}" for why, n in sorted(result.problems.items())] + result.examples
    measures = [
        Measurement.judged("valid JSON log lines", round(result.valid_share, 6), ">=", policy.min_valid_log_share)
    ]
    times = facts["times"]
    fault_lines = result.at_levels(policy.fault.log_levels, times["fault_start"], times["fault_end"] + ALERT_GRACE_S)
    measures.append(
        Measurement.judged(f"{'/'.join(policy.fault.log_levels)} lines during the fault", len(fault_lines), ">=", 1)
    )
    status = Status.PASS
    if result.lines == 0:
        status, findings = Status.FAIL, ["the log file had no line during the run", *findings]
    elif result.valid_share < policy.min_valid_log_share:
        status = Status.FAIL
    if not fault_lines:
        status = Status.FAIL
        findings.append(f"nothing logged at {'/'.join(policy.fault.log_levels)} during the fault window")
    summary = (
        f"{result.valid} of {result.lines} lines valid ({result.valid_share:.2%}); "
        f"{len(fault_lines)} warning/error lines in the fault"
    )
    messages = sorted({msg for _, _, msg in fault_lines})[:8]
    return Check("logs", status, summary, findings, measures, [{"fault_messages": messages}])


def check_alerts(view: ev.EvidenceView, facts: dict[str, Any], policy: ObservabilityPolicy) -> Check:
    """Rules evaluate without error, nothing fires in the quiet baseline, the expected alerts fire in the fault."""
    if not facts["prometheus"]["available"]:
        return not_run_prometheus("alerts", facts)
    if not facts["rules"]:
        return Check("alerts", Status.NOT_RUN, "no alert rules loaded")
    findings: list[str] = []
    for group in view.read_json(ev.PROM_RULES).get("data", {}).get("groups", []):
        findings += [f"rule {r['name']}: {r.get('lastError')}" for r in group["rules"] if r.get("health") != "ok"]
    times = facts["times"]
    firing = firing_times(view.read_json(ev.PROM_ALERTS))
    table = []
    for name, stamps in sorted(firing.items()):
        baseline = [t for t in stamps if t < times["fault_start"]]
        during = [t for t in stamps if times["fault_start"] <= t <= times["fault_end"] + ALERT_GRACE_S]
        table.append(
            {
                "alert": name,
                "first_firing_s": round(min(stamps) - times["fault_start"], 1),
                "last_firing_s": round(max(stamps) - times["fault_start"], 1),
                "in_baseline": bool(baseline),
                "in_fault": bool(during),
            }
        )
        if baseline:
            findings.append(
                f"{name} fired during the quiet baseline "
                f"({times['fault_start'] - min(baseline):.0f} s before the fault)"
            )
    fired = {row["alert"] for row in table if row["in_fault"]}
    findings += [f"{name} did not fire during the fault" for name in policy.fault.expect_alerts if name not in fired]
    status = Status.FAIL if findings else Status.PASS
    if not findings and not policy.fault.expect_alerts:
        status = Status.INCONCLUSIVE
        findings.append("no alert is expected to fire ([gates.G6.fault] expect_alerts)")
    zero = " (ci: labelled copy with for: 0s)" if any(r["zero_for"] for r in facts["rules"]) else ""
    expected = [n for n in policy.fault.expect_alerts if n in fired]
    summary = f"{len(expected)} of {len(policy.fault.expect_alerts)} expected alerts fired during the fault{zero}"
    measures = [
        Measurement.judged(
            "expected alerts fired during the fault", len(expected), ">=", len(policy.fault.expect_alerts)
        )
    ]
    return Check("alerts", status, summary, findings, measures, table)


def firing_times(body: dict[str, Any]) -> dict[str, list[float]]:
    """Unix times at which each alert was firing, from an ALERTS range query."""
    firing: dict[str, list[float]] = {}
    for series in body.get("data", {}).get("result", []):
        if series["metric"].get("alertstate") == "firing":
            firing.setdefault(series["metric"].get("alertname", "?"), []).extend(float(t) for t, _ in series["values"])
    return firing


def check_scrape(view: ev.EvidenceView, facts: dict[str, Any], policy: ObservabilityPolicy) -> Check:
    """Prometheus scraped the target every interval and it was up throughout."""
    if not facts["prometheus"]["available"]:
        return not_run_prometheus("scrape", facts)
    result = view.read_json(ev.PROM_UP).get("data", {}).get("result", [])
    values = [float(v) for series in result for _, v in series["values"]]
    times = facts["times"]
    expected = max(1, math.floor((times["end"] - times["first_scrape"]) / policy.scrape_interval_s))
    down = sum(1 for v in values if v != 1.0)
    measures = [
        Measurement.judged("scrape samples of up", len(values), ">=", math.floor(0.8 * expected)),
        Measurement.judged("scrapes with up == 0", down, "==", 0),
    ]
    status = Status.PASS if all(m.passed for m in measures) else Status.FAIL
    findings = [] if status is Status.PASS else [f"{len(values)} up samples for ~{expected} expected, {down} down"]
    return Check(
        "scrape", status, f"{len(values)} scrapes at {policy.scrape_interval_s:g} s, {down} failed", findings, measures
    )


def assess(view: ev.EvidenceView, policy: ObservabilityPolicy) -> list[Check]:
    """Every G6 check, in report order."""
    facts: dict[str, Any] = view.read_json(ev.RUN)
    parsed = scrapes(view)
    rows = parse_raw(view.read_text(ev.raw_name("load")).encode("utf-8")) if view.exists(ev.raw_name("load")) else []
    prom = view.read_json(ev.PROM_CROSS) if facts["prometheus"]["available"] else None
    names: set[str] = set().union(*(s.sample_names for s in parsed.values())) if parsed else set()
    return [
        check_scrape(view, facts, policy),
        check_metrics(parsed, policy),
        check_cross(parsed, rows, prom, policy),
        check_latency(parsed, rows, prom, policy),
        check_movement(parsed, policy),
        check_logs(view, facts, policy),
        assess_rules_static(view, facts, names),
        check_alerts(view, facts, policy),
        assess_dashboards(view, facts, names),
        # O6 is judged only for a target that declares SLOs (like PB's optional checks): no row, not a NOT_RUN.
        *([check_slo(view, facts, policy)] if policy.slos else []),
    ]
