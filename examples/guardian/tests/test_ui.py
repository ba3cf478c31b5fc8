"""Tests of the server-rendered UI: pages, forms, settings, logs, escaping of hostile input."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from guardian import logsetup
from guardian.api.app import create_app
from guardian.api.context import ApiConfig
from guardian.healing.book.tasks import QueueBacklog
from guardian.healing.governance import ApprovalBook
from guardian.paths import DataDir
from guardian.settings import load
from guardian.store import NewTask, Store

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def client(data_dir: DataDir) -> Iterator[TestClient]:
    """The app served in-process."""
    with TestClient(
        create_app(ApiConfig(data_dir, upstream_url="http://127.0.0.1:9")),
        raise_server_exceptions=False,
    ) as test_client:
        yield test_client


def assert_page(html: str) -> None:
    """A page has a title, no scripts, and every form control has a label."""
    assert re.search(r"<title>[^<]+</title>", html)
    assert "<script" not in html.lower()
    for control_id in re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html):
        assert f'for="{control_id}"' in html, control_id


PAGES = [
    "/",
    "/ui/tasks",
    "/ui/settings",
    "/ui/logs",
    "/ui/incidents",
    "/ui/approvals",
    "/ui/tasks?status=queued&kind=compute",
]


@pytest.mark.parametrize("path", PAGES)
def test_pages_render(client: TestClient, path: str) -> None:
    """Each UI page renders with a title and labelled controls."""
    response = client.get(path)
    assert response.status_code == 200
    assert_page(response.text)


@pytest.mark.parametrize("path", PAGES)
def test_navigation_reaches_every_page(client: TestClient, path: str) -> None:
    """The main navigation of every page links the incidents and approvals pages with the others."""
    html = client.get(path).text
    nav = re.search(r'<nav aria-label="main">(.*?)</nav>', html, re.DOTALL)
    assert nav is not None
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav.group(1))
    assert [label for _, label in links] == [
        "Dashboard",
        "Tasks",
        "Incidents",
        "Approvals",
        "Settings",
        "Logs",
        "Metrics",
    ]
    for href, _ in links:
        assert client.get(href).status_code == 200, href


def test_approvals_page_shows_parameters(client: TestClient, store: Store) -> None:
    """A pending request shows its playbook, tier, diagnosis and every parameter it would use."""
    spec = QueueBacklog.spec
    params = {"max_queued": 40, "max_workers": 8, "min_age_s": 5, "scale_step": 2}
    ApprovalBook(store).request(spec, "queue backlog", "workers", params, None, 1.0)
    html = client.get("/ui/approvals").text
    row = re.search(r"<tr><td>1</td>(.*?)</tr>", html, re.DOTALL)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.DOTALL)
    assert cells[:3] == ["queue-backlog", "2", "queue backlog"]
    assert cells[3] == ", ".join(f"<code>{k}={v}</code>" for k, v in sorted(params.items()))
    assert 'class="badge pending"' in row.group(1)


def test_form_submit_redirects_to_task(client: TestClient, store: Store) -> None:
    """Submitting the form redirects (303) to the new task's page."""
    response = client.post(
        "/ui/tasks", data={"kind": "compute", "payload": '{"cost_ms": 2}'}, follow_redirects=False
    )
    assert response.status_code == 303
    task_id = response.headers["location"].rsplit("/", 1)[-1]
    assert store.get(task_id).payload == {"cost_ms": 2}
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert task_id in page.text
    cancel = client.post(f"/ui/tasks/{task_id}/cancel", follow_redirects=False)
    assert cancel.status_code == 303
    assert store.get(task_id).status == "cancelled"


@pytest.mark.parametrize("payload", ["{oops", '{"note": 5}', "x" * 20000])
def test_form_errors_rerender_escaped(client: TestClient, payload: str) -> None:
    """Invalid form input re-renders the dashboard with 422 and the error shown."""
    response = client.post("/ui/tasks", data={"kind": "compute", "payload": payload})
    assert response.status_code == 422
    assert 'role="alert"' in response.text


def test_hostile_strings_are_escaped_everywhere(
    client: TestClient, store: Store, data_dir: DataDir
) -> None:
    """Hostile text in payloads, form fields, ids and logs is shown escaped, never raw."""
    task = store.submit(NewTask("orchestrate", {"note": HOSTILE}))
    logsetup.configure("test", data_dir.log_path)
    logsetup.logging.getLogger("hostile").warning(HOSTILE)
    pages = [
        client.get(f"/ui/tasks/{task.id}"),
        client.get("/"),
        client.get("/ui/logs"),
        client.post("/ui/tasks", data={"kind": HOSTILE, "payload": "{}"}),
        client.post("/ui/tasks", data={"kind": "compute", "payload": HOSTILE}),
        client.get("/ui/tasks/" + HOSTILE),
        client.get("/ui/tasks", params={"status": HOSTILE}),
        client.post("/ui/settings", data={"log_level": HOSTILE}),
    ]
    for page in pages:
        assert page.status_code < 500
        assert "<script>" not in page.text
        assert "<img src=x" not in page.text
    assert "&lt;script&gt;" in pages[0].text
    assert "&lt;script&gt;" in pages[2].text or "\\u003c" in pages[2].text


def test_ui_error_pages(client: TestClient) -> None:
    """Bad ids and unknown tasks give HTML 400/404 pages with a title."""
    bad = client.get("/ui/tasks/nope")
    assert bad.status_code == 400
    assert_page(bad.text)
    missing = client.get("/ui/tasks/" + "a" * 32)
    assert missing.status_code == 404
    assert "text/html" in missing.headers["content-type"]


def test_settings_are_persisted(client: TestClient, store: Store) -> None:
    """Saving settings persists them; invalid values re-render with 422."""
    form = {
        "worker_count": "3",
        "orchestrate_cost_ms": "1",
        "compute_cost_ms": "20",
        "dependency_timeout_ms": "1500",
        "dependency_retries": "1",
        "log_level": "INFO",
    }
    saved = client.post("/ui/settings", data=form, follow_redirects=False)
    assert saved.status_code == 303
    assert load(store).worker_count == 3
    assert "Settings saved" in client.get("/ui/settings?saved=1").text
    rejected = client.post("/ui/settings", data={**form, "worker_count": "0"})
    assert rejected.status_code == 422
    assert load(store).worker_count == 3


def test_logs_page_bounds_lines(client: TestClient, data_dir: DataDir) -> None:
    """The logs page shows at most the requested number of lines."""
    data_dir.log_path.write_text("".join(f'{{"n": {i}}}\n' for i in range(50)))
    page = client.get("/ui/logs", params={"lines": 5})
    assert page.text.count("&#34;n&#34;") == 5
