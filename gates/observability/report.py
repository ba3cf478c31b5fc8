"""G6's documents: observability_report.md, observability_dashboard_export.json and logs_sample/."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from gates.observability import evidence as ev
from gates.observability.check import Check
from gates.observability.logs import parse_ts
from gates.observability.report_shared import shared_section
from gates.observability.rulecheck import panels

REPORT = "observability_report.md"
DASHBOARD_EXPORT = "observability_dashboard_export.json"
LOGS_SAMPLE = "logs_sample"


def _num(value: Any) -> str:
    """A count for a table cell."""
    if value is None:
        return "not measured"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _utc(unix: float) -> str:
    """An ISO-8601 UTC time for the report."""
    return dt.datetime.fromtimestamp(unix, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render_report(checks: list[Check], facts: dict[str, Any], status: str, actions: list[dict[str, Any]]) -> str:
    """The markdown report: verdict, each check, the cross-check table, alert times, panels, logs."""
    t = facts["times"]
    prom = facts["prometheus"]
    zero = any(item.get("zero_for") for item in facts["rules"])
    lines = [
        "# Observability report (gate G6)",
        "",
        f"**Verdict: {status}** — mode `{facts['mode']}`.",
        "",
        f"- Prometheus: {prom['version'] if prom['available'] else 'NOT RUN — ' + prom['why']}, scraping the instance "
        f"from {_utc(t['start'])} to {_utc(t['end'])} ({t['end'] - t['start']:.0f} s).",
        f"- Load window: {t['load_start'] - t['start']:.0f} s to {t['load_end'] - t['start']:.0f} s; "
        f"fault window: {t['fault_start'] - t['start']:.0f} s to {t['fault_end'] - t['start']:.0f} s "
        "(times from Prometheus start).",
    ]
    if not zero and facts["rules"]:
        lines.append(
            f"- Alert rules were loaded as shipped (their `for:` durations honoured); the fault lasted "
            f"{facts.get('fault_s', 0):g} s to cover the longest `for:` of the expected alerts."
        )
    if zero:
        lines.append(
            "- **Alert rules were loaded as a generated copy with every `for:` set to 0s** (ci mode): the shipped "
            "`for:` durations were not exercised; a release run loads the shipped rules and a fault long enough."
        )
    lines += ["", "| check | status | summary |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.status.value} | {c.summary} |" for c in checks]
    for check in checks:
        if check.findings:
            lines += ["", f"## Findings: {check.name}", ""] + [f"- {item}" for item in check.findings]
    by_name = {c.name: c for c in checks}
    lines += _cross_table(by_name["cross-check"]) + _latency_table(by_name["latency"])
    lines += _alert_table(by_name["alerts"], facts) + _panel_table(by_name["dashboards"])
    lines += _rule_table(by_name["alert rules"]) + _action_list(actions, t["fault_start"])
    lines += shared_section(checks)
    logs = by_name["logs"]
    if logs.rows:
        lines += ["", "## Messages logged at warning or above during the fault", ""]
        lines += [f"- {msg}" for msg in logs.rows[0]["fault_messages"]] or ["- (none)"]
    return "\n".join(lines) + "\n"


def _cross_table(check: Check) -> list[str]:
    """Harness vs target vs Prometheus, side by side."""
    lines = ["", "## Cross-check over the load window", ""]
    lines += [
        "| counter | load generator | target /metrics delta | Prometheus delta | status |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['name']} | {r['harness']} | {_num(r['target'])} | {_num(r['prometheus'])} | {r['status']} |"
        for r in check.rows
    ]
    return lines if check.rows else [*lines[:3], check.summary]


def _latency_table(check: Check) -> list[str]:
    """Measured quantile against the histogram bucket."""
    lines = ["", "## Latency histogram vs measured latency", ""]
    lines += [
        "| histogram | generator samples | target observations | measured | histogram bucket | Prometheus | status |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for r in check.rows:
        bucket = f"({r['bucket'][0] * 1000:g}, {r['bucket'][1] * 1000:g}] ms" if "bucket" in r else "-"
        measured = f"{r['harness_s'] * 1000:.2f} ms" if "harness_s" in r else "-"
        prom = "-" if r.get("prometheus_s") is None else f"{r['prometheus_s'] * 1000:.2f} ms"
        lines.append(
            f"| {r['name']} | {r['n_harness']} | {_num(r['n_target'])} | {measured} | {bucket} | {prom} "
            f"| {r['status']} |"
        )
    lines += [
        "",
        "Measured: the generator's quantile from send to response (the server cannot see client-side queueing). "
        "Prometheus: `histogram_quantile` over `increase()` of the load window (interpolated; informative).",
    ]
    return lines


def _alert_table(check: Check, facts: dict[str, Any]) -> list[str]:
    """Which alerts fired when, relative to the fault's start."""
    lines = ["", "## Alerts (seconds from the fault's start)", ""]
    if not facts["prometheus"]["available"]:
        return [*lines, check.summary]
    lines += ["| alert | first firing | last firing | in baseline | in fault |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['alert']} | {r['first_firing_s']:+g} s | {r['last_firing_s']:+g} s "
        f"| {r['in_baseline']} | {r['in_fault']} |"
        for r in check.rows
    ]
    return lines if check.rows else [*lines, "| (no alert fired) | | | | |"]


