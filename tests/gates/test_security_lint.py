"""G5 S1 beyond bandit: ruff's S rules and mypy each report their own findings, located, into the SARIF log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_TARGETS, commit_all, copy_target, measurement, run_gate_verified

ADVISORY_DB = FIXTURE_TARGETS / "sec-advisory-db"
FRESH_ENOUGH = f'advisory_db = "{ADVISORY_DB}"\nmax_advisory_age_days = 100000\n'


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the module."""
    return tmp_path_factory.mktemp("venvs")


def test_ruff_s_result_and_mypy_error_are_findings_of_their_own_tools(tmp_path: Path, cache_dir: Path) -> None:
    """sec-lint: ruff S104 (medium, bandit's rating of B104) and mypy return-value appear; 1 mypy error > 0 FAILs."""
    target = copy_target(tmp_path, "sec-lint")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[gates.G5]\n", "[gates.G5]\n" + FRESH_ENOUGH), encoding="utf-8"
    )
    commit_all(target, "fresh advisory db")
    out = tmp_path / "pack"
    verdict = run_gate_verified("G5", target, out, cache_dir)
    assert verdict["status"] == "FAIL", verdict["reasons"]
    assert verdict["reasons"][0].startswith("high: mypy reports 1 error(s) in sec_lint, more than mypy_max_errors = 0")
    assert verdict["details"]["scanners"]["SAST (ruff)"] == "PASS"
    assert verdict["details"]["scanners"]["type check (mypy)"] == "PASS"
    assert measurement(verdict, "files checked by ruff")["value"] == 1
    assert measurement(verdict, "mypy errors")["passed"] is False
    sarif = json.loads((out / "security.sarif").read_text(encoding="utf-8"))
    runs = {run["tool"]["driver"]["name"]: run["results"] for run in sarif["runs"]}
    (ruff,) = runs["ruff"]
    assert (ruff["ruleId"], ruff["properties"]["severity"]) == ("S104", "medium")
    location = ruff["locations"][0]["physicalLocation"]
    assert (location["artifactLocation"]["uri"], location["region"]["startLine"]) == ("sec_lint/__init__.py", 3)
    mypy = {r["ruleId"]: r for r in runs["mypy"]}
    assert set(mypy) == {"return-value", "error-count"}
    assert mypy["return-value"]["locations"][0]["physicalLocation"]["region"]["startLine"] == 8


def test_a_mypy_config_that_silences_errors_is_found(tmp_path: Path) -> None:
    """ignore_errors in pyproject [tool.mypy] (global or an override) or in a mypy.ini section is reported."""
    from gates.security.mypy_scan import silenced, target_config  # noqa: PLC0415

    (tmp_path / "pyproject.toml").write_text(
        '[tool.mypy]\nstrict = true\n[[tool.mypy.overrides]]\nmodule = ["shop.legacy.*"]\nignore_errors = true\n',
        encoding="utf-8",
    )
    assert silenced(tmp_path, target_config(tmp_path)) == ["shop.legacy.*"]
    (tmp_path / "mypy.ini").write_text("[mypy]\nignore_errors = True\n", encoding="utf-8")
    assert silenced(tmp_path, target_config(tmp_path)) == ["*"]
    assert silenced(tmp_path, None) == []
