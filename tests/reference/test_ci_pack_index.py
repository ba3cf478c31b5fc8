"""The index.html of a full reference ci pack (every gate, G2/G4/PB/E2E sections included) in Debian's Chromium.

`nox -s ci` runs this module over the pack it has just written (CERTIFY_REFERENCE_PACK=<pack>);
the test suite skips it, since only the ci session makes such a pack (a full ci run takes ~9 min).
The first screens at 1280 and 390 px are kept beside the pack (index-1280.png, index-390.png) and
compared with committed baselines (tests/fixtures/index_baselines/reference-ci-*.png) the way the
E2E gate compares its visuals: what differs between two runs (the verdict and blocking list, commits
and digests, the traceability figure, statuses, durations and reasons) is masked with #FF00FF boxes
of a pinned size, then a channel moving by more than 24/255 differs and 0.1 % of the pixels may.
`CERTIFY_UPDATE_INDEX_BASELINES=1` rewrites the baselines on purpose.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

PACK = os.environ.get("CERTIFY_REFERENCE_PACK")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not PACK, reason="needs a full reference ci pack: `nox -s ci` runs it over the pack it wrote"),
]


@pytest.fixture(scope="module")
def pack() -> Path:
    """The reference ci pack named by CERTIFY_REFERENCE_PACK."""
    root = Path(str(PACK)).resolve()
    assert (root / "index.html").is_file(), f"{root} has no index.html"
    return root


@pytest.fixture(scope="module")
def browser() -> Any:
    """Debian's Chromium driven by Playwright, closed after the module."""
    from tests.harness.test_index_browser import ARGS, CHROMIUM  # noqa: PLC0415

    sync_api = pytest.importorskip("playwright.sync_api")
    assert CHROMIUM.is_file(), "Debian's chromium is not installed (apt-get install -y chromium)"
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


def _gates(pack: Path) -> list[str]:
    """The gates the pack's run recorded a result for."""
    return [r["gate"] for r in json.loads((pack / "results.json").read_text(encoding="utf-8"))["results"]]


def test_every_gate_section_loads_clean_and_every_link_is_a_file_of_the_pack(browser: Any, pack: Path) -> None:
    """No console error or failed request on the index or any gate's section; every link resolves inside the pack."""
    from tests.harness.test_index_browser import _local_targets, _open  # noqa: PLC0415

    page, problems = _open(browser, (pack / "index.html").as_uri(), 1280)
    assert problems == []
    targets = _local_targets(page, pack)
    assert len(targets) > 200
    for href, path in targets:
        assert path is not None, href
        assert path.is_relative_to(pack), href
        fragment = urlparse(href).fragment
        if fragment:
            assert page.locator(f"[id='{fragment}']").count() == 1, href
        else:
            assert path.is_file(), href
    sections = page.eval_on_selector_all("section.gate", "els => els.map(e => e.id)")
    assert sections == [f"gate-{gate}" for gate in _gates(pack)]
    for gate in ("G2", "G4", "PB", "E2E"):
        assert f"gate-{gate}" in sections
    for anchor in sections:
        gate_page, gate_problems = _open(browser, (pack / "index.html").as_uri() + f"#{anchor}", 1280)
        assert gate_problems == [], anchor
        gate_page.close()
    for gate in ("G1", "G2", "G4"):
        assert page.locator(f"#gate-{gate} svg.chart").count() >= 1, gate
    page.close()


#: What differs between two ci runs on the first screen: the verdict, the blocking list, the matrix
#: figure, commits and digests, each gate's status, duration and reason. Masked with #FF00FF boxes.
DYNAMIC = (
    "header h1",
    "header .verdict",
    "header ul.why",
    "header p.traceability",
    "code",
    "main .tablebox td:nth-child(2)",
    "main .tablebox td:nth-child(3)",
    "main .tablebox td:nth-child(4)",
)
#: The masked boxes get a fixed height (and the gate table fixed column widths), so a run with another
#: blocking list or longer reasons lays out the rest of the screen as the baseline's run did: the
#: comparison then checks the layout and style around them, whatever the verdicts were.
PIN = """
header h1 { height: 2.6em; overflow: hidden; }
header .verdict { height: 2.6em; overflow: hidden; }
header ul.why { height: 6em; overflow: hidden; }
header p.traceability { height: 4.5em; overflow: hidden; }
main .tablebox table { table-layout: fixed; width: 100%; }
"""


@pytest.mark.parametrize("width", [1280, 390])
def test_no_page_scroll_and_the_first_screen_matches_the_baseline(browser: Any, pack: Path, width: int) -> None:
    """The document is exactly as wide as the viewport; the masked first screen matches the committed baseline."""
    from tests.harness.test_index_browser import BASELINES, _open, assert_first_screen  # noqa: PLC0415

    page, problems = _open(browser, (pack / "index.html").as_uri(), width)
    assert problems == []
    assert page.evaluate("document.documentElement.scrollWidth") == width
    page.add_style_tag(content=PIN)
    masks = [page.locator(selector) for selector in DYNAMIC]
    shot = page.screenshot(full_page=False, animations="disabled", caret="hide", mask=masks)
    assert_first_screen(shot, BASELINES / f"reference-ci-{width}.png", pack.parent, width)
    page.close()


def test_one_h1_ordered_headings_titled_charts_and_table_headers(browser: Any, pack: Path) -> None:
    """Basic accessibility over the whole pack's index: one h1, no level skipped, every chart titled, th everywhere."""
    from tests.harness.test_index_browser import _open, assert_accessible  # noqa: PLC0415

    page, _ = _open(browser, (pack / "index.html").as_uri(), 1280)
    assert_accessible(page, min_charts=10)
    page.close()
