"""X3 in gate G5 (gates/security/env_example.py): the example file lists every variable the code reads, no secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gates.security import env_example, secret_scan
from gates.security.policy import SecurityPolicy
from harness.model import Status
from tests.conftest import DictView, commit_all, run_gate_verified
from tests.gates.test_security import target_with

SOURCE = """import os
from os import environ

URL_ENV = "SVC_URL"
url = os.environ.get(URL_ENV, "http://127.0.0.1:1")
debug = os.getenv("SVC_DEBUG")
token = environ["SVC_TOKEN"]
if "SVC_MODE" in os.environ:
    pass
dynamic = os.environ.get(url)
"""
EXAMPLE = "SVC_URL=http://127.0.0.1:8080\n# SVC_DEBUG=0\nexport SVC_TOKEN=\n# SVC_MODE=normal\n"
READS = [{"name": n, "file": "svc/app.py", "line": 1} for n in ("SVC_URL", "SVC_DEBUG", "SVC_TOKEN", "SVC_MODE")]
POLICY = SecurityPolicy(env_example=".env.example")


def evidence(text: str | None = EXAMPLE, secrets: list[dict[str, Any]] | None = None, scanned: bool = True) -> DictView:
    """Hand-written G5 evidence: the stored reads and example text, and the secret scan's files and findings."""
    return DictView(
        {
            env_example.INPUTS: {"env_example": ".env.example", "text": text, "sources": 1, "reads": READS},
            secret_scan.FILES: {"tracked": 2, "scanned": [".env.example", "svc/app.py"] if scanned else ["svc/app.py"]},
            secret_scan.REPORT: {"results": secrets or []},
        }
    )


def test_reads_are_found_with_the_standard_parser(tmp_path: Path) -> None:
    """get, getenv, [] and `in` reads are found; a name held in a module constant is resolved, a dynamic one is None."""
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "app.py").write_text(SOURCE, encoding="utf-8")
    reads = env_example.find_reads(tmp_path, ["svc/app.py"])
    assert sorted(r["name"] for r in reads if r["name"]) == ["SVC_DEBUG", "SVC_MODE", "SVC_TOKEN", "SVC_URL"]
    assert sum(1 for r in reads if r["name"] is None) == 1


def test_a_complete_example_without_secrets_passes() -> None:
    """Every read name on a NAME= line (commented or exported ones count), scanned, no finding: PASS."""
    result = env_example.assess(evidence(), POLICY)
    assert result is not None
    assert result.status is Status.PASS, result.reasons


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"text": None}, ".env.example: missing, so no variable is documented"),
        (
            {"text": "SVC_URL=x\n"},
            ".env.example does not list 3 variable(s) the code reads: SVC_DEBUG, SVC_MODE, SVC_TOKEN",
        ),
        (
            {"secrets": [{"filename": ".env.example", "line_number": 3, "type": "Secret Keyword"}]},
            ".env.example holds secret-looking value(s) (detect-secrets): line 3 (Secret Keyword)",
        ),
    ],
)
def test_each_defect_fails_naming_the_file_or_value(kwargs: dict[str, Any], expected: str) -> None:
    """No example file, an unlisted variable, a secret-looking value: FAIL with the reason naming it."""
    result = env_example.assess(evidence(**kwargs), POLICY)
    assert result is not None
    assert result.status is Status.FAIL
    assert expected in result.reasons


def test_an_example_the_secret_scan_did_not_cover_is_inconclusive() -> None:
    """Without the secret scan over the example its values are unchecked: INCONCLUSIVE, never PASS."""
    assert env_example.assess(evidence(scanned=False), POLICY).status is Status.INCONCLUSIVE  # type: ignore[union-attr]


def test_no_example_configured_judges_nothing() -> None:
    """Without [gates.G5] env_example the scanner is absent (X3 then stays unevidenced for that target)."""
    assert env_example.assess(evidence(), SecurityPolicy()) is None


def test_a_fixture_with_an_incomplete_secret_bearing_example_fails_g5(tmp_path: Path) -> None:
    """sec-clean reading SVC_TOKEN with an example that omits it and holds a password FAILs G5, naming both."""
    target = target_with(tmp_path, "sec-clean", 'env_example = ".env.example"\n')
    (target / "sec_clean" / "settings.py").write_text('import os\n\nTOKEN = os.environ.get("SVC_TOKEN")\n', "utf-8")
    (target / ".env.example").write_text('DATABASE_PASSWORD="Zq7vR2mK9xT4pL8wN3sB6"\n', encoding="utf-8")
    commit_all(target, "an incomplete .env.example")
    verdict = run_gate_verified("G5", target, tmp_path / "pack", tmp_path / "venvs")
    assert verdict["status"] == "FAIL"
    assert verdict["details"]["scanners"][env_example.SCANNER] == "FAIL"
    reasons = " ".join(verdict["reasons"])
    assert ".env.example does not list 1 variable(s) the code reads: SVC_TOKEN" in reasons
    assert ".env.example holds secret-looking value(s) (detect-secrets): line 1" in reasons
