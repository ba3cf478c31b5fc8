"""Shared fixtures: committed copies of the fixture targets and a subprocess runner for `certify`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

FIXTURE_TARGETS = Path(__file__).resolve().parent / "fixtures" / "targets"
FIXTURE_POLICY = Path(__file__).resolve().parent / "fixtures" / "policies" / "fixture-targets.toml"
CERTIFY_TIMEOUT_S = 120.0
GIT_TIMEOUT_S = 30.0

GitTarget = Callable[..., Path]
RunCertify = Callable[..., "subprocess.CompletedProcess[str]"]


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one git command in `repo` and fail loudly if it does not succeed."""
    return subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
    )


def commit_all(repo: Path, message: str = "change") -> None:
    """Stage everything in `repo` and commit it."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)


def copy_target(dest_root: Path, name: str, *, init_git: bool = True) -> Path:
    """Copy tests/fixtures/targets/<name> under dest_root; optionally make it a committed git repo."""
    target = dest_root / name
    shutil.copytree(FIXTURE_TARGETS / name, target)
    if init_git:
        git(target, "init", "-q")
        git(target, "config", "user.name", "Certify Tests")
        git(target, "config", "user.email", "certify-tests@example.invalid")
        git(target, "config", "commit.gpgsign", "false")
        commit_all(target, "fixture target")
    return target


def certify(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = CERTIFY_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run the real `certify` entry point in a subprocess and capture its output as text.

    A `run` that names no policy is judged under the fixture targets' test policy (see
    tests/fixtures/policies/fixture-targets.toml); the policy tests pass theirs explicitly.
    """
    argv = [os.fspath(arg) for arg in args]
    if argv[:1] == ["run"] and "--policy" not in argv:
        argv += ["--policy", str(FIXTURE_POLICY)]
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_gate_verified(
    gate_id: str, target: Path, out: Path, cache: Path, *extra: str, timeout_s: float = CERTIFY_TIMEOUT_S
) -> dict[str, Any]:
    """Run one gate alone; assert no traceback and that `certify verify` accepts the pack; return its verdict."""
    proc = certify(
        "run", "--target", target, "--gates", gate_id, "--out", out, "--cache-dir", cache, *extra, timeout_s=timeout_s
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    check = certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    (result,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    verdict: dict[str, Any] = result["verdict"]
    verdict["exit_code"] = proc.returncode
    return verdict


def measurement(verdict: dict[str, Any], name: str) -> dict[str, Any]:
    """The named measurement of a verdict."""
    (found,) = [m for m in verdict["measurements"] if m["name"] == name]
    return found


@pytest.fixture
def git_target(tmp_path: Path) -> GitTarget:
    """Factory: `git_target("tiny")` is a committed copy of that fixture target in tmp_path."""

    def make(name: str, *, init_git: bool = True) -> Path:
        return copy_target(tmp_path, name, init_git=init_git)

    return make


@pytest.fixture
def run_certify(tmp_path: Path) -> RunCertify:
    """Factory running `certify ARGS` with a private venv cache and (by default) tmp_path as cwd."""
    cache_home = tmp_path / "xdg-cache"

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return certify(*args, env={"XDG_CACHE_HOME": str(cache_home), **(env or {})}, cwd=cwd or tmp_path)

    return run


class DictView:
    """An in-memory evidence view over already-parsed JSON files (for pure judgement tests)."""

    def __init__(self, files: dict[str, Any]) -> None:
        """Hold the files."""
        self.files = files

    def exists(self, name: str) -> bool:
        """Whether the file is present."""
        return name in self.files

    def read_json(self, name: str) -> Any:
        """The file's content."""
        return self.files[name]

    def read_text(self, name: str) -> str:
        """The content as JSON text."""
        return json.dumps(self.files[name])

    def read_bytes(self, name: str) -> bytes:
        """The content as UTF-8 JSON bytes."""
        return self.read_text(name).encode("utf-8")
