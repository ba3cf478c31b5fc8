"""The weekly health report (O7): what the run history says about the last N days; pure over history rows.

Runs and outcomes per mode, per gate its pass rate and flaky commits, per judged figure its trend
over the complete runs (first, last, range, and the Theil-Sen slope per run, scipy), and every
event the regression watch recorded (gates turned red, regressions). Written as health_report.json
and .md by `certify health-report`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from scipy import stats

from harness.history import flaky_gates

HEALTH_FORMAT = "release-harness-health/1"
#: A trend needs at least this many complete runs with the figure.
MIN_TREND_POINTS = 3


def _gate_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per gate: runs, PASS count, pass rate and last status over the complete runs."""
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["state"] != "COMPLETE":
            continue
        for gate, status in run["gates"].items():
            row = rows.setdefault(gate, {"gate": gate, "runs": 0, "passed": 0, "last": status})
            row["runs"] += 1
            row["passed"] += status == "PASS"
            row["last"] = status
    for row in rows.values():
        row["pass_rate_pct"] = round(100 * row["passed"] / row["runs"], 1)
    return list(rows.values())


def _trends(runs: Sequence[Mapping[str, Any]], figures: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per judged figure (one with a threshold): its values over the complete runs, oldest first, and the slope."""
    order = {run["manifest_sha256"]: i for i, run in enumerate(r for r in runs if r["state"] == "COMPLETE")}
    series: dict[tuple[str, str], list[tuple[int, float, str]]] = {}
    for f in figures:
        if f["passed"] is None or f["manifest_sha256"] not in order:
            continue
        series.setdefault((f["gate"], f["name"]), []).append((order[f["manifest_sha256"]], f["value"], f["unit"]))
    trends = []
    for (gate, name), points in sorted(series.items()):
        points.sort()
        values = [value for _, value, _ in points]
        slope = None
        if len(points) >= MIN_TREND_POINTS and len(set(values)) > 1:
            slope = float(stats.theilslopes(values, [index for index, _, _ in points]).slope)
        trends.append(
            {
                "gate": gate,
                "name": name,
                "unit": points[-1][2],
                "points": len(points),
                "first": values[0],
                "last": values[-1],
                "min": min(values),
                "max": max(values),
                "slope_per_run": None if slope is None else round(slope, 6),
                "values": values,
            }
        )
    return trends


def build_health(
    runs: Sequence[Mapping[str, Any]],
    figures: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    days: int,
    now: dt.datetime,
    *,
    title: str | None = None,
) -> dict[str, Any]:
    """health_report.json for the runs of the last `days` days before `now` (the rows of history.runs_since).

    `days` 0: a report of exactly the runs given (`certify history --html`), its period their first and last start.
    """
    by_sha = {run["manifest_sha256"]: run for run in runs}
    modes: dict[str, dict[str, int]] = {}
    for run in runs:
        row = modes.setdefault(run["mode"], {"runs": 0, "complete": 0, "exit_0": 0, "certified": 0})
        row["runs"] += 1
        row["complete"] += run["state"] == "COMPLETE"
        row["exit_0"] += run["exit_code"] == 0
        row["certified"] += bool(run["certified"])
    return {
        "format": HEALTH_FORMAT,
        "title": title or f"Health report: the last {days} day(s)",
        "period": _period(runs, days, now),
        "targets": sorted({run["target"] for run in runs}),
        "runs": len(runs),
        "modes": modes,
        "gates": _gate_rows(runs),
        "flaky": flaky_gates(runs),
        "trends": _trends(runs, figures),
        "events": [
            {
                "run_id": by_sha[e["manifest_sha256"]]["run_id"],
                "kind": e["kind"],
                "subject": e["subject"],
                "detail": e["detail"],
                "baseline": e["baseline_run_id"],
            }
            for e in events
            if e["manifest_sha256"] in by_sha
        ],
    }


def _period(runs: Sequence[Mapping[str, Any]], days: int, now: dt.datetime) -> dict[str, Any]:
    """The period a report covers: the last `days` days, or (0) the span of the runs given."""
    if days:
        return {"days": days, "from": (now - dt.timedelta(days=days)).isoformat(), "to": now.isoformat()}
    starts = sorted(str(run["started_at"]) for run in runs)
    return {"days": 0, "from": starts[0] if starts else "-", "to": starts[-1] if starts else "-"}


def health_markdown(report: Mapping[str, Any]) -> str:
    """health_report.md: the period, outcomes, gates, flaky gates, trends and events; pure."""
    period = report["period"]
    lines = [
        f"# {report['title']}",
        "",
        f"{report['runs']} run(s) of {', '.join(report['targets']) or 'no target'} from {period['from']} to "
        f"{period['to']}.",
        "",
        "| mode | runs | complete | exit 0 | certified |",
        "|---|---|---|---|---|",
        *(
            f"| {mode} | {m['runs']} | {m['complete']} | {m['exit_0']} | {m['certified']} |"
            for mode, m in sorted(report["modes"].items())
        ),
        "",
        "## Gates",
        "",
        "| gate | complete runs | PASS | pass rate | last |",
        "|---|---|---|---|---|",
        *(
            f"| {g['gate']} | {g['runs']} | {g['passed']} | {g['pass_rate_pct']:g} % | {g['last']} |"
            for g in report["gates"]
        ),
        "",
        "Flaky (more than one status on one clean commit): "
        + ("; ".join(f"{gate} on {', '.join(commits)}" for gate, commits in report["flaky"].items()) or "none"),
        "",
        "## Trends of the judged figures",
        "",
        "| figure | runs | first | last | min | max | slope per run |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {t['gate']} {t['name']} | {t['points']} | {t['first']:g} | {t['last']:g} | {t['min']:g} | "
            f"{t['max']:g} | {_slope(t['slope_per_run'])} {t['unit']} |"
            for t in report["trends"]
        ),
        "",
        "## Regressions and gates turned red",
        "",
        *(
            [
                f"- {e['run_id']}: {e['kind']} {e['subject']}: {e['detail']} (against {e['baseline']})"
                for e in report["events"]
            ]
            or ["none recorded"]
        ),
    ]
    return "\n".join(lines) + "\n"


def _slope(value: float | None) -> str:
    """A trend's slope for the table ('-' when there are too few points or no change)."""
    return "-" if value is None else f"{value:+g}"


_W, _H, _PAD = 480, 120, 30


def trend_chart(trend: Mapping[str, Any]) -> str:
    """An inline SVG of one figure over the runs, oldest left: a line with a dot per run and its range."""
    values = [float(v) for v in trend["values"]]
    low, high = min(values), max(values)
    span = (high - low) or (abs(high) or 1.0)
    step = (_W - 2 * _PAD) / max(len(values) - 1, 1)
    points = [(_PAD + i * step, _H - _PAD - (v - low) / span * (_H - 2 * _PAD)) for i, v in enumerate(values)]
    label = f"{trend['gate']} {trend['name']} over {len(values)} run(s), {low:g}-{high:g} {trend['unit']}".strip()
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" aria-label={quoteattr(label)}><title>{escape(label)}</title>',
        f'<rect x="{_PAD}" y="{_PAD / 2}" width="{_W - 2 * _PAD}" height="{_H - 1.5 * _PAD}" fill="none" '
        'stroke="#d0d7de"/>',
        f'<text x="2" y="{_PAD}" font-size="10">{high:g}</text>',
        f'<text x="2" y="{_H - _PAD}" font-size="10">{low:g}</text>',
        '<polyline fill="none" stroke="#0969da" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        + '"/>',
        *(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#0969da"/>' for x, y in points),
        f'<text x="{_PAD}" y="{_H - 4}" font-size="10">oldest</text>',
        f'<text x="{_W - _PAD}" y="{_H - 4}" font-size="10" text-anchor="end">newest</text>',
        "</svg>",
    ]
    return "".join(parts)


def health_html(report: Mapping[str, Any]) -> str:
    """health_report.html: the same content as the Markdown, with a trend chart per judged figure."""
    from harness.render import render_template  # noqa: PLC0415 - Jinja2 only when writing the report

    return render_template(
        "health_report.html.j2", {"report": report, "charts": [trend_chart(t) for t in report["trends"]]}
    )
