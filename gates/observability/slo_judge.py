"""O6's pure assessment: the declared SLOs' alerts exist, pass the harness's synthetic series, and fired in the fault.

Reads G6's evidence only: run.json, the copied rule files, slo/synthetic.json (the harness's own
promtool runs), promtool.json (the target's rule tests), prom/alerts-range.json and the direct
scrapes. `slo_report` is the error budget each SLO consumed between the scrape before the load and
the one after the fault, from the target's own counters.
"""

from __future__ import annotations

from typing import Any

from gates.observability import evidence as ev
from gates.observability.check import Check
from gates.observability.exposition import parse_scrape, selected_sum
from gates.observability.policy import ObservabilityPolicy, SloSpec
from gates.observability.slo import SYNTHETIC, alert_rules
from harness.model import Measurement, Status

SLO_REPORT = "slo_report.json"
GRACE_S = 5.0


def _firing(view: ev.EvidenceView) -> dict[str, list[float]]:
    """Unix times at which each alert was firing in G6's Prometheus (ALERTS range query)."""
    firing: dict[str, list[float]] = {}
    body = view.read_json(ev.PROM_ALERTS) if view.exists(ev.PROM_ALERTS) else {}
    for series in body.get("data", {}).get("result", []):
        if series["metric"].get("alertstate") == "firing":
            firing.setdefault(series["metric"].get("alertname", "?"), []).extend(float(t) for t, _ in series["values"])
    return firing


def _synthetic_findings(view: ev.EvidenceView, policy: ObservabilityPolicy) -> tuple[list[str], list[dict[str, Any]]]:
    """Findings of the harness's own synthetic promtool runs, and their rows."""
    missing: dict[str, Any] = {"available": False, "why": "not run", "runs": []}
    record: dict[str, Any] = view.read_json(SYNTHETIC) if view.exists(SYNTHETIC) else missing
    if not record["available"]:
        return [f"synthetic SLO series not run: promtool unavailable ({record['why']})"], []
    findings, rows = [], []
    for run in record["runs"]:
        ok = run["returncode"] == 0 and not run["timed_out"]
        rows.append({k: run[k] for k in ("slo", "alert", "case", "ratio", "threshold", "returncode")} | {"ok": ok})
        if ok:
            continue
        if run["case"] == "fire":
            findings.append(
                f"rule {run['alert']} ({run['rule_file']}, SLO {run['slo']}): did not fire on synthetic series with "
                f"an error ratio of {run['ratio']:.4g} held past its long window and for: (threshold "
                f"{run['threshold']:.4g}); it reads the wrong metric or compares with the wrong threshold"
            )
        else:
            findings.append(
                f"rule {run['alert']} ({run['rule_file']}, SLO {run['slo']}): fired on synthetic series with an "
                f"error ratio of {run['ratio']:.4g}, below its threshold {run['threshold']:.4g}"
            )
    return findings, rows


def _live_rows(
    view: ev.EvidenceView, facts: dict[str, Any], policy: ObservabilityPolicy
) -> tuple[list[str], list[dict[str, Any]]]:
    """Fire and resolve times of the must-fire burn alerts in G6's real Prometheus."""
    if not facts["prometheus"]["available"]:
        return [f"burn alerts not watched live: {facts['prometheus']['why']}"], []
    times, firing = facts["times"], _firing(view)
    # The ALERTS range query's step (run.py): an alert resolved when a step after its last firing point exists.
    step_s = max(policy.scrape_interval_s, (times["end"] - times.get("start", times["end"])) / 600)
    findings, rows = [], []
    for slo in policy.slos:
        for alert in (a for a in slo.alerts if a.must_fire):
            stamps = sorted(firing.get(alert.alert, []))
            during = [t for t in stamps if times["fault_start"] <= t <= times["fault_end"] + GRACE_S]
            row: dict[str, Any] = {"slo": slo.name, "alert": alert.alert, "fired": bool(during)}
            if not during:
                findings.append(f"rule {alert.alert} (SLO {slo.name}) did not fire in Prometheus during the fault")
            else:
                row["fired_after_s"] = round(during[0] - times["fault_start"], 1)
                last = stamps[-1]
                resolved = last + 2 * step_s <= times["end"]
                row["resolved"] = resolved
                row["last_firing_after_fault_end_s"] = round(last - times["fault_end"], 1)
                if not resolved:
                    findings.append(
                        f"rule {alert.alert} (SLO {slo.name}) was still firing when G6 ended, "
                        f"{times['end'] - times['fault_end']:.0f} s after the fault"
                    )
            rows.append(row)
    return findings, rows


