"""index.html in Debian's Chromium: loads clean, every link stays in the pack, no page scroll, accessible."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from e2e.pixeldiff import compare
from tests.harness.packs import FIXTURES, certify_argv, certify_env

pytestmark = pytest.mark.integration

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RECORDED = FIXTURES / "packs" / "load-ok-ci"
BASELINES = FIXTURES / "index_baselines"
#: The E2E gate's defaults (gates/e2e.py): a channel moving by more than 24/255 differs; 0.1 % may.
PIXEL_TOLERANCE = 24
MAX_DIFF_RATIO = 0.001
WIDTHS = (1280, 390)
#: `CERTIFY_UPDATE_INDEX_BASELINES=1` rewrites the committed baselines on purpose.
UPDATE = os.environ.get("CERTIFY_UPDATE_INDEX_BASELINES") == "1"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded ci pack of the load-ok fixture (G2, G3, charts) re-rendered by `certify report`."""
    out = tmp_path_factory.mktemp("index") / "site"
    subprocess.run(certify_argv("report", str(RECORDED), "--out", str(out)), env=certify_env(), check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def browser() -> Any:
    """Debian's Chromium driven by Playwright, closed after the module."""
    if not CHROMIUM.is_file():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield launched
        launched.close()


def _open(browser: Any, url: str, width: int) -> tuple[Any, list[str]]:
    """Open url at a viewport width, collecting console errors, page errors and failed requests."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"pageerror {exc}"))
    page.on("requestfailed", lambda req: problems.append(f"failed {req.url}"))
    page.goto(url, wait_until="load")
    return page, problems


def _local_targets(page: Any, root: Path) -> list[tuple[str, Path | None]]:
    """Every link of the page as (href, file it points at, or None for an in-page anchor)."""
    hrefs: list[str] = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    targets = []
    for href in hrefs:
        parsed = urlparse(href)
        assert parsed.scheme == "file", f"link leaves the pack: {href}"
        targets.append((href, Path(unquote(parsed.path)).resolve()))
    return targets


def test_index_and_gate_sections_load_clean_and_every_link_resolves_inside_the_pack(browser: Any, site: Path) -> None:
    """No console error, no failed request, every link a file of the pack or an anchor that exists."""
    page, problems = _open(browser, (site / "index.html").as_uri(), 1280)
    assert problems == []
    targets = _local_targets(page, site)
    assert len(targets) > 100
    for href, path in targets:
        assert path is not None, href
        assert path.is_relative_to(site.resolve()), href
        fragment = urlparse(href).fragment
        if fragment:
            assert page.locator(f"[id='{fragment}']").count() == 1, href
        else:
            assert path.is_file(), href
    sections = page.eval_on_selector_all("section.gate", "els => els.map(e => e.id)")
    assert sections == ["gate-G2", "gate-G3"]
    for anchor in sections:
        gate_page, gate_problems = _open(browser, (site / "index.html").as_uri() + f"#{anchor}", 1280)
        assert gate_problems == []
        assert gate_page.locator(f"#{anchor} svg.chart").count() >= 1
        gate_page.close()
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_no_page_scroll_and_first_screen_matches_the_baseline(browser: Any, site: Path, width: int) -> None:
    """The document is exactly as wide as the viewport; the first screen matches the committed baseline."""
    page, problems = _open(browser, (site / "index.html").as_uri(), width)
    assert problems == []
    assert page.evaluate("document.documentElement.scrollWidth") == width
    assert_first_screen(page.screenshot(full_page=False), BASELINES / f"index-{width}.png", site.parent, width)
    page.close()


def assert_first_screen(shot: bytes, baseline: Path, out: Path, width: int) -> None:
    """Keep the shot in out (index-<width>.png) and compare it with the baseline the E2E gate's way."""
    (out / f"index-{width}.png").write_bytes(shot)
    if UPDATE:
        baseline.write_bytes(shot)
    diff = compare(shot, baseline.read_bytes(), PIXEL_TOLERANCE)
    if diff.diff_png is not None:
        (out / f"index-{width}.diff.png").write_bytes(diff.diff_png)
    assert diff.same_size, f"size {diff.size} vs baseline {diff.baseline_size}; see {out}"
    assert diff.ratio <= MAX_DIFF_RATIO, f"{diff.differing_pixels} pixels differ; see {out}"


def test_one_h1_ordered_headings_titled_charts_and_table_headers(browser: Any, site: Path) -> None:
    """Basic accessibility: one h1, no heading level skipped, a title on every chart, th in every table."""
    page, _ = _open(browser, (site / "index.html").as_uri(), 1280)
    assert_accessible(page, min_charts=10)
    page.close()


def assert_accessible(page: Any, min_charts: int) -> None:
    """One h1 first, no heading level skipped, every chart titled and labelled, a th in every table, img alt."""
    levels = page.eval_on_selector_all("h1,h2,h3,h4,h5,h6", "els => els.map(e => Number(e.tagName[1]))")
    assert levels.count(1) == 1
    assert levels[0] == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
    untitled = page.eval_on_selector_all(
        "svg.chart", "els => els.filter(e => !(e.querySelector('title') && e.getAttribute('aria-label'))).length"
    )
    assert page.locator("svg.chart").count() >= min_charts
    assert untitled == 0
    assert page.eval_on_selector_all("table", "els => els.filter(t => !t.querySelector('th')).length") == 0
    assert page.eval_on_selector_all("img", "els => els.filter(e => !(e.alt || e.title)).map(e => e.src)") == []


def test_matrix_filters_by_status_without_a_script(browser: Any, site: Path) -> None:
    """Choosing a status leaves only that status's requirement rows visible (CSS only, no script)."""
    page, problems = _open(browser, (site / "index.html").as_uri(), 1280)
    assert page.locator("script").count() == 0
    rows = page.locator("#matrix ~ .matrix tr[data-status]")
    total = rows.count()
    page.locator("label[for='mf-PASS']").click()
    visible = page.eval_on_selector_all(
        "tr[data-status]", "els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.status)"
    )
    assert total > len(visible) > 0
    assert set(visible) == {"PASS"}
    assert problems == []
    page.close()


def test_print_stylesheet_hides_the_filter_and_prints_to_pdf(browser: Any, site: Path) -> None:
    """Under print media the matrix filter is hidden, nothing scrolls sideways, and print-to-PDF gives a PDF."""
    page, _ = _open(browser, (site / "index.html").as_uri(), 1280)
    page.emulate_media(media="print")
    assert page.locator("label[for='mf-PASS']").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") == 1280
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    (site.parent / "index.pdf").write_bytes(pdf)
    page.close()
