"""Guardian's self-healing journeys: a real tier-2 approval request decided on the approvals page.

Each journey really injects the queue-backlog fault into the instance the E2E gate started (it
runs with `--healer --enable-fault-injection`: [gates.E2E] service_args in certify.toml), waits
for the healer's pending approval request, and decides it in the browser as an operator would.
What the healer then did is checked through the JSON API, never through the page just clicked:
the decision recorded, the playbook run (or not), the incident's final status, the live workers.

This file runs after test_journeys.py (pytest takes files in name order), so the backlog and the
extra workers never reach the other journeys' screenshots; each journey cancels its backlog.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

PLAYBOOK = "queue-backlog"
# The healer sees a backlog at 40 queued tasks, the oldest 5 s old, and calls the run healed once
# the added workers are alive and fewer than 40 are queued, within 30 s. Tasks of 1 s: 2 workers
# take 40 s to bring 120 below 40 on their own (the journey's time to approve); 4 workers, after
# an approval 8 s in, about 16 s. The standing backlog outlasts the rejection journey at 4 workers.
DRAINABLE_BACKLOG = {"count": 120, "cost_ms": 1000}
STANDING_BACKLOG = {"count": 220, "cost_ms": 1000}
# A Monday, 10:00 local: inside guardian's default change window (the healer's clock override).
IN_WINDOW = datetime(2025, 1, 6, 10, 0).timestamp()
PENDING_DEADLINE_S = 60.0
OUTCOME_DEADLINE_S = 60.0
CLEANUP_DEADLINE_S = 30.0
# Longer than the healer's 5 s back-off after a rejection: it has looked at the backlog again.
REJECTED_OBSERVE_S = 7.0
OPERATOR = "e2e operator"
OPEN = ("open", "awaiting_approval", "blocked", "running")
RAN = ("running", "healed", "failed", "rolled_back", "timed_out")


def wait_for(what: str, probe: Callable[[], Any], deadline_s: float) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {deadline_s:g} s")
        time.sleep(0.25)


class GuardianApi:
    """The instance's JSON API, called directly: the independent side of each check."""

    def __init__(self, base_url: str) -> None:
        """Bind to the instance under test."""
        self.base_url = base_url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request; an answer other than 2xx fails the journey with the service's text."""
        request = urllib.request.Request(  # noqa: S310 - the loopback instance under test
            self.base_url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:  # noqa: S310
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:300]
            pytest.fail(f"{method} {path} answered HTTP {exc.code}: {text}")

    def approvals(self, status: str = "") -> list[dict[str, Any]]:
        """Return the approval requests (of one status), newest first."""
        query = f"?status={status}" if status else ""
        return self.call("GET", "/api/guardian/approvals" + query)["approvals"]

    def approval(self, approval_id: int) -> dict[str, Any]:
        """Return one approval request."""
        (found,) = [item for item in self.approvals() if item["id"] == approval_id]
        return found

    def incidents(self) -> list[dict[str, Any]]:
        """Return the playbook's incidents, newest first."""
        path = f"/api/guardian/incidents?playbook={PLAYBOOK}&limit=50"
        return self.call("GET", path)["incidents"]

    def wait_incident(self, incident_id: int, statuses: tuple[str, ...]) -> dict[str, Any]:
        """Return the incident once it reached one of `statuses` (bounded wait)."""

        def reached() -> dict[str, Any] | None:
            (found,) = [item for item in self.incidents() if item["id"] == incident_id]
            return found if found["status"] in statuses else None

        what = f"incident {incident_id} reaching {'/'.join(statuses)}"
        return wait_for(what, reached, OUTCOME_DEADLINE_S)

    def live_workers(self) -> int:
        """Return the live workers readiness reports."""
        return int(self.call("GET", "/readyz")["checks"]["workers"]["alive"])


