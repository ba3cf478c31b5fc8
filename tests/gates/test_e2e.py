"""Tests for gate E2E (gates/e2e.py): real `certify run` of the e2e-app fixture in headless Chromium.

The fixture's `--fault` switch breaks one thing per run. Every run shares one venv cache, so
pytest and Playwright are installed into the fixture's venv once per test session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2e import rendering
from e2e.update_baselines import refresh
from harness.errors import HarnessError
from tests.conftest import GitTarget, RunCertify, commit_all

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def e2e_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for every E2E run of the session."""
    return tmp_path_factory.mktemp("e2e-venvs")


def app(git_target: GitTarget, fault: str = "none", extra_toml: str = "") -> Path:
    """A committed copy of e2e-app with the given fault and extra certify.toml lines."""
    target = git_target("e2e-app")
    config = target / "certify.toml"
    text = config.read_text(encoding="utf-8").replace('"--fault", "none"', f'"--fault", "{fault}"')
    text = text.replace('journeys = "e2e"', f'journeys = "e2e"\n{extra_toml}')
    config.write_text(text, encoding="utf-8")
    commit_all(target, f"fault {fault}")
    return target


def run_e2e(run_certify: RunCertify, target: Path, out: Path, cache: Path) -> dict[str, Any]:
    """Run the E2E gate in ci mode; assert no traceback and that `certify verify` accepts the pack."""
    proc = run_certify("run", "--target", target, "--gates", "E2E", "--mode", "ci", "--out", out, "--cache-dir", cache)
    assert "Traceback" not in proc.stdout + proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    verdict: dict[str, Any] = results["results"][0]["verdict"]
    verdict["exit"] = proc.returncode
    return verdict


def test_working_app_passes_with_screenshots(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, e2e_cache: Path
) -> None:
    """e2e-app: 3 journeys and 2 CLI journeys pass; the report links screenshots that are in the pack."""
    out = tmp_path / "pack"
    target = app(git_target)
    verdict = run_e2e(run_certify, target, out, e2e_cache)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["exit"] == 0
    assert verdict["reasons"][0].startswith("3 journeys passed in headless Chromium")
    report = (out / "e2e_report.html").read_text(encoding="utf-8")
    for name in (
        "e2e/dashboard/01-dashboard.png",
        "e2e/submit/02-task-completed.png",
        "e2e/settings/02-after-reload.png",
    ):
        assert f'src="{name}"' in report
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert (out / "gates" / "E2E" / "junit-live.xml").is_file()
    assert not list((out / "e2e").rglob("trace.zip"))
    # Byte-identical to the committed baseline only in the rendering environment that drew it (its
    # rendering.json); either way the refresh writes this run's screenshot and environment, and a second
    # refresh finds nothing to change.
    baselines = target / "e2e" / "baselines"
    png = baselines / "dashboard" / "dashboard.png"
    drawn_with = json.loads((out / "gates" / "E2E" / "context.json").read_text())["rendering"]
    assert drawn_with["browser"].startswith("Chromium ")
    first = refresh(target, out)
    assert first[-1] in (f"unchanged {png}", f"updated {png}")
    assert all(line.startswith(f"recorded {baselines / 'rendering.json'}: Chromium ") for line in first[:-1])
    assert rendering.read_record(baselines) == drawn_with
    assert refresh(target, out) == [f"unchanged {png}"]


def test_dead_submit_button_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, e2e_cache: Path
) -> None:
    """A submit button that does nothing fails the submit journey, which leaves a trace zip."""
    out = tmp_path / "pack"
    target = app(git_target, "dead-submit")
    verdict = run_e2e(run_certify, target, out, e2e_cache)
    assert verdict["status"] == "FAIL"
    assert verdict["exit"] == 1
    assert any(reason.startswith("journey e2e.test_app::test_submit failed") for reason in verdict["reasons"])
    assert (out / "e2e" / "submit" / "trace.zip").read_bytes().startswith(b"PK")
    with pytest.raises(HarnessError, match="baselines not updated"):
        refresh(target, out)


def test_setting_not_persisted_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, e2e_cache: Path
) -> None:
    """A settings change the server accepts but does not keep fails the settings journey after the reload."""
    verdict = run_e2e(run_certify, app(git_target, "no-persist"), tmp_path / "pack", e2e_cache)
    assert verdict["status"] == "FAIL"
    assert any("test_settings failed" in reason and "DEBUG" in reason for reason in verdict["reasons"])


def test_console_error_fails(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, e2e_cache: Path) -> None:
    """A console error and an uncaught exception on a page are findings even when the journeys pass."""
    verdict = run_e2e(run_certify, app(git_target, "js-error"), tmp_path / "pack", e2e_cache)
    assert verdict["status"] == "FAIL"
    reasons = "\n".join(verdict["reasons"])
    assert "console error in journey dashboard" in reasons
    assert "widget failed to load" in reasons
    assert "uncaught page error in journey dashboard" in reasons
    assert "failed journeys" not in reasons


def test_visual_change_fails_with_diff_image(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, e2e_cache: Path
) -> None:
    """A header colour change beyond tolerance fails the visual checkpoint; the diff image is in the pack.

    The baselines here say another Chromium drew them, so the FAIL also names that (and stays a FAIL).
    """
    out = tmp_path / "pack"
    target = app(git_target, "restyle")
    older = {"browser": "Chromium 1.0", "fonts": {}}
    (target / "e2e" / "baselines" / rendering.RECORD).write_bytes(rendering.record_bytes(older))
    commit_all(target, "baselines drawn by an older browser")
    verdict = run_e2e(run_certify, target, out, e2e_cache)
    assert verdict["status"] == "FAIL"
    assert any(reason.startswith("visual change in dashboard/dashboard") for reason in verdict["reasons"])
    assert any("another rendering environment (Chromium 1.0 then, Chromium " in r for r in verdict["reasons"])
    assert (out / "e2e" / "dashboard" / "visual-dashboard.diff.png").read_bytes().startswith(b"\x89PNG")
    judged = {m["name"]: m for m in verdict["measurements"]}
    assert judged["largest visual diff"]["value"] > judged["largest visual diff"]["threshold"]


def test_no_browser_is_not_run(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, e2e_cache: Path) -> None:
    """browser = "none" (a machine without Chromium) is NOT_RUN naming the install command, never a crash."""
    verdict = run_e2e(run_certify, app(git_target, extra_toml='browser = "none"'), tmp_path / "pack", e2e_cache)
    assert verdict["status"] == "NOT_RUN"
    assert verdict["exit"] == 3
    assert "apt-get install -y chromium" in verdict["reasons"][0]


def test_bad_pattern_is_a_config_error(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """An ignore_console entry that is not a regular expression is a one-line config error (exit 2)."""
    target = app(git_target, extra_toml='ignore_console = ["(unclosed"]')
    proc = run_certify("run", "--target", target, "--gates", "E2E", "--mode", "ci", "--out", tmp_path / "pack")
    assert proc.returncode == 2
    assert "gates.E2E.ignore_console" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
