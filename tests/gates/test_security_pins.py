"""X2 in gate G5 (gates/security/pins.py): a hashed lock pins every installed distribution; the install used it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gates.security import pins
from gates.security.policy import SecurityPolicy
from harness.model import Status
from tests.conftest import DictView, run_gate_verified
from tests.gates.test_security import target_with

HASH = "--hash=sha256:" + "ab" * 32
LOCK = f"fastapi==0.165.0 \\\n    {HASH}\nuvicorn==0.55.0 {HASH}\n# a comment\n"
INSTALLED = [
    {"name": "fastapi", "version": "0.165.0"},
    {"name": "uvicorn", "version": "0.55.0"},
    {"name": "svc", "version": "1.0"},
]
CONTEXT = {"target_project": "svc"}
POLICY = SecurityPolicy(lock_file="constraints.txt")
INSTALL = ["{python}", "-m", "pip", "install", "-c", "constraints.txt", "-e", "."]


def evidence(text: str | None = LOCK, installed: list[dict[str, str]] | None = None, argv: Any = None) -> DictView:
    """Hand-written G5 evidence: the stored lock file, the install argv and the venv's inventory."""
    return DictView(
        {
            pins.INPUTS: {"lock_file": "constraints.txt", "text": text, "install_command": argv or INSTALL},
            "inventory.json": {"distributions": INSTALLED if installed is None else installed},
        }
    )


def test_a_complete_hashed_lock_used_by_the_install_passes() -> None:
    """Every installed distribution but the target pinned at its version with a hash, named by the install: PASS."""
    result = pins.assess(evidence(), POLICY, CONTEXT)
    assert result is not None
    assert result.status is Status.PASS, result.reasons
    assert result.facts == {"lock_file": "constraints.txt", "pins": 2, "installed": 2}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"text": None}, "constraints.txt: no lock or constraints file"),
        (
            {"text": LOCK.replace("uvicorn==0.55.0", "uvicorn>=0.55")},
            "does not pin 1 installed distribution(s): uvicorn",
        ),
        (
            {"installed": [{"name": "fastapi", "version": "0.166.0"}, {"name": "uvicorn", "version": "0.55.0"}]},
            "the install did not follow constraints.txt: installed fastapi 0.166.0 (pinned 0.165.0)",
        ),
        ({"text": "fastapi==0.165.0\nuvicorn==0.55.0\n"}, "pins 2 distribution(s) without a --hash: fastapi, uvicorn"),
        (
            {"argv": ["{python}", "-m", "pip", "install", "-e", "."]},
            "the [install] command does not use constraints.txt",
        ),
    ],
)
def test_each_pinning_defect_fails_naming_the_file_or_value(kwargs: dict[str, Any], expected: str) -> None:
    """A missing lock, an unpinned or drifted distribution, a pin without hash, an install ignoring it: FAIL."""
    result = pins.assess(evidence(**kwargs), POLICY, CONTEXT)
    assert result is not None
    assert result.status is Status.FAIL
    assert any(expected in reason for reason in result.reasons), result.reasons


def test_hashes_are_optional_when_the_policy_says_so() -> None:
    """With lock_hashes = false a lock without hashes still PASSes."""
    relaxed = SecurityPolicy(lock_file="constraints.txt", lock_hashes=False)
    assert pins.assess(evidence(text="fastapi==0.165.0\nuvicorn==0.55.0\n"), relaxed, CONTEXT).status is Status.PASS  # type: ignore[union-attr]


def test_no_lock_file_configured_judges_nothing() -> None:
    """Without [gates.G5] lock_file the scanner is absent (X2 then stays unevidenced for that target)."""
    assert pins.assess(evidence(), SecurityPolicy(), CONTEXT) is None


def test_a_sh_c_install_naming_the_lock_counts() -> None:
    """An install that runs pip through `sh -c` with `-r constraints.txt` uses the lock."""
    argv = ["sh", "-c", "'{python}' -m pip install --require-hashes -r constraints.txt && '{python}' -m pip install ."]
    assert pins.assess(evidence(argv=argv), POLICY, CONTEXT).status is Status.PASS  # type: ignore[union-attr]


def test_a_fixture_without_its_lock_file_fails_g5(tmp_path: Path) -> None:
    """sec-clean naming a lock_file it does not have FAILs G5 with the reason naming constraints.txt."""
    target = target_with(tmp_path, "sec-clean", 'lock_file = "constraints.txt"\n')
    verdict = run_gate_verified("G5", target, tmp_path / "pack", tmp_path / "venvs")
    assert verdict["status"] == "FAIL"
    assert verdict["details"]["scanners"][pins.SCANNER] == "FAIL"
    assert any("constraints.txt: no lock or constraints file" in reason for reason in verdict["reasons"])
