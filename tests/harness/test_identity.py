"""Tests for gate ID (gates/identity.py), run through `certify run --gates ID` on copies of tiny."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import GitTarget, RunCertify, commit_all, git


def identity_result(out: Path) -> dict[str, Any]:
    """The ID gate's entry in the pack's results.json."""
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (result,) = [item for item in results["results"] if item["gate"] == "ID"]
    return result


def run_identity(run_certify: RunCertify, target: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run only the identity gate against target into out; no traceback either way."""
    proc = run_certify("run", "--target", target, "--gates", "ID", "--out", out, *extra)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def set_package_version(target: Path, version: str) -> None:
    """Rewrite tiny/__init__.py so it declares another __version__."""
    init = target / "tiny" / "__init__.py"
    init.write_text(f'"""A tiny fixture package."""\n\n__version__ = "{version}"\n', encoding="utf-8")


def test_clean_committed_tiny_passes(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A clean, committed tree whose declared versions agree PASSes with the commit and version recorded."""
    target = git_target("tiny")
    out = tmp_path / "pack"
    proc = run_identity(run_certify, target, out)
    assert proc.returncode == 0, proc.stderr
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "PASS"
    head = git(target, "rev-parse", "HEAD").stdout.strip()
    assert verdict["details"]["commit"] == head
    assert verdict["details"]["dirty"] is False
    assert verdict["details"]["versions"] == {
        "pyproject.toml:project.version": "1.2.3",
        "tiny/__init__.py:__version__": "1.2.3",
    }
    assert verdict["reasons"] == [f"commit {head[:12]}, version 1.2.3"]


def test_disagreeing_versions_fail(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """Committed pyproject and __init__ versions that disagree FAIL with both values in the reason."""
    target = git_target("tiny")
    set_package_version(target, "9.9.9")
    commit_all(target, "bump only the package")
    out = tmp_path / "pack"
    proc = run_identity(run_certify, target, out)
    assert proc.returncode == 1
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "FAIL"
    (reason,) = verdict["reasons"]
    assert reason.startswith("versions disagree: ")
    assert "pyproject.toml:project.version=1.2.3" in reason
    assert "tiny/__init__.py:__version__=9.9.9" in reason
    distinct = next(m for m in verdict["measurements"] if m["name"] == "distinct declared versions")
    assert distinct["value"] == 2
    assert distinct["passed"] is False


def test_missing_version_declaration_fails(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A package __init__ without a literal __version__ FAILs naming where the version is missing."""
    target = git_target("tiny")
    (target / "tiny" / "__init__.py").write_text('"""No version here."""\n', encoding="utf-8")
    commit_all(target, "drop version")
    out = tmp_path / "pack"
    assert run_identity(run_certify, target, out).returncode == 1
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "FAIL"
    assert "version not found in: tiny/__init__.py:__version__" in verdict["reasons"]


def test_dirty_tree_fails_in_release_mode(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """An uncommitted change FAILs the gate in release mode, naming the changed file."""
    target = git_target("tiny")
    (target / "tiny" / "__init__.py").write_text(
        '"""A tiny fixture package."""\n\n__version__ = "1.2.3"\nEXTRA = 1\n', encoding="utf-8"
    )
    out = tmp_path / "pack"
    proc = run_identity(run_certify, target, out)
    assert proc.returncode == 1
    assert "NOT CERTIFIED" in proc.stdout
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "FAIL"
    (reason,) = verdict["reasons"]
    assert "1 uncommitted change(s) (tiny/__init__.py)" in reason
    assert verdict["details"]["dirty"] is True
    overall = json.loads((out / "results.json").read_text(encoding="utf-8"))["overall"]
    assert overall["certified"] is False
    assert [item["gate"] for item in overall["blocking"]] == ["ID"]
    # run.json names the same path whole (a leading " M" once lost its first character there)
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["target"]["changed"] == ["tiny/__init__.py"]


def test_dirty_tree_passes_in_ci_mode(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """The same uncommitted change PASSes in ci mode, with the dirty tree noted in the reason."""
    target = git_target("tiny")
    (target / "untracked.txt").write_text("scratch\n", encoding="utf-8")
    out = tmp_path / "pack"
    proc = run_identity(run_certify, target, out, "--mode", "ci")
    assert proc.returncode == 0, proc.stderr
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "PASS"
    assert verdict["details"]["dirty"] is True
    assert "dirty tree (allowed in ci mode)" in verdict["reasons"][0]


def test_dirty_tree_passes_in_release_when_policy_allows(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """gates.ID.allow_dirty_in_release = true lets a dirty tree PASS in release mode."""
    target = git_target("tiny")
    config = target / "certify.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[gates.ID]\nallow_dirty_in_release = true\n",
                      encoding="utf-8")
    out = tmp_path / "pack"
    assert run_identity(run_certify, target, out).returncode == 0
    assert identity_result(out)["verdict"]["status"] == "PASS"


def test_not_a_git_repo_is_inconclusive(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A target that is not a git repository is INCONCLUSIVE (exit 3): no commit names the code."""
    target = git_target("tiny", init_git=False)
    out = tmp_path / "pack"
    outside = subprocess.run(["git", "rev-parse", "HEAD"], cwd=target, capture_output=True, check=False)
    assert outside.returncode != 0, "tmp_path must not lie inside a git work tree"
    proc = run_identity(run_certify, target, out)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "INCONCLUSIVE"
    assert verdict["reasons"][0].startswith("no git commit for the target")
