"""Per load profile: latency percentiles over time with the p99 limit drawn and the arrival rate beneath.

Read from the G2 evidence a pack already holds (load_test_results/<profile>.json for the limit and
window, the raw per-request CSV it names for the samples), drawn as hand-written inline SVG, so it is
a pure function of the pack. Samples, arrivals and nearest-rank percentiles follow load/stats.py,
the gate's own rules (HTTP rows after the warm-up, latency from the planned start).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from harness.render_rows import format_number
from load.stats import HTTP_KINDS, nearest_rank

#: Raw sample files larger than this (compressed) are not charted; the link to them stays.
RAW_MAX_BYTES = 64 * 1024 * 1024
MAX_BINS = 60
_W, _LEFT, _RIGHT = 720, 60, 20
_TOP_H, _GAP, _RATE_H = 200, 30, 70


def _bins(raw: Path, warmup_s: float, duration_s: float) -> list[tuple[float, list[float], int]]:
    """(bin start s, sorted HTTP latencies ms from planned start, arrivals) per bin, by the gate's own rules.

    The gate's rules (load/stats.py): a latency sample is an HTTP row (HTTP_KINDS) that ended and was
    planned after the warm-up; an arrival is an `arrival` or `drop` row. Parsed with csv.reader and
    column indexes rather than load.stats.parse_raw: 600,000 rows take ~1 s instead of ~5 s.
    """
    width = max(1.0, math.ceil(duration_s / MAX_BINS))
    count = max(1, math.ceil(duration_s / width))
    latencies: list[list[float]] = [[] for _ in range(count)]
    arrivals = [0] * count
    data = raw.read_bytes()
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    kind_at, planned_at, end_at = (header.index(name) for name in ("kind", "planned_s", "end_s"))
    http_kinds = frozenset(HTTP_KINDS)
    for row in reader:
        kind = row[kind_at]
        planned = float(row[planned_at])
        index = min(count - 1, max(0, int(planned // width)))
        if kind in {"arrival", "drop"}:
            arrivals[index] += 1
        if kind in http_kinds and row[end_at] and planned >= warmup_s:
            latencies[index].append((float(row[end_at]) - planned) * 1000)
    return [(i * width, sorted(values), arrivals[i]) for i, values in enumerate(latencies)]


def latency_chart(root: Path, summary_path: str) -> str | None:
    """The chart for one load_test_results/<profile>.json, or None when its raw samples are absent or too big."""
    try:
        doc: dict[str, Any] = json.loads((root / summary_path).read_text(encoding="utf-8"))
        raw = root / str(doc["raw_evidence"])
        limit = (doc.get("thresholds") or {}).get("p99_ms")
        duration_s = float(doc["duration_s"])
        warmup_s = float(doc.get("warmup_s_excluded") or 0.0)
        if not raw.is_file() or raw.stat().st_size > RAW_MAX_BYTES or duration_s <= 0:
            return None
        bins = _bins(raw, warmup_s, duration_s)
    except (OSError, KeyError, IndexError, TypeError, ValueError, json.JSONDecodeError, EOFError, gzip.BadGzipFile):
        return None
    return _draw(
        f"{doc.get('profile')} {doc.get('title', '')}", bins, limit if isinstance(limit, int | float) else None
    )


def _draw(title: str, bins: list[tuple[float, list[float], int]], limit: float | None) -> str:
    """SVG: p50 and p99 lines per bin, the p99 limit dashed, the arrivals per bin as bars beneath."""
    series = {q: [nearest_rank(v, q) if v else None for _, v, _ in bins] for q in (0.5, 0.99)}
    data_max = max([v for line in series.values() for v in line if v is not None] + [1e-9])
    # A limit far above the data would flatten it to the floor: then the axis fits the data and the
    # limit is named at the top edge instead of drawn.
    off_chart = limit is not None and limit > 4 * data_max
    top = (data_max if off_chart or limit is None else max(data_max, limit)) * 1.1
    rate_top = max([a for _, _, a in bins] + [1])
    plot_w, step = _W - _LEFT - _RIGHT, (_W - _LEFT - _RIGHT) / len(bins)
    height = 20 + _TOP_H + _GAP + _RATE_H + 20
    label = f"{title}: p50 and p99 latency per {format_number(bins[1][0] if len(bins) > 1 else 1)} s"
    label += f" against the p99 limit {format_number(limit)} ms" if limit is not None else " (no p99 limit)"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" aria-label={quoteattr(label + "; arrivals per bin beneath")}>',
        f"<title>{escape(label)}; arrivals per bin beneath</title>",
        f'<text x="{_LEFT}" y="14" font-size="12" font-weight="bold">{escape(label)}</text>',
        f'<text x="{_LEFT - 6}" y="{20 + 10}" font-size="10" text-anchor="end">{top:.3g} ms</text>',
        f'<text x="{_LEFT - 6}" y="{20 + _TOP_H}" font-size="10" text-anchor="end">0</text>',
        f'<rect x="{_LEFT}" y="20" width="{plot_w}" height="{_TOP_H}" fill="none" stroke="#d0d7de"/>',
    ]
    for q, colour in ((0.5, "#0969da"), (0.99, "#8250df")):
        points = " ".join(
            f"{_LEFT + step * (i + 0.5):.1f},{20 + _TOP_H * (1 - v / top):.1f}"
            for i, v in enumerate(series[q])
            if v is not None
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(
            f'<text x="{_W - _RIGHT}" y="{34 + 14 * (q > 0.9)}" font-size="11" text-anchor="end" fill="{colour}">'
            f"p{format_number(q * 100)}</text>"
        )
    if off_chart:
        parts.append(
            f'<text x="{_LEFT + 4}" y="32" font-size="11" fill="#cf222e">'
            f"p99 limit {escape(format_number(limit))} ms: far above the chart (axis fits the data)</text>"
        )
    elif limit is not None:
        y = 20 + _TOP_H * (1 - limit / top)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#cf222e" stroke-width="2" '
            f'stroke-dasharray="6 3"/><text x="{_LEFT + 4}" y="{y - 4:.1f}" font-size="11" fill="#cf222e">'
            f"p99 limit {escape(format_number(limit))} ms</text>"
        )
    base = 20 + _TOP_H + _GAP + _RATE_H
    parts.append(
        f'<text x="{_LEFT - 6}" y="{base - _RATE_H + 10}" font-size="10" text-anchor="end">{rate_top}</text>'
        f'<text x="{_LEFT}" y="{base - _RATE_H - 6}" font-size="11">arrivals per bin</text>'
    )
    for i, (_, _, arrivals) in enumerate(bins):
        bar = _RATE_H * arrivals / rate_top
        parts.append(
            f'<rect x="{_LEFT + step * i + 1:.1f}" y="{base - bar:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{bar:.1f}" fill="#6e7781"/>'
        )
    last = bins[-1][0] + (bins[1][0] if len(bins) > 1 else 1)
    parts.append(
        f'<text x="{_LEFT}" y="{base + 14}" font-size="10">0 s</text>'
        f'<text x="{_W - _RIGHT}" y="{base + 14}" font-size="10" text-anchor="end">{format_number(last)} s</text>'
        "</svg>"
    )
    return "".join(parts)
