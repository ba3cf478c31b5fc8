"""The gate's documents: playbooks_report.md, playbooks_report.json and the MTTR chart (deterministic SVG).

Pure functions of the summary `evaluate` computes, so the documents say exactly what the verdict says.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

COLUMNS = (
    "dry_run",
    "needs_approval",
    "outside_window",
    "recovered",
    "right_playbook",
    "timeline",
    "stats",
    "rollback",
    "audit_chain",
    "ledger",
)


def render_json(summary: dict[str, Any]) -> bytes:
    """The summary as stable JSON."""
    return (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()


def _cell(checks: dict[str, str], name: str) -> str:
    """A table cell for one check ('-' when not applicable)."""
    return checks.get(name, "-")


def render_markdown(summary: dict[str, Any]) -> bytes:
    """The human report: verdict, count, MTTR, one row per playbook, governance, reasons."""
    mttr = summary["mttr_s"]
    lines = [
        "# Self-healing playbooks report",
        "",
        f"**Verdict: {summary['status']}** — {summary['headline']}",
        "",
        f"- Playbooks listed by the target: {summary['listed']} (expected {summary['expected_count']})",
        f"- Runs: {summary['runs']} ({summary['repetitions']} per playbook, mode {summary['mode']}, "
        f"{summary['parallel']} in parallel, {summary['elapsed_s']:.0f} s)",
        f"- MTTR measured by the harness's own probes (s): p50 {_num(mttr['p50'])}, p95 {_num(mttr['p95'])}, "
        f"max {_num(mttr['max'])} over {mttr['count']} recoveries; budget {summary['budget_s']:g} s",
        f"- {summary['mttr_claim']}",
        "",
        "| playbook | tier | fault | detected | "
        + " | ".join(c.replace("_", " ") for c in COLUMNS)
        + " | recovery s (max) | lost/dup | verdict |",
        "|" + "---|" * (len(COLUMNS) + 7),
    ]
    for row in summary["playbooks"]:
        checks = row["checks"]
        recovery = max(row["recovery_s"]) if row["recovery_s"] else None
        lost = sum((item or {}).get("lost", 0) for item in row["ledger"])
        dup = sum((item or {}).get("duplicated", 0) for item in row["ledger"])
        cells = [row["id"], str(row["tier"]), _md(str(row["fault"]))[:60], _cell(checks, "detected")]
        reconciled = f"{lost}/{dup}" if any(row["ledger"]) else "n/a"  # no ledger run: nothing was counted
        cells += [_cell(checks, c) for c in COLUMNS] + [_num(recovery), reconciled, f"**{row['verdict']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _failure_mode_lines(summary.get("failure_modes"))
    lines += _rollback_doc_lines(summary.get("rollback_docs"))
    lines += _canary_lines(summary.get("canaries"))
    lines += ["", "## Governance", ""]
    lines += [f"- {name}: {value}" for name, value in sorted(summary["governance"]["checks"].items())]
    lines += ["", "## Reasons", ""]
    lines += [f"- {_md(reason)}" for reason in summary["reasons"]] or ["- none"]
    lines += [
        "",
        "MTTR is measured from the injection (tier 1) or from the approval that allowed the run (tier 2/3) to the",
        "first of at least 1 s of samples in which every probe of the playbook and every health probe is healthy.",
        "timeline: the target's detected/resolved times of the incident fit the probes (detected after the",
        "injection, resolved after the probes last saw the fault). stats: the target's healer stats equal what",
        "its own incident list says, read just before and after them.",
        "",
    ]
    return "\n".join(lines).encode()


def _failure_mode_lines(modes: dict[str, Any] | None) -> list[str]:
    """H3: the declared failure modes, each traced to its playbook and the two confirmations."""
    if not modes:
        return []
    lines = [
        "",
        f"## Top failure modes (H3): {modes['declared']} declared, {modes['required']} required",
        "",
        "| # | failure mode | playbook | target verify hook | harness probe | status |",
        "|---|---|---|---|---|---|",
    ]
    for rank, row in enumerate(modes["modes"], start=1):
        name = f"{row['id']}: {row['title']}" if row["title"] else row["id"]
        cells = [
            str(rank),
            _md(name),
            row["playbook"],
            row["verify_hook"],
            row["harness_probe"],
            f"**{row['status']}**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _rollback_doc_lines(docs: dict[str, Any] | None) -> list[str]:
    """H4: per playbook, its rollback in the gate and the runbook section naming its steps."""
    if not docs:
        return []
    lines = [
        "",
        "## Rollbacks documented and run (H4)",
        "",
        "| playbook | rollback | ran | runbook | steps named | status |",
        "|---|---|---|---|---|---|",
    ]
    for row in docs["playbooks"]:
        named = len(row["steps"]) - len(row["missing_steps"])
        cells = [row["playbook"], row["rollback"], row["ran"], str(row["runbook"]), f"{named}/{len(row['steps'])}"]
        lines.append("| " + " | ".join([*cells, f"**{row['status']}**"]) + " |")
    return lines


def _canary_lines(canaries: dict[str, Any] | None) -> list[str]:
    """H7: per layer the canary's metrics and liveness, the faults that moved it, what this host cannot show."""
    if not canaries:
        return []
    checks = canaries["checks"]
    lines = [
        "",
        "## Canary probes (H7)",
        "",
        "| layer | metrics | live | fault | reaction s | status |",
        "|---|---|---|---|---|---|",
    ]
    faults = {fault["layer"]: fault for fault in canaries["faults"]}
    for row in canaries["layers"]:
        layer = row["layer"]
        fault = faults.get(layer)
        shown = (
            _md(fault["title"]) if fault else "no fault caused here: " + _md(canaries["unobservable"].get(layer, ""))
        )
        if fault and fault.get("also_down"):
            shown += f" (also down: {', '.join(fault['also_down'])})"
        reaction = _num(fault["reaction_s"]) if fault else "-"
        status = fault["status"] if fault else "not observed"
        cells = [layer, checks.get(f"{layer} metrics", "-"), checks.get(f"{layer} live", "-"), shown, reaction, status]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nA canary must move within its interval plus slack: {canaries['budget_s']:g} s from the fault.")
    return lines


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _num(value: float | None) -> str:
    """A figure with two decimals, or n/a."""
    return "n/a" if value is None else f"{value:.2f}"