@pytest.fixture
def api(base_url: str) -> Iterator[GuardianApi]:
    """Provide the API, with the healer's clock inside the change window until the end."""
    client = GuardianApi(base_url)
    client.call("POST", "/api/guardian/clock", {"epoch": IN_WINDOW})
    yield client
    client.call("POST", "/api/guardian/clock", {"epoch": None})


@pytest.fixture
def backlog(api: GuardianApi) -> Iterator[Callable[[dict[str, int]], dict[str, Any]]]:
    """Provide `backlog(fault)`: inject it, return the healer's pending request; clean up after."""
    newest = max((item["id"] for item in api.approvals()), default=0)

    def pending_request(fault: dict[str, int]) -> dict[str, Any]:
        injected = api.call("POST", f"/api/guardian/faults/{PLAYBOOK}", fault)
        assert injected["injected"]["submitted"] == fault["count"], injected

        def ours() -> dict[str, Any] | None:
            fresh = [
                item
                for item in api.approvals("pending")
                if item["playbook_id"] == PLAYBOOK and item["id"] > newest
            ]
            return fresh[-1] if fresh else None

        what = f"a pending {PLAYBOOK} approval request after injecting its fault"
        return wait_for(what, ours, PENDING_DEADLINE_S)

    yield pending_request
    _cancel_backlog(api, newest)


def _cancel_backlog(api: GuardianApi, newest: int) -> None:
    """Cancel the queued backlog, then reject what the healer asked for it since the journey began.

    With the backlog still deep after the back-off that follows a rejection (or after a failed
    run), the healer rightly opens a new incident and asks again. Once the backlog is gone it
    closes that incident as cleared; the request left pending is rejected so the next journey
    starts clean.
    """
    for task in api.call("GET", "/api/tasks?status=queued&limit=500")["tasks"]:
        api.call("POST", f"/api/tasks/{task['id']}/cancel")
    wait_for(
        f"no open {PLAYBOOK} incident once the backlog was cancelled",
        lambda: not [item for item in api.incidents() if item["status"] in OPEN],
        CLEANUP_DEADLINE_S,
    )
    for item in api.approvals("pending"):
        if item["playbook_id"] == PLAYBOOK and item["id"] > newest:
            body = {"by": "e2e cleanup", "reason": "backlog cancelled by the journey"}
            api.call("POST", f"/api/guardian/approvals/{item['id']}/reject", body)


def _open_from_nav(page: Page, base_url: str, link: str) -> None:
    """Reach a page from the dashboard's navigation, as a user would."""
    page.goto(base_url + "/")
    page.get_by_role("navigation", name="main").get_by_role("link", name=link, exact=True).click()
    expect(page).to_have_title(re.compile(f"^{link}"))


def _row(page: Page, row_id: int) -> Locator:
    """Return the table row whose first cell is this id."""
    first = page.locator("td:first-child", has_text=re.compile(f"^{row_id}$"))
    return page.locator("tbody tr").filter(has=first)


def _expect_pending(row: Locator, approval: dict[str, Any]) -> None:
    """Check the row shows the request as the API has it: playbook, tier, diagnosis, parameters."""
    expect(row).to_have_count(1)
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text(approval["playbook_id"])
    expect(cells.nth(2)).to_have_text(str(approval["tier"]))
    expect(cells.nth(3)).to_have_text(approval["diagnosis"])
    for name, value in approval["params"].items():
        expect(cells.nth(4)).to_contain_text(f"{name}={value}")
    expect(row.locator(".badge")).to_have_text("pending")


def _decide(page: Page, row: Locator, button: str, reason: str) -> None:
    """Fill one row's decision form and press Approve or Reject."""
    row.get_by_label("Your name").fill(OPERATOR)
    row.get_by_label("Reason").fill(reason)
    row.get_by_role("button", name=button, exact=True).click()
    expect(page).to_have_url(re.compile(r"/ui/approvals$"))


