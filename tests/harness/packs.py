"""Helpers for tests that run the real `certify` entry point against fixture targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
PLUGINS = "tests.fixtures.plugins.sleepy_gates"


def committed_copy(name: str, dest: Path) -> Path:
    """Copy tests/fixtures/targets/<name> to dest and commit it in a fresh git repository."""
    shutil.copytree(FIXTURES / "targets" / name, dest)
    return _commit(dest)


def certify_env(**extra: str) -> dict[str, str]:
    """Environment for a certify subprocess that can load the test gate plugins."""
    env = dict(os.environ)
    env.update({"CERTIFY_PLUGINS": PLUGINS, "PYTHONPATH": str(REPO), "CI": "true"})
    env.update(extra)
    return env


def certify_argv(*args: str) -> list[str]:
    """Argv running the real CLI with this interpreter; a `run` naming no policy gets the fixture targets' one."""
    names_no_policy = args[:1] == ("run",) and "--policy" not in args
    extra = ["--policy", str(FIXTURES / "policies" / "fixture-targets.toml")] if names_no_policy else []
    return [sys.executable, "-m", "harness.cli", *args, *extra]


def guardian_copy(dest: Path) -> Path:
    """Copy the tracked files of examples/guardian (what a clean clone has) into a fresh committed repo."""
    return example_copy(dest, "guardian")


def example_copy(dest: Path, name: str) -> Path:
    """Copy the tracked files of examples/<name> (what a clean clone has) into a fresh committed repo."""
    listed = subprocess.run(
        ["git", "ls-files", f"examples/{name}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in listed:
        target = dest / Path(path).relative_to(f"examples/{name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, target)
    return _commit(dest)


def _commit(dest: Path) -> Path:
    """Initialise a git repository in dest and commit everything in it."""
    for argv in (
        ["git", "init", "-q"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "fixture"],
    ):
        subprocess.run(argv, cwd=dest, check=True, capture_output=True)
    return dest
