"""Guardian's user journeys, run by release-harness's E2E gate in headless Chromium.

The gate installs pytest and Playwright into guardian's venv, starts an isolated instance and
runs this directory with its plugin (`-p certify_e2e_plugin`), which provides `base_url`, `page`
and `journey` (`journey.step(name)` screenshots each step; `journey.visual(name, mask=...)` is
compared with `baselines/<journey>/<name>.png`). Journeys run in file order on one instance;
test_self_healing.py (the approvals journeys) runs after this file.
Refresh the baselines on purpose with `python -m e2e.update_baselines --target examples/guardian`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

READY_DEADLINE_S = 30.0
TASK_DEADLINE_S = 30.0


def _dashboard_when_ready(page: Page, base_url: str) -> None:
    """Open the dashboard, reloading until readiness is "ready" with a live worker (bounded)."""
    deadline = time.monotonic() + READY_DEADLINE_S
    while True:
        page.goto(base_url + "/")
        health = page.locator("section[aria-labelledby=health-h]")
        ready = health.locator(".badge.ready").count() > 0
        no_workers = page.locator(
            "section[aria-labelledby=procs-h] td", has_text="No live workers."
        )
        workers = no_workers.count() == 0
        if ready and workers:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"the dashboard did not show a ready instance within {READY_DEADLINE_S:g} s"
            )
        page.wait_for_timeout(500)


def _dynamic(page: Page) -> list[Locator]:
    """Areas of the dashboard that change from run to run: pids, heartbeat ages, restart counts."""
    return [page.locator("section[aria-labelledby=procs-h]")]


def test_launch(page: Page, journey: Any, base_url: str) -> None:
    """The dashboard loads and shows the instance healthy: ready, store writable, circuit closed."""
    _dashboard_when_ready(page, base_url)
    expect(page).to_have_title(re.compile(r"^Guardian dashboard"))
    health = page.locator("section[aria-labelledby=health-h]")
    expect(health).to_contain_text("Readiness: ready")
    expect(health.locator("tr", has_text="store writable")).to_contain_text("yes")
    expect(health.locator("tr", has_text="dependency circuit")).to_contain_text("closed")
    journey.step("dashboard loaded, health shown")
    journey.visual("dashboard", mask=_dynamic(page))


def test_dashboard(page: Page, journey: Any, base_url: str) -> None:
    """Every dashboard panel is there and the navigation reaches each page and back."""
    page.goto(base_url + "/")
    panels = (
        "Health",
        "Queue",
        "Tasks by kind",
        "Supervised processes",
        "Submit a task",
        "Recent tasks",
    )
    for heading in panels:
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    journey.step("dashboard panels")
    nav = page.get_by_role("navigation", name="main")
    links = ("Tasks", "Incidents", "Approvals", "Settings", "Logs")
    for link, title in (*((link, link) for link in links), ("Dashboard", "Guardian")):
        nav.get_by_role("link", name=link, exact=True).click()
        expect(page).to_have_title(re.compile(f"^{title}"))
        journey.step(f"navigated to {link}")


def test_submit_task(page: Page, journey: Any, base_url: str) -> None:
    """A task submitted through the dashboard form reaches "completed" on its own page."""
    page.goto(base_url + "/")
    page.get_by_label("Kind", exact=True).select_option("orchestrate")
    page.get_by_label("Payload (JSON object)").fill('{"steps": 3, "note": "e2e journey"}')
    journey.step("form filled")
    page.get_by_role("button", name="Submit task").click()
    expect(page).to_have_url(re.compile(r"/ui/tasks/[0-9a-f]{32}$"))
    journey.step("task page after submit")
    status = page.locator("tr", has_text="status").locator(".badge")
    deadline = time.monotonic() + TASK_DEADLINE_S
    while status.inner_text() != "completed":
        if time.monotonic() > deadline:
            pytest.fail(f"the task stayed {status.inner_text()!r} for {TASK_DEADLINE_S:g} s")
        page.wait_for_timeout(300)
        page.reload()
    expect(page.get_by_role("heading", name="Result")).to_be_visible()
    result = page.locator("section", has=page.get_by_role("heading", name="Result"))
    expect(result.locator("pre")).not_to_have_text("—")
    journey.step("task completed")
    page.goto(base_url + "/ui/tasks?status=completed")
    expect(page.locator("tbody tr").first.locator(".badge")).to_have_text("completed")
    journey.step("task listed as completed")


def test_submit_rejects_bad_payload(page: Page, journey: Any, base_url: str) -> None:
    """The form refuses a payload that is not JSON and says why, keeping what was typed."""
    journey.expect_console_error(
        r"status of 422", "the service answers a rejected form with HTTP 422"
    )
    page.goto(base_url + "/")
    page.get_by_label("Payload (JSON object)").fill("{not json")
    page.get_by_role("button", name="Submit task").click()
    expect(page.get_by_role("alert")).to_have_text("payload is not valid JSON")
    expect(page.get_by_label("Payload (JSON object)")).to_have_value("{not json")
    journey.step("validation error shown")


def test_settings_persist(page: Page, journey: Any, base_url: str) -> None:
    """A log-level change is saved, survives a reload, and can be set back."""
    page.goto(base_url + "/ui/settings")
    level = page.get_by_label("log level")
    original = level.input_value()
    changed = "DEBUG" if original != "DEBUG" else "WARNING"
    journey.step("settings before")
    level.select_option(changed)
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved")
    journey.step(f"log level saved as {changed}")
    page.goto(base_url + "/ui/settings")
    expect(page.get_by_label("log level")).to_have_value(changed)
    journey.step(f"after reload: still {changed}")
    journey.visual("settings")
    page.get_by_label("log level").select_option(original)
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Settings saved")
    page.goto(base_url + "/ui/settings")
    expect(page.get_by_label("log level")).to_have_value(original)
    journey.step(f"set back to {original}")


def test_logs_view(page: Page, journey: Any, base_url: str) -> None:
    """The logs page shows the tail of the instance's log, and the line count can be changed."""
    page.goto(base_url + "/ui/logs")
    expect(page.get_by_text(re.compile(r"Last \d+ line\(s\) of"))).to_be_visible()
    expect(page.locator("pre")).to_contain_text('"level"')
    journey.step("log tail")
    # The en dash is the label's own text (templates/logs.html); get_by_label matches it exactly.
    page.get_by_label("Lines to show (1–1000)").fill("5")  # noqa: RUF001
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"/ui/logs\?lines=5$"))
    expect(page.get_by_text(re.compile(r"Last [1-5] line\(s\) of"))).to_be_visible()
    journey.step("last 5 lines")


@pytest.mark.after_shutdown
def test_shutdown(page: Page, journey: Any, base_url: str) -> None:
    """After the harness stopped the instance, its UI no longer answers."""
    journey.expect_network_failures("the harness stopped the instance before this journey")
    with pytest.raises(PlaywrightError, match="ERR_CONNECTION_REFUSED"):
        page.goto(base_url + "/")
    journey.step("dashboard unreachable after stop", check_page=False)
