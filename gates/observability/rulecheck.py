"""G6 alert-rule and dashboard checks: promtool's verdicts, metrics exposed, panel queries parse and have data."""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from gates.observability import evidence as ev
from gates.observability.check import Check, not_run_prometheus
from gates.observability.promql import grafana_to_promql, metric_names
from harness.model import Measurement, Status, worst

#: Series Prometheus itself creates, valid in any expression.
BUILTIN_SERIES = frozenset(
    {
        "up",
        "ALERTS",
        "ALERTS_FOR_STATE",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)


def rule_entries(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """The rules of a rule file (each with its group), or the reason it cannot be read."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [], f"not YAML: {str(exc).splitlines()[0]}"
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        return [], "no `groups:` list"
    entries = []
    for group in data["groups"]:
        for rule in (group or {}).get("rules") or []:
            if isinstance(rule, dict):
                entries.append({**rule, "group": (group or {}).get("name")})
    return entries, None


def _promtool_findings(view: ev.EvidenceView) -> tuple[list[str], list[Status], list[dict[str, Any]]]:
    """promtool check/test rules outcomes."""
    record = view.read_json(ev.PROMTOOL)
    if not record["available"]:
        return [f"promtool not run: {record['why']} (install: {record['hint']})"], [Status.NOT_RUN], []
    findings, statuses = [], []
    for run in record["runs"]:
        ok = run["returncode"] == 0
        statuses.append(Status.PASS if ok else Status.FAIL)
        if not ok:
            why = "timed out" if run["timed_out"] else f"exit {run['returncode']}"
            findings.append(
                f"promtool {run['kind']} rules {run['file']}: {why}: {' '.join(run['output'].split())[:400]}"
            )
    return findings, statuses, record["runs"]


def assess_rules_static(view: ev.EvidenceView, facts: dict[str, Any], names: set[str]) -> Check:
    """promtool accepts the rule files (and their tests); every metric a rule reads is exposed."""
    if not facts["rules"] and not facts["rules_unmatched"]:
        return Check("alert rules", Status.NOT_RUN, "no alert rules declared ([gates.G6] alert_rules)")
    findings = [f"no file matches alert_rules glob {glob!r}" for glob in facts["rules_unmatched"]]
    statuses = [Status.FAIL] if findings else []
    tool_findings, tool_statuses, runs = _promtool_findings(view)
    findings += tool_findings
    statuses += tool_statuses
    table, known = [], set(names) | BUILTIN_SERIES
    for item in facts["rules"]:
        entries, problem = rule_entries(view.read_text(item["evidence"]))
        if problem:
            statuses.append(Status.FAIL)
            findings.append(f"{item['source']}: {problem}")
        known |= {str(e["record"]) for e in entries if "record" in e}
        for entry in entries:
            missing = sorted(metric_names(str(entry.get("expr", ""))) - known)
            label = entry.get("alert") or entry.get("record")
            table.append({"file": item["source"], "rule": label, "for": entry.get("for", "0s"), "missing": missing})
            if missing:
                statuses.append(Status.FAIL)
                findings.append(
                    f"{item['source']}: rule {label} reads {', '.join(missing)}, which the target does not expose"
                )
    tests = sum(1 for run in runs if run["kind"] == "test")
    summary = f"{len(table)} rules in {len(facts['rules'])} file(s); promtool check rules; {tests} rule test file(s)"
    measure = Measurement.judged(
        "rules reading metrics the target does not expose", sum(1 for r in table if r["missing"]), "==", 0
    )
    return Check("alert rules", worst(statuses or [Status.PASS]), summary, findings, [measure], table)


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in dashboard.get("panels") or []:
        if isinstance(panel, dict):
            found.append(panel)
            found.extend(p for p in panel.get("panels") or [] if isinstance(p, dict))
    return found


def panel_queries(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """(panel id, title, refId, expr, query sent to Prometheus) of every Prometheus target of a dashboard."""
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            if isinstance(target, dict) and target.get("expr"):
                expr = str(target["expr"])
                queries.append(
                    {
                        "panel": panel.get("id"),
                        "title": panel.get("title", ""),
                        "refId": target.get("refId", ""),
                        "expr": expr,
                        "query": grafana_to_promql(expr),
                    }
                )
    return queries


def query_outcome(response: dict[str, Any]) -> tuple[str | None, int]:
    """(error or None, number of finite points) of a Prometheus range-query answer."""
    if response.get("status") != "success":
        return f"{response.get('errorType', 'error')}: {response.get('error', '')}"[:300], 0
    points = 0
    for series in response.get("data", {}).get("result", []):
        points += sum(1 for _, value in series.get("values", []) if math.isfinite(float(value)))
    return None, points


def _load_dashboard(view: ev.EvidenceView, item: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A dashboard's JSON, or why it cannot be read."""
    try:
        data = json.loads(view.read_text(item["evidence"]))
    except json.JSONDecodeError as exc:
        return None, f"{item['source']} is not JSON: {exc}"
    if not isinstance(data, dict) or not isinstance(data.get("panels"), list):
        return None, f"{item['source']} has no `panels` list"
    return data, None


def assess_dashboards(view: ev.EvidenceView, facts: dict[str, Any], names: set[str]) -> Check:
    """Dashboards parse; every panel query reads exposed metrics, parses in Prometheus and returns data."""
    if not facts["dashboards"] and not facts["dashboards_unmatched"]:
        return Check("dashboards", Status.NOT_RUN, "no dashboards declared ([gates.G6] dashboards)")
    findings = [f"no file matches dashboards glob {glob!r}" for glob in facts["dashboards_unmatched"]]
    statuses = [Status.FAIL] if findings else []
    answers = view.read_json(ev.PROM_DASHBOARDS) if facts["prometheus"]["available"] else []
    table = []
    for item in facts["dashboards"]:
        data, problem = _load_dashboard(view, item)
        if data is None:
            statuses.append(Status.FAIL)
            findings.append(str(problem))
            continue
        for query in panel_queries(data):
            row = _panel_row(item["source"], query, names, answers)
            table.append(row)
            if row["missing"]:
                findings.append(
                    f"{item['source']} panel {query['title']!r}: reads {', '.join(row['missing'])}, not exposed"
                )
            if row["error"]:
                findings.append(f"{item['source']} panel {query['title']!r} ({query['refId']}): {row['error']}")
            elif row["points"] == 0 and answers:
                findings.append(f"{item['source']} panel {query['title']!r} ({query['refId']}): no data for the run")
            statuses.append(
                Status.FAIL if row["missing"] or row["error"] or (answers and not row["points"]) else Status.PASS
            )
    if not facts["prometheus"]["available"]:
        statuses.append(Status.NOT_RUN)
        findings.append(not_run_prometheus("dashboards", facts).summary)
    with_data = sum(1 for row in table if row["points"])
    summary = f"{with_data} of {len(table)} panel queries returned data for the run window"
    measure = Measurement.judged("panel queries without data or not parsing", len(table) - with_data, "==", 0)
    return Check("dashboards", worst(statuses or [Status.PASS]), summary, findings, [measure], table)


def _panel_row(source: str, query: dict[str, Any], names: set[str], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One panel query's static and Prometheus outcome."""
    missing = sorted(metric_names(query["query"]) - names - BUILTIN_SERIES)
    answer = next(
        (a for a in answers if a["file"] == source and a["panel"] == query["panel"] and a["refId"] == query["refId"]),
        None,
    )
    error, points = (None, 0) if answer is None else query_outcome(answer["response"])
    return {"file": source, **query, "missing": missing, "error": error, "points": points}
