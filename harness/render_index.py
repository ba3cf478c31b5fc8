"""index.html at the pack root: verdict first, one section per gate, the matrix, then run facts.

A pure function of the pack's files (results.json, run.json, config, manifest, traceability.json and
the gates' SVG charts), so the same pack renders byte-identical HTML and `certify verify` can
re-render and compare it. Charts are hand-written inline SVG (harness/render_charts.py,
harness/render_load_chart.py): benchmarks/chart_libraries.py measured the latency chart at 6.8 kB and
0.2 ms, against pygal 3.1 (52 kB, 13 ms, random ids so not byte-identical, embeds a script) and
matplotlib 3.11 (33 kB, 72-107 ms, deterministic with svg.hashsalt and Date None, 0.35 s import).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.errors import PackError
from harness.evidence import MANIFEST
from harness.model import GateResult
from harness.render_charts import coverage_chart, inline_svg, threshold_chart
from harness.render_load_chart import latency_chart

INDEX = "index.html"
#: Characters of a gate's reason shown in the one-row overview (the gate's section has all of it).
REASON_CHARS = 160
#: Lines of "why" on the first screen.
WHY_LINES = 3
_MATRIX = "traceability.json"
_COVERAGE_JSON = "gates/G1/coverage.json"
_LOAD_SUMMARY = re.compile(r"load_test_results/P[0-9]+\.json")
_STATUS_TOKEN = re.compile(r"[A-Z][A-Z_]{0,31}")


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    """First line of a reason, cut at `limit` characters with an ellipsis."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def _href(relpath: str) -> str:
    """A relative link to a pack file, percent-encoded so it works from file:// and any static server."""
    return quote(relpath, safe="/")


def _manifest_files(root: Path) -> dict[str, dict[str, Any]]:
    """The manifest's file table (path -> entry)."""
    try:
        doc = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{MANIFEST} in {root} cannot be read as JSON: {exc}"
        raise PackError(msg) from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict):
        msg = f"{MANIFEST} in {root} has no `files` object"
        raise PackError(msg)
    return files


def _charts(root: Path, result: GateResult, owned: list[str]) -> list[str]:
    """A gate's inline charts: measured against threshold, coverage per module, latency per profile, its own SVGs."""
    charts = []
    chart = threshold_chart(f"{result.gate}: measured values against their thresholds", result.verdict.measurements)
    if chart is not None:
        charts.append(chart)
    overall = [m for m in result.verdict.measurements if m.name == "overall line coverage"]
    limit = overall[0].threshold if overall else None
    if _COVERAGE_JSON in owned and isinstance(limit, int | float):
        charts.append(coverage_chart(root / _COVERAGE_JSON, float(limit)) or "")
    for relpath in owned:
        if _LOAD_SUMMARY.fullmatch(relpath):
            charts.append(latency_chart(root, relpath) or "")
    for relpath in owned:
        if relpath.endswith(".svg"):
            charts.append(inline_svg(root / relpath, f"{result.gate}: {relpath}") or "")
    return [chart for chart in charts if chart]


def _gate_section(root: Path, result: GateResult, row: Any, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a gate's section prints: checks, thresholds beside values, charts, evidence links."""
    owned = sorted(path for path, entry in files.items() if entry.get("gate") == result.gate)
    charts = _charts(root, result, owned)
    return {
        "row": row,
        "anchor": f"gate-{result.gate}",
        "reason": one_line(result.verdict.reasons[0]) if result.verdict.reasons else "no reason recorded",
        "charts": charts,
        "evidence": [{"path": path, "href": _href(path), "size": int(files[path].get("size") or 0)} for path in owned],
    }


def _matrix(root: Path) -> dict[str, Any] | None:
    """The traceability matrix rows for the filterable table; None in packs without traceability.json."""
    path = root / _MATRIX
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{_MATRIX} in {root} cannot be read as JSON: {exc}"
        raise PackError(msg) from exc
    rows = [
        {
            "id": str(req.get("id")),
            "text": str(req.get("text", "")),
            "status": str(req.get("status", "")),
            # The filter's CSS selectors carry this token, so only a plain status word gets through.
            "token": status if _STATUS_TOKEN.fullmatch(status := str(req.get("status", ""))) else "OTHER",
            "reason": one_line(str(req.get("reason", ""))),
            "checks": [f"{c.get('gate')} {c.get('id')}: {c.get('status')}" for c in req.get("checks") or ()],
        }
        for req in doc.get("requirements") or ()
    ]
    return {"rows": rows, "statuses": sorted({row["token"] for row in rows}), "href": _href(_MATRIX)}


def index_context(root: Path, report: dict[str, Any], results: tuple[GateResult, ...]) -> dict[str, Any]:
    """Extend the report context with the index's sections (gate pages, matrix, evidence links)."""
    files = _manifest_files(root)
    rows = {row.gate: row for row in report["rows"]}
    why = [f"{b.gate} {b.status}: {one_line(b.reasons[0]) if b.reasons else 'no reason'}" for b in report["blockers"]]
    if not why and report["mode"] == "release" and not report["certified"]:
        why = [one_line(refusal) for refusal in report["refusals"]]
    elif not why and report["mode"] != "release" and report["merge_status"] != "PASS":
        why = [f"exit code {report['exit_code']}: {report['exit_meaning']}"]
    if not why:
        required = ", ".join(report["required_ids"]) or "none"
        why = [f"every required gate PASSed ({required}); no unwaived deviation from the policy"]
    raw_links = sorted(
        path for path, entry in files.items() if entry.get("gate") == "harness" and not path.startswith("gates/")
    )
    return {
        **report,
        "why": why[:WHY_LINES],
        "why_more": max(0, len(why) - WHY_LINES),
        "gates": [_gate_section(root, result, rows[result.gate], files) for result in results],
        "matrix": _matrix(root),
        "pack_files": [{"path": path, "href": _href(path)} for path in (*raw_links, MANIFEST)],
    }
