"""A deterministic SVG timeline of one repetition: probes and work over time, the fault window shaded.

Three rows: readiness of each probe, whether each probe's fresh task completed in time (healthy), and
each background work submission (accepted or failed). The fault window is shaded, the recovery moment
is a vertical line. Same record in, same bytes out: no timestamps, fixed number formatting.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from chaos.probe import healthy

WIDTH, HEIGHT = 860, 230
LEFT, RIGHT, TOP = 110, 20, 40
ROW_H = 40
GREEN, RED, GREY = "#2e7d32", "#c62828", "#9e9e9e"


def _x(t_s: float, end_s: float) -> float:
    """Horizontal position of a time."""
    return LEFT + (WIDTH - LEFT - RIGHT) * (t_s / end_s if end_s > 0 else 0.0)


def _mark(x: float, row: int, colour: str, title: str) -> str:
    """A tick for one event in a row."""
    y = TOP + row * ROW_H + 8
    body = f'<rect x="{x:.1f}" y="{y}" width="3" height="{ROW_H - 16}" fill="{colour}">'
    return body + f"<title>{escape(title)}</title></rect>"


#: A recovery deadline further out than this many times the observed span is named, not drawn (it would
#: squash the observations into the left edge).
DEADLINE_SPAN = 1.5


def render(
    title: str,
    record: dict[str, Any],
    analysis: dict[str, Any],
    healthy_latency_s: float,
    budget_s: float | None = None,
) -> str:
    """The SVG text for one repetition; with `budget_s`, the recovery deadline (fault removal + budget) too."""
    completed = set(record["tasks"]["completed"])
    samples, work, fault = record["samples"], record["work"], record["fault"]
    times = [s["t_s"] for s in samples] + [a["t_s"] for a in work] + [1.0]
    end_s = max(times) * 1.02
    removed = fault.get("removed_at_s")
    deadline = removed + budget_s if budget_s is not None and removed is not None else None
    if deadline is not None and deadline <= end_s * DEADLINE_SPAN:
        end_s = max(end_s, deadline * 1.02)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
    ]
    if fault.get("injected_at_s") is not None:
        x0, x1 = _x(fault["injected_at_s"], end_s), _x(fault["removed_at_s"], end_s)
        parts.append(
            f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 2.0):.1f}" height="{3 * ROW_H}" fill="#ffcc80" '
            'opacity="0.6"><title>fault window</title></rect>'
        )
    for row, label in enumerate(("readiness", "fresh task", "work")):
        parts.append(f'<text x="8" y="{TOP + row * ROW_H + ROW_H // 2 + 4}">{label}</text>')
    for s in samples:
        x = _x(s["t_s"], end_s)
        ready_ok = s["ready"] is not None and 200 <= s["ready"] < 300
        parts.append(_mark(x, 0, GREEN if ready_ok else RED, f"t={s['t_s']:.2f}s readiness {s['ready']}"))
        ok = healthy(s, completed, healthy_latency_s)
        parts.append(_mark(x, 1, GREEN if ok else RED, f"t={s['t_s']:.2f}s task {s['state']}"))
    for a in work:
        parts.append(
            _mark(_x(a["t_s"], end_s), 2, GREEN if a["id"] else RED, f"t={a['t_s']:.2f}s submit {a['status']}")
        )
    if analysis.get("recovered_at_s") is not None:
        xr = _x(analysis["recovered_at_s"], end_s)
        parts.append(
            f'<line x1="{xr:.1f}" y1="{TOP - 4}" x2="{xr:.1f}" y2="{TOP + 3 * ROW_H}" '
            'stroke="#1565c0" stroke-width="2"/>'
        )
        parts.append(f'<text x="{xr + 4:.1f}" y="{TOP - 6}" fill="#1565c0">recovered</text>')
    restored = (analysis.get("capacity") or {}).get("restored_at_s")
    if restored is not None and restored <= end_s:  # #25: every role's process count back
        xc = _x(restored, end_s)
        parts.append(
            f'<line x1="{xc:.1f}" y1="{TOP}" x2="{xc:.1f}" y2="{TOP + 3 * ROW_H + 4}" stroke="#6a1b9a" '
            'stroke-width="2" stroke-dasharray="2 2">'
            "<title>capacity back: every role at its pre-fault count</title></line>"
        )
        parts.append(f'<text x="{xc + 4:.1f}" y="{TOP + 3 * ROW_H + 4}" fill="#6a1b9a">capacity back</text>')
    if deadline is not None and deadline <= end_s:
        xd = _x(deadline, end_s)
        tip = f"<title>recovery budget: {budget_s:g} s after removal</title>"
        parts.append(
            f'<line x1="{xd:.1f}" y1="{TOP - 4}" x2="{xd:.1f}" y2="{TOP + 3 * ROW_H}" stroke="{RED}" '
            f'stroke-width="2" stroke-dasharray="6 3">{tip}</line>'
        )
        parts.append(
            f'<text x="{xd - 4:.1f}" y="{TOP - 6}" fill="{RED}" text-anchor="end">budget {budget_s:g} s</text>'
        )
    elif deadline is not None:
        parts.append(
            f'<text x="{WIDTH - RIGHT}" y="20" fill="{RED}" text-anchor="end">'
            f"budget {budget_s:g} s after removal: beyond the chart</text>"
        )
    axis_y = TOP + 3 * ROW_H + 14
    for step in range(6):
        t = end_s * step / 5
        parts.append(f'<text x="{_x(t, end_s):.1f}" y="{axis_y}" text-anchor="middle" fill="{GREY}">{t:.1f} s</text>')
    rec = analysis.get("recovery_from_removal_s")
    summary = (
        (f"recovery {rec:.2f} s after removal" if rec is not None else "not recovered within the observation")
        + _capacity_summary(analysis)
        + f"; lost {analysis['lost']}, not completed {analysis['not_completed']}, duplicated {analysis['duplicated']}"
    )
    parts.append(f'<text x="{LEFT}" y="{axis_y + 22}">{escape(summary)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _capacity_summary(analysis: dict[str, Any]) -> str:
    """The capacity part of the chart's summary line ('' for records without a process tree)."""
    capacity = analysis.get("capacity") or {}
    if not capacity.get("roles_declared"):
        return ""
    back = capacity.get("restore_from_removal_s")
    return f"; capacity back {back:.2f} s after removal" if back is not None else "; capacity not back"