def check_slo(view: ev.EvidenceView, facts: dict[str, Any], policy: ObservabilityPolicy) -> Check:
    """O6: each declared burn alert is shipped, passes the synthetic series; must-fire ones fired and resolved."""
    if not policy.slos:
        return Check("slo", Status.NOT_RUN, "no SLOs declared ([[gates.G6.slos]])")
    shipped = alert_rules(facts["rules"], view.read_text)
    findings = [
        f"SLO {slo.name}: alert {alert.alert} is not in the shipped rule files"
        for slo in policy.slos
        for alert in slo.alerts
        if alert.alert not in shipped
    ]
    findings += [f"SLO {slo.name}: declares no burn-rate alert" for slo in policy.slos if not slo.alerts]
    synthetic, rows = _synthetic_findings(view, policy)
    live, live_rows = _live_rows(view, facts, policy)
    tests = [r for r in view.read_json(ev.PROMTOOL).get("runs", []) if r["kind"] == "test"]
    if not any(a.must_fire for slo in policy.slos for a in slo.alerts):
        findings.append(
            "no burn-rate alert is declared must_fire: nothing shows an alert firing in the real Prometheus"
        )
    if not tests:
        findings.append("the target ships no promtool rule tests ([gates.G6] rule_tests)")
    synthetic_ran = view.exists(SYNTHETIC) and bool(view.read_json(SYNTHETIC)["available"])
    live_ran = bool(facts["prometheus"]["available"])
    failed = bool(findings) or (synthetic_ran and bool(synthetic)) or (live_ran and bool(live))
    findings += synthetic + live
    status = Status.FAIL if failed else Status.PASS if synthetic_ran and live_ran else Status.NOT_RUN
    passed = sum(1 for r in rows if r["ok"])
    fired = [r for r in live_rows if r["fired"]]
    summary = (
        f"{passed} of {len(rows)} synthetic promtool cases as expected; "
        f"{len(fired)} of {len(live_rows)} must-fire burn alerts fired in the fault"
        + "".join(f"; {r['alert']} fired after {r['fired_after_s']:g} s" for r in fired)
    )
    resolved = sum(1 for r in fired if r.get("resolved"))
    measures = [
        Measurement.judged("synthetic SLO cases not as expected", len(rows) - passed, "==", 0),
        Measurement.judged("must-fire burn alerts fired and resolved", resolved, ">=", len(live_rows)),
    ]
    return Check("slo", status, summary, findings, measures, [{"synthetic": rows, "live": live_rows}])


def _events(scrape: Any, slo: SloSpec) -> tuple[float, float]:
    """(total, good) SLI events in one scrape."""
    if slo.kind == "ratio":
        total, _ = selected_sum(scrape, slo.metric, slo.labels)
        good, _ = selected_sum(scrape, slo.metric, {**slo.labels, **slo.good_labels})
        return total, good
    total, _ = selected_sum(scrape, f"{slo.metric}_count", slo.labels)
    good = sum(
        s.value
        for s in scrape.samples
        if s.name == f"{slo.metric}_bucket"
        and dict(s.labels).get("le") == slo.le
        and all(dict(s.labels).get(k) == v for k, v in slo.labels.items())
    )
    return total, good


def slo_report(view: ev.EvidenceView, facts: dict[str, Any], policy: ObservabilityPolicy) -> dict[str, Any]:
    """Per SLO: events, bad events and error budget consumed over the run and over the fault (direct scrapes)."""
    scrapes = {
        label: parse_scrape(view.read_text(ev.scrape_name(label)))
        for label in ev.SCRAPES
        if view.exists(ev.scrape_name(label))
    }
    out: dict[str, Any] = {"source": "direct scrapes of /metrics: before-load, after-load, after-fault", "slos": []}
    for slo in policy.slos:
        entry: dict[str, Any] = {"name": slo.name, "kind": slo.kind, "objective": slo.objective}
        for window, (a, b) in {"run": ("before-load", "after-fault"), "fault": ("after-load", "after-fault")}.items():
            if a not in scrapes or b not in scrapes:
                entry[window] = None
                continue
            (t0, g0), (t1, g1) = _events(scrapes[a], slo), _events(scrapes[b], slo)
            total, bad = t1 - t0, (t1 - g1) - (t0 - g0)
            ratio = bad / total if total > 0 else None
            consumed = None if ratio is None else ratio / (1 - slo.objective)
            entry[window] = {
                "events": total,
                "bad_events": bad,
                "error_ratio": None if ratio is None else round(ratio, 6),
                "budget_consumed_x": None if consumed is None else round(consumed, 4),
            }
        out["slos"].append(entry)
    return out


def slo_section(report: dict[str, Any], check: Check) -> list[str]:
    """The report's SLO section: budget table, synthetic cases and live fire/resolve times."""
    if not report["slos"]:
        return []
    lines = [
        "",
        "## SLOs and burn-rate alerts (O6)",
        "",
        f"Budget from {report['source']}. "
        "`budget consumed` is the window's error ratio over the error budget (1 - objective): "
        "1.0 = the window used errors at exactly the allowed rate.",
        "",
        "| SLO | objective | window | events | bad | error ratio | budget consumed |",
        "|---|---|---|---|---|---|---|",
    ]
    for slo in report["slos"]:
        for window in ("run", "fault"):
            w = slo[window]
            if w is None:
                lines.append(f"| {slo['name']} | {slo['objective']} | {window} | not measured | | | |")
                continue
            lines.append(
                f"| {slo['name']} | {slo['objective']} | {window} | {w['events']:g} | {w['bad_events']:g} | "
                f"{w['error_ratio']} | {w['budget_consumed_x']}x |"
            )
    rows = check.rows[0] if check.rows else {"synthetic": [], "live": []}
    lines += ["", "| alert | synthetic case | SLI error ratio | threshold | as expected |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['alert']} | {r['case']} | {r['ratio']:.4g} | {r['threshold']:.4g} | {r['ok']} |"
        for r in rows["synthetic"]
    ]
    lines += [
        "",
        "| must-fire alert | fired during the fault | fired after (s) | resolved | last firing after fault end (s) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['alert']} | {r['fired']} | {r.get('fired_after_s', '')} | {r.get('resolved', '')} | "
        f"{r.get('last_firing_after_fault_end_s', '')} |"
        for r in rows["live"]
    ]
    return lines