def test_approve_pending_request(
    page: Page,
    journey: Any,
    base_url: str,
    api: GuardianApi,
    backlog: Callable[[dict[str, int]], dict[str, Any]],
) -> None:
    """A pending tier-2 request approved on the page runs its playbook: recorded, healed, listed."""
    reason = "backlog confirmed by the E2E journey"
    workers_before = api.live_workers()
    pending = backlog(DRAINABLE_BACKLOG)
    _open_from_nav(page, base_url, "Approvals")
    row = _row(page, pending["id"])
    _expect_pending(row, pending)
    journey.step(f"pending request #{pending['id']} for {PLAYBOOK}")
    _decide(page, row, "Approve", reason)
    expect(row.locator(".badge")).to_have_text(re.compile(r"^(approved|used)$"))
    expect(row).to_contain_text(OPERATOR)
    journey.step("request approved")

    decided = api.approval(pending["id"])
    recorded = (decided["status"], decided["decided_by"], decided["reason"])
    assert recorded[0] in ("approved", "used"), f"page: approved; API: {recorded}"
    assert recorded[1:] == (OPERATOR, reason), f"the API recorded {recorded}"
    incident = api.wait_incident(pending["incident_id"], RAN[1:])
    assert incident["status"] == "healed", f"incident {incident['id']}: {incident}"
    assert incident["approval_id"] == pending["id"], f"incident {incident['id']}: {incident}"
    assert incident["detail"]["execute"]["ok"] is True, f"execute: {incident['detail']}"
    assert incident["detail"]["verify"]["ok"] is True, f"verify: {incident['detail']}"
    assert api.approval(pending["id"])["status"] == "used", "the run did not consume the approval"
    scaled_to = workers_before + pending["params"]["scale_step"]
    assert api.live_workers() >= scaled_to, f"fewer than {scaled_to} live workers after the heal"

    _open_from_nav(page, base_url, "Incidents")
    listed = _row(page, incident["id"])
    expect(listed).to_contain_text(PLAYBOOK)
    expect(listed.locator(".badge")).to_have_text("healed")
    expect(listed.locator("td").last).to_have_text(re.compile(r"^\d+\.\d{3} s$"))
    journey.step(f"incident {incident['id']} listed as healed")


def test_reject_pending_request(
    page: Page,
    journey: Any,
    base_url: str,
    api: GuardianApi,
    backlog: Callable[[dict[str, int]], dict[str, Any]],
) -> None:
    """A pending tier-2 request rejected on the page stays rejected; its playbook does not run."""
    workers_before = api.live_workers()
    pending = backlog(STANDING_BACKLOG)
    _open_from_nav(page, base_url, "Approvals")
    row = _row(page, pending["id"])
    _expect_pending(row, pending)
    journey.step(f"pending request #{pending['id']} for {PLAYBOOK}")
    _decide(page, row, "Reject", "not now: rejected by the E2E journey")
    expect(row.locator(".badge")).to_have_text("rejected")
    journey.step("request rejected")

    incident = api.wait_incident(pending["incident_id"], ("rejected", *RAN))
    assert incident["status"] == "rejected", f"incident {incident['id']}: {incident}"
    assert "execute" not in incident["detail"], f"executed after rejection: {incident['detail']}"
    deadline = time.monotonic() + REJECTED_OBSERVE_S
    while time.monotonic() < deadline:
        decided = api.approval(pending["id"])
        recorded = (decided["status"], decided["decided_by"])
        assert recorded == ("rejected", OPERATOR), f"the API has {recorded} after the rejection"
        ran = [item for item in api.incidents() if item["id"] >= incident["id"]]
        ran = [item for item in ran if item["status"] in RAN]
        assert not ran, f"{PLAYBOOK} ran after its request was rejected: {ran}"
        # A restarted worker can count twice for a few seconds; the scale-up adds scale_step.
        added = api.live_workers() - workers_before
        assert added < pending["params"]["scale_step"], f"{added} worker(s) added after rejection"
        time.sleep(0.5)

    _open_from_nav(page, base_url, "Incidents")
    expect(_row(page, incident["id"]).locator(".badge")).to_have_text("rejected")
    journey.step(f"incident {incident['id']} listed as rejected")
