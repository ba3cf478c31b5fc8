"""`certify init`: a commented certify.toml from what a project shows, gaps named, never overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.config import load_config
from tests.conftest import RunCertify, commit_all, git

PROJECTS = Path(__file__).resolve().parents[1] / "fixtures" / "projects"


def project(tmp_path: Path, name: str) -> Path:
    """A committed copy of tests/fixtures/projects/<name>."""
    root = tmp_path / name
    shutil.copytree(PROJECTS / name, root)
    git(root, "init", "-q")
    git(root, "config", "user.name", "Certify Tests")
    git(root, "config", "user.email", "certify-tests@example.invalid")
    commit_all(root, "project")
    return root


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "src-asgi",
            {
                "source_root": "src",
                "packages": ("shop",),
                "version": ("pyproject.toml", "project.version"),
                "service": ("{python}", "-m", "uvicorn", "shop.app:app", "--host", "127.0.0.1", "--port", "{port}"),
            },
        ),
        (
            "flat-cli",
            {
                "source_root": ".",
                "packages": ("tool",),
                "version": ("tool/__init__.py", "__version__"),
                "service": None,
            },
        ),
        (
            "no-tests",
            {
                "source_root": ".",
                "packages": ("pkg",),
                "version": ("pyproject.toml", "project.version"),
                "service": (
                    "{python}",
                    "-m",
                    "gunicorn",
                    "pkg.wsgi:app",
                    "--bind",
                    "127.0.0.1:{port}",
                    "--workers",
                    "2",
                ),
            },
        ),
    ],
)
def test_init_configures_what_the_project_shows(
    run_certify: RunCertify, tmp_path: Path, name: str, expected: dict[str, object]
) -> None:
    """Layout, packages, version source and the service command come from the project; the file loads."""
    root = project(tmp_path, name)
    proc = run_certify("init", root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {root / 'certify.toml'}")
    config = load_config(root)
    assert config.target.source_root == expected["source_root"]
    assert config.target.packages == expected["packages"]
    assert (config.target.version.file, config.target.version.key) == expected["version"]
    assert (config.service.command if config.service else None) == expected["service"]
    text = (root / "certify.toml").read_text(encoding="utf-8")
    assert ("# GAP: no tests found" in text) == (name == "no-tests")
    assert ("# GAP: [service]" in text) == (name == "flat-cli")
    again = tmp_path / "again"
    shutil.copytree(PROJECTS / name, again)
    run_certify("init", again)
    assert (again / "certify.toml").read_text(encoding="utf-8") == text  # deterministic


def test_init_never_overwrites(run_certify: RunCertify, tmp_path: Path) -> None:
    """A second init exits 2 naming the existing file, which stays as it was."""
    root = project(tmp_path, "flat-cli")
    run_certify("init", root)
    before = (root / "certify.toml").read_bytes()
    proc = run_certify("init", root)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"certify: error: {root / 'certify.toml'}: already exists")
    assert (root / "certify.toml").read_bytes() == before
    missing = run_certify("init", tmp_path / "nowhere")
    assert missing.returncode == 2
    assert "not a directory" in missing.stderr


def test_an_init_config_runs_with_honest_statuses(run_certify: RunCertify, tmp_path: Path) -> None:
    """flat-cli as init wrote it: the plan names the gaps; ID PASSes, the unconfigured gates never do."""
    root = project(tmp_path, "flat-cli")
    run_certify("init", root)
    commit_all(root, "certify init")
    plan = run_certify("run", "--target", root, "--plan", "--mode", "ci", "--gates", "ID,G2,G4,E2E")
    assert "GAP: no [service] table" in plan.stdout
    assert "GAP: no [gates.G2.requests.<name>]" in plan.stdout
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", root, "--mode", "ci", "--gates", "ID,G2,G4,E2E", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    status = {r["gate"]: r["verdict"]["status"] for r in results if r["gate"] in ("ID", "G2", "G4", "E2E")}
    assert status == {"ID": "PASS", "G2": "NOT_RUN", "G4": "NOT_RUN", "E2E": "INCONCLUSIVE"}


@pytest.mark.parametrize("name", ["src-asgi", "no-tests"])
def test_init_configs_of_the_other_layouts_run_with_honest_statuses(
    run_certify: RunCertify, tmp_path: Path, name: str
) -> None:
    """src-asgi and no-tests as init wrote them: ID PASSes on the one pyproject version; the GAP gates never PASS."""
    root = project(tmp_path, name)
    run_certify("init", root)
    commit_all(root, "certify init")
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", root, "--mode", "ci", "--gates", "ID,G2,G4,G7,E2E", "--out", out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    verdicts = {r["gate"]: r["verdict"] for r in results if r["gate"] in ("ID", "G2", "G4", "G7", "E2E")}
    status = {gate: verdict["status"] for gate, verdict in verdicts.items()}
    assert status == {"ID": "PASS", "G2": "NOT_RUN", "G4": "NOT_RUN", "G7": "NOT_RUN", "E2E": "INCONCLUSIVE"}
    # the package __init__.py has no __version__: not a declaration, so only the pyproject version is listed
    assert list(verdicts["ID"]["details"]["versions"]) == ["pyproject.toml:project.version"]


@pytest.mark.parametrize("line", ['__version__: str = "1.4.0"', '__version__: Final[str] = "1.4.0"'])
def test_an_annotated_package_version_is_found_as_the_version(tmp_path: Path, line: str) -> None:
    """A typed `__version__: str = "x"` in the package __init__ is the version source, as the ID gate reads it."""
    from harness.init_project import inspect_project  # noqa: PLC0415

    root = tmp_path / "flat-cli"
    shutil.copytree(PROJECTS / "flat-cli", root)
    init = root / "tool" / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8").replace('__version__ = "1.4.0"', line), encoding="utf-8")
    assert inspect_project(root).version == ("tool/__init__.py", "__version__")
