"""The #20 chart decision, measured: the index's hand-written latency chart against pygal and matplotlib.

The same chart (60 bins of p50/p99 latency from the recorded load-ok pack, the p99 limit, arrivals
beneath) drawn three ways: bytes of SVG, median ms per chart over 20 renders, whether two renders are
byte-identical (matplotlib with svg.hashsalt fixed and metadata Date None), whether it embeds a script.
pygal and matplotlib are not harness dependencies: run this with both importable, e.g.
`python -m venv /tmp/charts && /tmp/charts/bin/pip install pygal matplotlib`, then
`PYTHONPATH=/tmp/charts/lib/python3.11/site-packages python benchmarks/chart_libraries.py`.

Measured 2026-12-07 on the 2-core CI box: hand-written 6,830 bytes, 0.21 ms, deterministic, no script;
pygal 3.1.3 52,095 bytes, 13.7 ms, NOT deterministic (random ids), embeds <script>; matplotlib 3.11.2
33,086 bytes, 72.4 ms, deterministic, no script (plus 0.35 s import).
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.render_load_chart import _bins, _draw
from load.stats import nearest_rank

RAW = Path(__file__).resolve().parents[1] / "tests/fixtures/packs/load-ok-ci/gates/G2/load/P1/raw.csv.gz"
LIMIT_MS = 10.0


def main() -> int:
    """Print one line per way of drawing the chart."""
    try:
        import matplotlib  # noqa: PLC0415
        import pygal  # noqa: PLC0415
    except ImportError as exc:
        print(f"chart_libraries: needs pygal and matplotlib importable ({exc})", file=sys.stderr)
        return 2
    matplotlib.use("svg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    matplotlib.rcParams["svg.hashsalt"] = "release-harness"
    matplotlib.rcParams["svg.fonttype"] = "none"
    bins = (_bins(RAW, 0.5, 4.0) * 15)[:60]
    xs = [start for start, _, _ in bins]
    p50 = [nearest_rank(v, 0.5) if v else None for _, v, _ in bins]
    p99 = [nearest_rank(v, 0.99) if v else None for _, v, _ in bins]
    arrivals = [a for _, _, a in bins]

    def hand() -> bytes:
        return _draw("P1", bins, LIMIT_MS).encode()

    def with_pygal() -> bytes:
        lines = pygal.Line(width=720, height=320, show_dots=False, disable_xml_declaration=True, js=[])
        lines.add("p50", p50)
        lines.add("p99", p99)
        lines.add("p99 limit", [LIMIT_MS] * len(xs))
        bars = pygal.Bar(width=720, height=120, disable_xml_declaration=True, js=[])
        bars.add("arrivals", arrivals)
        return "".join(str(chart.render(is_unicode=True)) for chart in (lines, bars)).encode()

    def with_matplotlib() -> bytes:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 3.2), gridspec_kw={"height_ratios": [3, 1]})
        top.plot(xs, p50, label="p50")
        top.plot(xs, p99, label="p99")
        top.axhline(LIMIT_MS, ls="--", color="r", label="p99 limit")
        top.legend()
        bottom.bar(xs, arrivals)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
        return buffer.getvalue()

    ways: dict[str, Callable[[], bytes]] = {
        "hand-written": hand,
        f"pygal {pygal.__version__}": with_pygal,
        f"matplotlib {matplotlib.__version__}": with_matplotlib,
    }
    for name, draw in ways.items():
        first, second = draw(), draw()
        times = []
        for _ in range(20):
            start = time.perf_counter()
            draw()
            times.append(time.perf_counter() - start)
        print(
            f"{name}: {len(first)} bytes, median {statistics.median(times) * 1000:.2f} ms/chart, "
            f"deterministic={first == second}, script={b'<script' in first}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
