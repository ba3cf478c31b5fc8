"""Tests of versioned releases: deploy, rollback, the bad canary's defect and the release alert."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from guardian import __version__, releases
from guardian.api.app import create_app
from guardian.api.context import ApiConfig
from guardian.paths import DataDir


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at 100 s."""
        self.now = 100.0

    def __call__(self) -> float:
        """Return the current time."""
        return self.now


@pytest.fixture
def client(data_dir: DataDir) -> Iterator[TestClient]:
    """An app served in-process over a fresh data dir."""
    app = create_app(ApiConfig(data_dir, upstream_url="http://127.0.0.1:9"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_nothing_deployed_runs_the_baseline(data_dir: DataDir) -> None:
    """Without a releases folder the active release is the package version on the stable build."""
    assert releases.active(data_dir.root) == releases.Release(__version__, "stable")


def test_deploy_then_rollback_restores_the_previous_release(data_dir: DataDir) -> None:
    """Deploy switches current to the new version; rollback brings the replaced one back once."""
    old, new = releases.deploy(data_dir.root, "0.2.0-canary.1", "canary-bad")
    assert old.version == __version__
    assert releases.active(data_dir.root) == new
    assert (data_dir.root / "releases" / "0.2.0-canary.1" / "release.json").is_file()
    gone, back = releases.rollback(data_dir.root)
    assert (gone, back) == (new, old)
    assert releases.active(data_dir.root) == old
    with pytest.raises(ValueError, match="nothing to roll back to"):
        releases.rollback(data_dir.root)


def test_deploy_refuses_an_unknown_build_and_the_current_version(data_dir: DataDir) -> None:
    """An unknown build name and a redeploy of the active version are refused with a sentence."""
    with pytest.raises(ValueError, match="unknown build 'nightly'"):
        releases.deploy(data_dir.root, "0.3.0", "nightly")
    with pytest.raises(ValueError, match="already current"):
        releases.deploy(data_dir.root, __version__, "stable")


def test_a_damaged_release_file_names_its_path(data_dir: DataDir) -> None:
    """A release.json with an unknown build or bad JSON is a ValueError naming the file."""
    releases.deploy(data_dir.root, "0.2.0", "stable")
    path = data_dir.root / "releases" / "0.2.0" / "release.json"
    path.write_text('{"version": "0.2.0", "build": "nightly"}', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown build 'nightly'"):
        releases.active(data_dir.root)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match=r"release\.json"):
        releases.active(data_dir.root)


def test_cli_deploy_show_rollback_and_its_error_exit(
    data_dir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line prints one line per action and exits 1 with one stderr line on an error."""
    root = str(data_dir.root)
    assert (
        releases.main(["deploy", "--data-dir", root, "--version", "9.9", "--build", "stable"]) == 0
    )
    assert releases.main(["show", "--data-dir", root]) == 0
    assert releases.main(["rollback", "--data-dir", root]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"deployed 9.9 (stable); rollback restores {__version__}",
        "9.9 (stable)",
        f"rolled back 9.9; {__version__} (stable) is current",
    ]
    assert releases.main(["rollback", "--data-dir", root]) == 1
    assert capsys.readouterr().err.startswith("guardian.releases: nothing to roll back to")


def test_alert_fires_on_the_active_releases_errors_and_resolves_on_rollback(
    data_dir: DataDir,
) -> None:
    """The canary's 5xx answers fire the alert; after rollback the restored release's is clean."""
    clock = FakeClock()
    state = releases.ReleaseState(data_dir.root, clock)
    stable = state.current()
    for _ in range(releases.ALERT_MIN_REQUESTS):
        state.record(stable, 201)
    assert state.alert()["firing"] is False
    releases.deploy(data_dir.root, "0.2.0-canary.1", "canary-bad")
    clock.now += releases.RELOAD_S
    canary = state.current()
    assert canary.build == "canary-bad"
    fails = [state.fails_submission(canary) for _ in range(6)]
    assert fails == [False, False, True, False, False, True]
    for failed in fails:
        state.record(canary, 500 if failed else 201)
    alert = state.alert()
    assert (alert["firing"], alert["requests"], alert["errors"]) == (True, 6, 2)
    releases.rollback(data_dir.root)
    clock.now += releases.RELOAD_S
    assert state.describe()["version"] == __version__
    assert state.alert()["firing"] is False
    clock.now += releases.ALERT_WINDOW_S + 1
    state.record(state.current(), 201)
    assert len(state._answers) == 1  # older answers are dropped as new ones come in
    assert state.alert()["requests"] == 1
    assert state.fails_submission(state.current()) is False


def test_unreadable_pointer_keeps_the_release_being_served(data_dir: DataDir) -> None:
    """A damaged current pointer is logged and the last good release keeps serving."""
    clock = FakeClock()
    state = releases.ReleaseState(data_dir.root, clock)
    releases.deploy(data_dir.root, "0.2.0", "stable")
    assert state.current().version == "0.2.0"
    (data_dir.root / "releases" / "current").write_text("missing", encoding="utf-8")
    clock.now += releases.RELOAD_S
    assert state.current().version == "0.2.0"


def test_api_serves_the_canary_defect_release_endpoint_and_metrics(
    client: TestClient, data_dir: DataDir
) -> None:
    """Under the bad canary every third submission is a 500; /api/release and /metrics show it."""
    assert client.get("/api/release").json()["build"] == "stable"
    releases.deploy(data_dir.root, "0.2.0-canary.1", "canary-bad")
    time.sleep(releases.RELOAD_S + 0.05)
    body = {"kind": "compute", "payload": {"cost_ms": 1}}
    codes = [client.post("/api/tasks", json=body).status_code for _ in range(6)]
    assert codes == [201, 201, 500, 201, 201, 500]
    info = client.get("/api/release").json()
    assert (info["version"], info["previous"], info["alert"]["firing"]) == (
        "0.2.0-canary.1",
        __version__,
        True,
    )
    text = client.get("/metrics").text
    assert 'guardian_release_info{build="canary-bad",version="0.2.0-canary.1"} 1.0' in text
    assert 'guardian_release_alert_firing{alert="GuardianReleaseErrors"} 1.0' in text
