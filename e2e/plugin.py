"""pytest plugin for a target's browser journeys; shipped into the run, never imported by the harness.

The E2E gate copies this file into its scratch directory as ``certify_e2e_plugin.py`` and runs
``{python} -m pytest JOURNEYS -p certify_e2e_plugin`` in the *target's* venv, so the harness never
imports target code and the target never imports the harness. It needs only pytest and playwright.

Fixtures a journey may use:

- ``base_url``: the isolated instance the harness started (``E2E_BASE_URL``).
- ``page``: a fresh Chromium page (headless, fixed viewport, UTC, en-US); console errors, page
  errors, failed requests and 5xx answers are recorded as findings; a trace zip is kept on failure.
- ``journey``: the record of this journey; ``journey.step(name)`` screenshots the page (and checks
  title and form labels), ``journey.visual(name, mask=[locators])`` takes the screenshot compared
  with the baseline, ``journey.expect_network_failures(why)`` marks failures the journey provokes.

Mark a journey ``@pytest.mark.after_shutdown`` to run it after the harness stopped the instance.
Every journey writes ``E2E_ARTIFACTS/<journey>/journey.json``; the harness reads nothing else.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, ViewportSize, sync_playwright

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Every input, select and textarea a user fills must be named by a <label>, aria-label(ledby) or title.
A11Y_SCRIPT = """() => {
  const issues = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    const type = (el.getAttribute('type') || '').toLowerCase();
    if (['hidden', 'submit', 'button', 'reset', 'image'].includes(type)) continue;
    const byLabel = Array.from(el.labels || []).some((label) => label.textContent.trim() !== '');
    const byAria = (el.getAttribute('aria-label') || '').trim() !== ''
      || (el.getAttribute('aria-labelledby') || '').trim() !== ''
      || (el.getAttribute('title') || '').trim() !== '';
    if (!byLabel && !byAria) {
      const name = el.getAttribute('name');
      issues.push(`unlabelled form control <${el.tagName.toLowerCase()}`
        + (el.id ? ` id="${el.id}"` : '') + (name ? ` name="${name}"` : '') + '>');
    }
  }
  return {title: document.title.trim(), issues};
}"""
SERVER_ERROR = 500


def _slug(text: str) -> str:
    """A file-name-safe slug."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "step"


class Journey:
    """What one journey did: steps with screenshots, visual checkpoints and findings."""

    def __init__(self, journey_id: str, nodeid: str, page: Page, out_dir: Path) -> None:
        """Start recording a journey into out_dir."""
        self.id = journey_id
        self.nodeid = nodeid
        self.page = page
        self.out_dir = out_dir
        self.started = time.monotonic()
        self.steps: list[dict[str, Any]] = []
        self.visuals: list[dict[str, Any]] = []
        self.console_errors: list[dict[str, Any]] = []
        self.page_errors: list[dict[str, Any]] = []
        self.failed_requests: list[dict[str, Any]] = []
        self.a11y_issues: list[dict[str, Any]] = []
        self.expected_failures: str | None = None
        self.expected_console: list[tuple[re.Pattern[str], str]] = []
        self.current_step = "(before the first step)"

    def _elapsed_ms(self) -> int:
        """Milliseconds since the journey started."""
        return round((time.monotonic() - self.started) * 1000)

    def expect_network_failures(self, why: str) -> None:
        """Failed requests from here on are provoked on purpose (e.g. the instance was stopped); kept, not judged."""
        self.expected_failures = why

    def expect_console_error(self, pattern: str, why: str) -> None:
        """Console errors matching `pattern` (a regex) are provoked on purpose, e.g. a 422 answer to a bad form."""
        self.expected_console.append((re.compile(pattern), why))

    def _finding(self, kind: list[dict[str, Any]], expected: str | None = None, **fields: Any) -> None:
        """Record a finding against the current step (`expected`: why it is not a defect)."""
        kind.append({"step": self.current_step, "expected": expected, **fields})

    def console_error(self, text: str, url: str) -> None:
        """Record a console error, marked expected when the journey declared it."""
        why = next((why for pattern, why in self.expected_console if pattern.search(text)), None)
        self._finding(self.console_errors, expected=why, text=text, url=url)

    def step(self, name: str, *, check_page: bool = True) -> Path:
        """Screenshot the whole page after a step; check its title and form labels unless told not to."""
        self.current_step = name
        number = len(self.steps) + len(self.visuals) + 1
        path = self.out_dir / f"{number:02d}-{_slug(name)}.png"
        self.page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        record: dict[str, Any] = {
            "name": name,
            "file": path.name,
            "url": self.page.url,
            "elapsed_ms": self._elapsed_ms(),
            "checked": check_page,
        }
        if check_page:
            found = self.page.evaluate(A11Y_SCRIPT)
            record["title"] = found["title"]
            if not found["title"]:
                self._finding(self.a11y_issues, url=self.page.url, issue="the page has no <title>")
            for issue in found["issues"]:
                self._finding(self.a11y_issues, url=self.page.url, issue=issue)
        self.steps.append(record)
        return path

    def visual(self, name: str, mask: Sequence[Locator] = ()) -> Path:
        """The viewport screenshot compared with the baseline; dynamic areas masked (#FF00FF boxes)."""
        self.current_step = f"visual: {name}"
        path = self.out_dir / f"visual-{_slug(name)}.png"
        self.page.screenshot(path=str(path), animations="disabled", caret="hide", mask=list(mask))
        self.visuals.append({"name": _slug(name), "file": path.name, "url": self.page.url, "masks": len(mask)})
        return path

    def record(self, outcome: str, longrepr: str, trace: str | None) -> dict[str, Any]:
        """The journey as written to journey.json."""
        return {
            "id": self.id,
            "nodeid": self.nodeid,
            "outcome": outcome,
            "failure": longrepr[-3000:],
            "duration_ms": self._elapsed_ms(),
            "steps": self.steps,
            "visuals": self.visuals,
            "console_errors": self.console_errors,
            "page_errors": self.page_errors,
            "failed_requests": self.failed_requests,
            "a11y_issues": self.a11y_issues,
            "expected_failures": self.expected_failures,
            "trace": trace,
        }