def render_svg(summary: dict[str, Any]) -> bytes:
    """Horizontal bars: max recovery per playbook, p50 tick, the budget line; same input, same bytes."""
    rows = summary["playbooks"]
    budget = float(summary["budget_s"])
    worst = max([budget, *[max(r["recovery_s"]) for r in rows if r["recovery_s"]]])
    width, left, bar_h, top = 760, 190, 16, 40
    scale = (width - left - 30) / worst if worst else 1.0
    height = top + len(rows) * (bar_h + 6) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<text x="10" y="20" font-size="14">MTTR per playbook (harness-observed, s); budget {budget:g} s</text>',
    ]
    for index, row in enumerate(rows):
        y = top + index * (bar_h + 6)
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(row["id"])}</text>')
        values = sorted(row["recovery_s"])
        if not values:
            parts.append(f'<text x="{left + 4}" y="{y + 12}" fill="#a00">{escape(row["verdict"])}: no recovery</text>')
            continue
        high, median = values[-1], values[(len(values) - 1) // 2]
        colour = "#3a7" if row["verdict"] == "PASS" else "#c44"
        parts.append(
            f'<rect x="{left}" y="{y}" width="{max(1.0, high * scale):.1f}" height="{bar_h}" fill="{colour}"/>'
        )
        parts.append(
            f'<line x1="{left + median * scale:.1f}" y1="{y}" x2="{left + median * scale:.1f}" '
            f'y2="{y + bar_h}" stroke="#000"/>'
        )
        parts.append(f'<text x="{left + high * scale + 4:.1f}" y="{y + 12}">{high:.2f}</text>')
    x_budget = left + budget * scale
    parts.append(
        f'<line x1="{x_budget:.1f}" y1="{top - 6}" x2="{x_budget:.1f}" y2="{height - 30}" '
        'stroke="#a00" stroke-dasharray="4 3"/>'
    )
    parts.append(f'<text x="{x_budget:.1f}" y="{height - 16}" text-anchor="middle" fill="#a00">budget</text>')
    parts.append("</svg>")
    return ("\n".join(parts) + "\n").encode()
