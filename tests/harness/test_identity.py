"""Tests for gate ID (gates/identity.py), run through `certify run --gates ID` on copies of tiny."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gates.identity import EVIDENCE, IdentityGate, IdentityPolicy, version_declaration
from harness.gate import Evidence
from harness.model import Status
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


def test_a_package_without_version_declares_nothing(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """A package __init__ that binds no __version__ is no declaration: the pyproject version alone PASSes."""
    target = git_target("tiny")
    (target / "tiny" / "__init__.py").write_text('"""No version here."""\n', encoding="utf-8")
    commit_all(target, "drop version")
    out = tmp_path / "pack"
    assert run_identity(run_certify, target, out).returncode == 0
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "PASS"
    assert verdict["details"]["versions"] == {"pyproject.toml:project.version": "1.2.3"}
    assert verdict["reasons"][0].endswith(", version 1.2.3")


def test_missing_configured_version_source_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """The configured version source stays mandatory: a pyproject without project.version FAILs naming it."""
    target = git_target("tiny")
    (target / "pyproject.toml").write_text('[project]\nname = "tiny"\n', encoding="utf-8")
    commit_all(target, "drop the pyproject version")
    out = tmp_path / "pack"
    assert run_identity(run_certify, target, out).returncode == 1
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "FAIL"
    assert verdict["reasons"] == ["version not found in: pyproject.toml:project.version"]


def test_the_projects_own_metadata_version_is_no_second_declaration(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """__version__ = metadata.version("<this project>") reads pyproject's version back: nothing to compare, PASS."""
    target = git_target("tiny")
    (target / "tiny" / "__init__.py").write_text(
        '"""Version from metadata."""\n\nfrom importlib import metadata\n\n__version__ = metadata.version("Tiny")\n',
        encoding="utf-8",
    )
    commit_all(target, "version from metadata")
    out = tmp_path / "pack"
    assert run_identity(run_certify, target, out).returncode == 0
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "PASS"
    assert verdict["details"]["versions"] == {"pyproject.toml:project.version": "1.2.3"}


def test_a_computed_version_is_inconclusive_and_named(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """A __version__ read from another distribution's metadata is INCONCLUSIVE (exit 3) with its expression named."""
    target = git_target("tiny")
    (target / "tiny" / "__init__.py").write_text(
        '"""Version from metadata."""\n\nfrom importlib import metadata\n\n__version__ = metadata.version("other")\n',
        encoding="utf-8",
    )
    commit_all(target, "version from metadata")
    out = tmp_path / "pack"
    assert run_identity(run_certify, target, out).returncode == 3
    verdict = identity_result(out)["verdict"]
    assert verdict["status"] == "INCONCLUSIVE"
    (reason,) = verdict["reasons"]
    assert 'tiny/__init__.py:__version__ not a literal string: __version__ = metadata.version("other")' in reason
    assert "reads distribution 'other', not this project 'tiny'" in reason
    assert verdict["details"]["versions"] == {"pyproject.toml:project.version": "1.2.3"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('__version__ = "1.0"\n', ("1.0", None)),
        ('__version__: str = "1.0"\n', ("1.0", None)),
        ('__version__ = version = "1.0"\n', ("1.0", None)),
        ('"""Doc."""\nVERSION = "1.0"\n\ndef f():\n    __version__ = "2"\n', (None, None)),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    __version__: str\n", (None, None)),
        ("__version__ = VERSION\n", (None, "not a literal string: __version__ = VERSION")),
        ("__version__ = 1\n", (None, "not a literal string: __version__ = 1")),
        ("from ._version import __version__\n", (None, "not a literal string: from ._version import __version__")),
        (
            'try:\n    __version__ = f()\nexcept Exception:\n    __version__ = "0"\n',
            (None, "bound 2 times (lines 2, 4), not one literal"),
        ),
        ('__version__ = "1.0"\n__version__ += ".dev"\n', (None, "bound 2 times (lines 1, 2), not one literal")),
        (
            'import sys\nif sys.platform:\n    __version__ = "1.0"\n',
            (None, 'bound inside a block (line 3), not at the top level: __version__ = "1.0"'),
        ),
        ("__version__ = (\n", (None, "not readable as Python (SyntaxError)")),
    ],
)
def test_version_declaration_reads_only_one_literal(
    tmp_path: Path, source: str, expected: tuple[object, object]
) -> None:
    """Only one module-level literal string is a version; no binding is no declaration; anything else says why."""
    module = tmp_path / "mod.py"
    module.write_text(source, encoding="utf-8")
    assert version_declaration(module) == expected
    assert version_declaration(tmp_path / "absent.py") == (None, None)


def test_packs_written_before_unreadable_was_recorded_are_judged_as_then(tmp_path: Path) -> None:
    """Old identity.json listing a package __init__ as None (no "unreadable" key) still FAILs as missing on verify."""
    evidence_dir = tmp_path / "gates" / "ID"
    evidence_dir.mkdir(parents=True)
    old = {
        "mode": "ci",
        "commit": "a" * 40,
        "git_error": None,
        "changed": [],
        "versions": {"pyproject.toml:project.version": "0.3.0", "src/shop/__init__.py:__version__": None},
    }
    (evidence_dir / EVIDENCE).write_text(json.dumps(old), encoding="utf-8")
    verdict = IdentityGate().evaluate(Evidence(tmp_path, "ID", (f"gates/ID/{EVIDENCE}",)), IdentityPolicy())
    assert verdict.status is Status.FAIL
    assert verdict.reasons == ("version not found in: src/shop/__init__.py:__version__",)


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