def _viewport() -> ViewportSize:
    """Viewport from E2E_VIEWPORT (WIDTHxHEIGHT)."""
    width, height = os.environ.get("E2E_VIEWPORT", "1280x800").lower().split("x")
    return {"width": int(width), "height": int(height)}


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker (targets may run with --strict-markers)."""
    config.addinivalue_line("markers", "after_shutdown: runs after the harness stopped the instance")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so the page fixture knows whether the journey failed."""
    report = yield
    setattr(item, f"e2e_report_{report.when}", report)
    del call
    return report


@pytest.fixture(scope="session")
def base_url() -> str:
    """Base URL of the isolated instance under test."""
    return os.environ["E2E_BASE_URL"].rstrip("/")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where journeys leave screenshots, traces and journey.json."""
    return Path(os.environ["E2E_ARTIFACTS"])


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """One Playwright driver for the session."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Chromium: E2E_BROWSER_PATH (e.g. Debian's chromium) or Playwright's own build."""
    path = os.environ.get("E2E_BROWSER_PATH") or None
    launched = playwright_driver.chromium.launch(executable_path=path, args=LAUNCH_ARGS, headless=True)
    yield launched
    launched.close()


@pytest.fixture
def browser_context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh context (own cookies and storage) with reproducible rendering settings."""
    context = browser.new_context(
        viewport=_viewport(),
        device_scale_factor=1,
        locale="en-US",
        timezone_id="UTC",
        reduced_motion="reduce",
        color_scheme="light",
    )
    context.set_default_timeout(float(os.environ.get("E2E_ACTION_TIMEOUT_MS", "10000")))
    yield context
    context.close()


@pytest.fixture
def page(browser_context: BrowserContext) -> Page:
    """The journey's page (recording is attached by the `journey` fixture)."""
    return browser_context.new_page()


def _attach(journey: Journey, context: BrowserContext, page: Page) -> None:
    """Record console errors, uncaught exceptions, failed requests and 5xx answers as findings."""

    def on_console(message: Any) -> None:
        if message.type == "error":
            location = message.location or {}
            journey.console_error(message.text, location.get("url", ""))

    def on_request_failed(request: Any) -> None:
        failure = request.failure or "failed"
        # A request aborted because the page navigated away is not a failure of the service.
        if "ERR_ABORTED" not in failure:
            journey._finding(
                journey.failed_requests,
                expected=journey.expected_failures,
                method=request.method,
                url=request.url,
                failure=failure,
            )

    def on_response(response: Any) -> None:
        if response.status >= SERVER_ERROR:
            journey._finding(
                journey.failed_requests,
                expected=journey.expected_failures,
                method=response.request.method,
                url=response.url,
                failure=f"HTTP {response.status}",
            )

    page.on("console", on_console)
    page.on("pageerror", lambda error: journey._finding(journey.page_errors, text=str(error)))
    context.on("requestfailed", on_request_failed)
    context.on("response", on_response)


@pytest.fixture
def journey(
    request: pytest.FixtureRequest, browser_context: BrowserContext, page: Page, artifacts_dir: Path
) -> Iterator[Journey]:
    """The journey record: steps, visual checkpoints and findings; journey.json written at the end."""
    journey_id = _slug(request.node.name.removeprefix("test_"))
    out_dir = artifacts_dir / journey_id
    if out_dir.exists():
        pytest.fail(f"two journeys share the id {journey_id!r}; rename one of the test functions")
    out_dir.mkdir(parents=True)
    record = Journey(journey_id, request.node.nodeid, page, out_dir)
    _attach(record, browser_context, page)
    browser_context.tracing.start(screenshots=True, snapshots=True, sources=False)
    yield record
    report = getattr(request.node, "e2e_report_call", None)
    outcome = report.outcome if report is not None else "error"
    longrepr = str(report.longrepr) if report is not None and report.failed else ""
    trace = None
    if outcome not in ("passed", "skipped"):
        try:
            record.step("state at failure", check_page=False)
        except Exception as exc:  # the page may be gone; the journey has already failed
            longrepr += f"\n(no screenshot at failure: {exc})"
        trace = "trace.zip"
        browser_context.tracing.stop(path=str(out_dir / trace))
    else:
        browser_context.tracing.stop()
    data = record.record(outcome, longrepr, trace)
    (out_dir / "journey.json").write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