def _panel_table(check: Check) -> list[str]:
    """Every dashboard panel query and whether it had data."""
    lines = ["", "## Dashboard panels", "", "| panel | ref | points | problem |", "|---|---|---|---|"]
    for r in check.rows:
        problem = r["error"] or (", ".join(r["missing"]) and "missing " + ", ".join(r["missing"])) or ""
        lines.append(f"| {r['title']} | {r['refId']} | {r['points']} | {problem} |")
    return lines


def _action_list(actions: list[dict[str, Any]], fault_start: float) -> list[str]:
    """What the fault did, in order (seconds from the fault's start)."""
    lines = ["", "## Fault actions", ""]
    for action in actions:
        when = f"{action['at_unix'] - fault_start:+.1f} s"
        if action["action"] == "http":
            outcome = action.get("status") or action.get("error")
            lines.append(f"- {when}: {action['method']} {action['url']} -> {outcome}")
        else:
            outcome = f"pid {action['pid']}" if action.get("ok") else f"not sent: {action.get('why')}"
            lines.append(f"- {when}: {action['signal']} {action.get('pid_file', '')} ({outcome})")
    return lines if actions else [*lines, "- (none)"]


def _rule_table(check: Check) -> list[str]:
    """Each rule and the metrics it reads that are not exposed."""
    lines = ["", "## Alert rules", "", "| file | rule | for | metrics not exposed |", "|---|---|---|---|"]
    lines += [f"| {r['file']} | {r['rule']} | {r['for']} | {', '.join(r['missing'])} |" for r in check.rows]
    return lines


def dashboard_export(view: ev.EvidenceView, facts: dict[str, Any], check: Check) -> dict[str, Any]:
    """Each dashboard as shipped plus, per panel, whether its queries had data during the run."""
    export: dict[str, Any] = {"window": {"start": facts["times"].get("start"), "end": facts["times"].get("end")}}
    export["prometheus"] = facts["prometheus"].get("version") or "not run"
    export["dashboards"] = []
    for item in facts["dashboards"]:
        try:
            dashboard = json.loads(view.read_text(item["evidence"]))
        except json.JSONDecodeError:
            export["dashboards"].append({"file": item["source"], "parses": False})
            continue
        rows = [r for r in check.rows if r["file"] == item["source"]]
        panel_data = []
        for panel in panels(dashboard) if isinstance(dashboard, dict) else []:
            mine = [r for r in rows if r["panel"] == panel.get("id")]
            if mine:
                panel_data.append(
                    {
                        "id": panel.get("id"),
                        "title": panel.get("title"),
                        "has_data": all(r["points"] > 0 for r in mine),
                        "queries": [{k: r[k] for k in ("refId", "expr", "points", "error", "missing")} for r in mine],
                    }
                )
        export["dashboards"].append(
            {"file": item["source"], "parses": True, "dashboard": dashboard, "panels": panel_data}
        )
    return export


def log_sample(text: str, facts: dict[str, Any], lines: int, ts_field: str) -> str:
    """The first lines of the run's log, then the lines logged during the fault window (up to `lines` in all)."""
    all_lines = text.splitlines()
    head = all_lines[: lines // 4]
    t = facts["times"]
    fault = []
    for line in all_lines[len(head) :]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        when = parse_ts(entry.get(ts_field)) if isinstance(entry, dict) else None
        if when is not None and t["fault_start"] <= when <= t["fault_end"]:
            fault.append(line)
    return "\n".join(head + fault[: lines - len(head)]) + "\n"
