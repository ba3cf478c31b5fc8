"""Deterministic SVG line charts for load_test_results/: same data in, same bytes out (no plotting library)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def _nice_max(value: float) -> float:
    """A round axis maximum at or above value."""
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return float(step * magnitude)
    return float(10 * magnitude)


def _fmt(value: float) -> str:
    """A compact axis label."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def line_chart(
    title: str,
    axes: tuple[str, str],
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    note: str = "",
) -> str:
    """An SVG line chart; None values break a line; the note (e.g. the ci-mode scaling) is printed under the title."""
    x_label, y_label = axes
    x_max = max(float(xs[-1]) if xs else 1.0, 1e-9)
    values = [v for line in series.values() for v in line if v is not None]
    y_max = _nice_max(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + plot_w * x / x_max

    def py(y: float) -> float:
        return TOP + plot_h * (1 - y / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}"'
        ' font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="30" fill="#555">{escape(note)}</text>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="black"/>',
    ]
    for i in range(5):
        y = y_max * i / 4
        parts.append(f'<line x1="{LEFT}" y1="{py(y):.1f}" x2="{LEFT + plot_w}" y2="{py(y):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>')
        x = x_max * i / 4
        parts.append(f'<text x="{px(x):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">{_fmt(x)}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" transform="rotate(-90 14 {TOP + plot_h / 2})">'
        f"{escape(y_label)}</text>"
    )
    for index, (name, line) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        segments: list[list[str]] = [[]]
        for x_value, y_value in zip(xs, line, strict=False):
            if y_value is None:
                segments.append([])
            else:
                segments[-1].append(f"{px(x_value):.1f},{py(y_value):.1f}")
        for points in segments:
            if len(points) == 1:
                x_text, y_text = points[0].split(",")
                parts.append(f'<circle cx="{x_text}" cy="{y_text}" r="2" fill="{colour}"/>')
            elif points:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(points)}"/>'
                )
        legend_x = LEFT + 10 + index * 130
        parts.append(f'<rect x="{legend_x}" y="{TOP + 4}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 14}" y="{TOP + 13}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
