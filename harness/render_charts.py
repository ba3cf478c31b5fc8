"""Inline SVG charts for index.html: measured value against its threshold, and the gates' own SVG charts.

Hand-written SVG (see the note in harness/render_index.py for why not pygal or matplotlib): a pure
function of the measurements, with fixed number formatting, so the same pack gives the same bytes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from gates.coverage_judge import pct_floor
from harness.model import Measurement
from harness.render_rows import format_number

#: Gate-written SVG files larger than this are linked, not inlined (keeps the index light).
INLINE_SVG_MAX_BYTES = 256 * 1024
_BAR_HEIGHT = 18
_LABEL_WIDTH = 260
_PLOT_WIDTH = 360
_SVG_NS = "{http://www.w3.org/2000/svg}"
_FORBIDDEN_TAGS = {"script", "foreignObject", "iframe", "object", "embed", "image", "use"}


def _numeric(measurement: Measurement) -> tuple[float, float] | None:
    """Value and threshold of a measurement both numbers, else None."""
    value, threshold = measurement.value, measurement.threshold
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(threshold, numbers) and not isinstance(value, bool):
        return float(value), float(threshold)
    return None


def threshold_chart(title: str, measurements: Sequence[Measurement], full_scale: float | None = None) -> str | None:
    """A horizontal bar per numeric measurement with its threshold as a line; None when none is numeric.

    One scale for the chart (`full_scale`, else the largest value or threshold) when every row has the
    same unit, so bars and limits compare across rows; rows of mixed units are each scaled alone.
    """
    rows = [(m, pair) for m in measurements if (pair := _numeric(m)) is not None]
    if not rows:
        return None
    common = full_scale
    if common is None and len({m.unit for m, _ in rows}) == 1:
        common = max(max(abs(v), abs(t)) for _, (v, t) in rows) * 1.1 or 1.0
    height = 28 + _BAR_HEIGHT * 2 * len(rows)
    width = _LABEL_WIDTH + _PLOT_WIDTH + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
    ]
    for index, (measurement, (value, threshold)) in enumerate(rows):
        scale = common or max(abs(value), abs(threshold)) * 1.1 or 1.0
        y = 20 + index * _BAR_HEIGHT * 2
        bar = _PLOT_WIDTH * abs(value) / scale
        line_x = _LABEL_WIDTH + _PLOT_WIDTH * abs(threshold) / scale
        fill = {True: "#1a7f37", False: "#cf222e", None: "#6e7781"}[measurement.passed]
        unit = f" {measurement.unit}" if measurement.unit else ""
        label = f"{measurement.name}: {format_number(value)}{unit} {measurement.comparator} {format_number(threshold)}"
        parts += [
            f'<text x="0" y="{y + 13}" font-size="12">{escape(measurement.name)}</text>',
            f'<rect x="{_LABEL_WIDTH}" y="{y}" width="{bar:.1f}" height="{_BAR_HEIGHT}" fill="{fill}">'
            f"<title>{escape(label)}</title></rect>",
            f'<line x1="{line_x:.1f}" x2="{line_x:.1f}" y1="{y - 3}" y2="{y + _BAR_HEIGHT + 3}" '
            f'stroke="#1f2328" stroke-width="2" stroke-dasharray="4 2"/>',
            f'<text x="{_LABEL_WIDTH}" y="{y + _BAR_HEIGHT + 13}" font-size="11" fill="#424a53">'
            f"{escape(format_number(value) + unit)} (limit {escape(str(measurement.comparator))} "
            f"{escape(format_number(threshold) + unit)})</text>",
        ]
    parts.append("</svg>")
    return "".join(parts)


def _safe(element: ET.Element) -> bool:
    """Whether an SVG tree holds nothing active: no script or embedding, no event handler, no outside link."""
    for node in element.iter():
        tag = node.tag.removeprefix(_SVG_NS) if isinstance(node.tag, str) else ""
        if tag in _FORBIDDEN_TAGS:
            return False
        for name, value in node.attrib.items():
            local = name.rsplit("}", 1)[-1].lower()
            if local.startswith("on") or (local == "href" and not value.startswith("#")):
                return False
            if "url(" in value and "url(#" not in value:
                return False
    return True


def inline_svg(path: Path, relpath: str) -> str | None:
    """A gate-written SVG file as inline markup with a title, when small, well-formed and inert; else None."""
    try:
        if path.stat().st_size > INLINE_SVG_MAX_BYTES:
            return None
        root = ET.fromstring(path.read_bytes())  # noqa: S314 - the pack's own file, parsed only to vet it
    except (OSError, ET.ParseError):
        return None
    if root.tag != f"{_SVG_NS}svg" or not _safe(root):
        return None
    ET.register_namespace("", _SVG_NS[1:-1])
    if root.find(f"{_SVG_NS}title") is None:
        title = ET.Element(f"{_SVG_NS}title")
        title.text = relpath
        root.insert(0, title)
    root.set("role", "img")
    root.set("aria-label", root.find(f"{_SVG_NS}title").text or relpath)  # type: ignore[union-attr]
    root.set("class", "chart")
    return ET.tostring(root, encoding="unicode")


#: Modules drawn in the coverage chart, least covered first; the rest are counted in its title.
COVERAGE_MODULES_SHOWN = 40


def coverage_chart(path: Path, min_line_pct: float) -> str | None:
    """Line coverage per module (coverage.py's JSON) against the overall threshold; None when unreadable."""
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        rows = [
            (pct_floor(int(entry["summary"]["covered_lines"]), int(entry["summary"]["num_statements"])), str(name))
            for name, entry in files.items()
        ]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    rows.sort()
    shown = rows[:COVERAGE_MODULES_SHOWN]
    more = f"; {len(rows) - len(shown)} better-covered modules not drawn" if len(rows) > len(shown) else ""
    measurements = [Measurement.judged(name, pct, ">=", min_line_pct, "%") for pct, name in shown]
    title = f"G1: line coverage per module against the {min_line_pct:g} % threshold{more}"
    return threshold_chart(title, measurements, full_scale=100.0)
