"""Gate G5 (gates/security/) through the real CLI on the sec-* fixture targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_TARGETS, certify, commit_all, copy_target, measurement, run_gate_verified

pytestmark = pytest.mark.integration

#: A subset (pip, setuptools, urllib3, requests) of the 2024-10-10 PyPA advisory database snapshot.
ADVISORY_DB = FIXTURE_TARGETS / "sec-advisory-db"
FRESH_ENOUGH = f'advisory_db = "{ADVISORY_DB}"\nmax_advisory_age_days = 100000\n'
#: The credential sec-bad commits; it must appear in no file of the pack.
PASSWORD = "Zq7vR2mK9xT4pL8wN3sB6"
#: A test policy granting sec-bad two G5 waivers: CVE-2021-28363 until 2099, licence:unidecode expired in 2020.
WAIVER_POLICY = FIXTURE_TARGETS.parent / "policies" / "sec-bad-waivers.toml"
#: The same two waivers as a target would write them in its own certify.toml: requests, never honoured.
REQUESTED_WAIVERS = """
[[waivers]]
gate = "G5"
finding = "CVE-2021-28363"
reason = "Only plain HTTP to a fixed internal host; upgrade tracked in SEC-12."
owner = "security@example.invalid"
expires = 2099-12-31

[[waivers]]
gate = "G5"
finding = "licence:unidecode"
reason = "Legal review pending."
owner = "legal@example.invalid"
expires = 2020-01-01
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the module, so each fixture's venv is created once."""
    return tmp_path_factory.mktemp("venvs")


def target_with(tmp_path: Path, name: str, g5: str = "", extra: str = "") -> Path:
    """A committed copy of a fixture whose certify.toml gets `g5` lines in [gates.G5] and `extra` tables."""
    target = copy_target(tmp_path, name)
    if not g5 and not extra:
        return target
    config = target / "certify.toml"
    text = config.read_text(encoding="utf-8")
    if "[gates.G5]\n" in text:
        text = text.replace("[gates.G5]\n", "[gates.G5]\n" + g5, 1)
    elif g5:
        text += "\n[gates.G5]\n" + g5
    config.write_text(text + extra, encoding="utf-8")
    commit_all(target, "G5 settings for this test")
    return target


def test_clean_target_passes_with_sbom_sarif_and_report(tmp_path: Path, cache_dir: Path) -> None:
    """sec-clean PASSes against a fresh-enough database, every scanner covering something; 3 documents written."""
    out = tmp_path / "pack"
    verdict = run_gate_verified("G5", target_with(tmp_path, "sec-clean", FRESH_ENOUGH), out, cache_dir)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["exit_code"] == 0
    assert set(verdict["details"]["scanners"].values()) == {"PASS"}
    assert measurement(verdict, "lines scanned by bandit")["value"] > 0
    assert measurement(verdict, "dependencies audited")["value"] >= 2  # pip and setuptools at least
    assert measurement(verdict, "SBOM schema errors (CycloneDX 1.6)")["passed"] is True
    advisory = verdict["details"]["facts"]["known vulnerabilities (pip-audit)"]["advisory_db"]
    assert (advisory["date"], advisory["commit"][:12]) == ("2024-10-10", "3ccb612573e2")
    sbom = json.loads((out / "sbom.json").read_text(encoding="utf-8"))
    assert sbom["specVersion"] == "1.6"
    assert {c["name"] for c in sbom["components"]} >= {"pip", "setuptools"}
    sarif = json.loads((out / "security.sarif").read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0"
    assert {run["tool"]["driver"]["name"] for run in sarif["runs"]} >= {"bandit", "pip-audit", "detect-secrets"}
    assert (out / "security_report.md").read_text(encoding="utf-8").startswith("# Security report (G5): PASS")


def test_stale_advisory_database_is_inconclusive(tmp_path: Path, cache_dir: Path) -> None:
    """With the default max_advisory_age_days the 2024-10-10 snapshot is too old: INCONCLUSIVE, naming its date."""
    target = target_with(tmp_path, "sec-clean", f'advisory_db = "{ADVISORY_DB}"\n')
    verdict = run_gate_verified("G5", target, tmp_path / "pack", cache_dir)
    assert verdict["status"] == "INCONCLUSIVE", verdict["reasons"]
    assert verdict["exit_code"] == 3
    (reason,) = verdict["reasons"]
    assert "dated 2024-10-10" in reason
    assert "older than max_advisory_age_days=30" in reason
    age = measurement(verdict, "advisory database age")
    assert (age["threshold"], age["passed"]) == (30, False)


def test_credential_vulnerable_pin_and_gpl_fail_with_waivers_applied(tmp_path: Path, cache_dir: Path) -> None:
    """sec-bad FAILs on its secret, urllib3's advisories and GPL Unidecode; only the policy's live waiver applies."""
    out = tmp_path / "pack"
    target = target_with(tmp_path, "sec-bad", FRESH_ENOUGH)
    verdict = run_gate_verified("G5", target, out, cache_dir, "--policy", WAIVER_POLICY)
    assert verdict["status"] == "FAIL", verdict["reasons"]
    assert verdict["exit_code"] == 1
    reasons = "\n".join(verdict["reasons"])
    assert "sec_bad/settings.py:4: possible Secret Keyword committed (value withheld" in reasons
    assert "urllib3 1.26.0 has known vulnerability PYSEC-2023-192" in reasons
    assert "Unidecode 1.4.0 is licensed GPL" in reasons
    assert "PYSEC-2021-59" not in reasons  # waived through its alias CVE-2021-28363
    (active,) = verdict["details"]["waivers"]
    assert active["matched"] == ["vuln:urllib3:PYSEC-2021-59"]
    assert active["owner"] == "security@example.invalid"
    assert "approved by certifier@example.invalid" in active["reason"]
    (expired,) = verdict["details"]["expired_waivers"]
    assert (expired["finding"], expired["matched"]) == ("licence:unidecode", ["licence:unidecode"])
    for path in out.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_verify_rejudges_g5_under_the_auditors_waivers(tmp_path: Path, cache_dir: Path) -> None:
    """A pack judged with a waiver the auditor's policy lacks is a mismatch naming G5 and the finding; same: ok."""
    out = tmp_path / "pack"
    target = target_with(tmp_path, "sec-bad", FRESH_ENOUGH)
    run_gate_verified("G5", target, out, cache_dir, "--policy", WAIVER_POLICY)
    same = certify("verify", out, "--policy", WAIVER_POLICY)
    assert same.returncode == 0, same.stdout + same.stderr
    text = WAIVER_POLICY.read_text(encoding="utf-8")
    live = text[text.index("[[waivers]]") : text.index("[[waivers]]", text.index("[[waivers]]") + 1)]
    auditor = tmp_path / "auditor.toml"
    auditor.write_text(text.replace(live, "").replace('name = "sec-bad-waivers"', 'name = "auditor"'), encoding="utf-8")
    other = certify("verify", out, "--policy", auditor)
    assert other.returncode == 1, other.stdout + other.stderr
    assert "Traceback" not in other.stdout + other.stderr
    (line,) = [problem for problem in other.stdout.splitlines() if problem.startswith("verdict of")]
    assert line.startswith("verdict of G5 differs: recorded FAIL, recomputed FAIL (now: ")
    assert "vuln:urllib3:PYSEC-2021-59" in line


def test_waivers_in_certify_toml_alone_are_requested_not_honoured(tmp_path: Path, cache_dir: Path) -> None:
    """The same waivers written in sec-bad's own certify.toml waive nothing: G5 reports the finding, the run exits 4."""
    out = tmp_path / "pack"
    target = target_with(tmp_path, "sec-bad", FRESH_ENOUGH, REQUESTED_WAIVERS)
    verdict = run_gate_verified("G5", target, out, cache_dir)
    assert verdict["status"] == "FAIL", verdict["reasons"]
    assert verdict["exit_code"] == 4
    assert "PYSEC-2021-59" in "\n".join(verdict["reasons"])  # CVE-2021-28363 is not waived
    assert verdict["details"]["waivers"] == []
    assert verdict["details"]["expired_waivers"] == []
    assert "No G5 waiver granted by the policy." in (out / "security_report.md").read_text(encoding="utf-8")
    report = json.loads((out / "deviations.json").read_text(encoding="utf-8"))
    requested = {d["id"]: d for d in report["deviations"] if d["kind"] == "requested-waiver"}
    assert set(requested) == {"requested-waiver:G5:CVE-2021-28363", "requested-waiver:G5:licence:unidecode"}
    assert all(d["waived_by"] is None for d in requested.values())


def test_unparsable_source_is_inconclusive(tmp_path: Path, cache_dir: Path) -> None:
    """A syntax error makes bandit skip a file while exiting 0: the gate says INCONCLUSIVE and names the file."""
    verdict = run_gate_verified("G5", target_with(tmp_path, "sec-broken"), tmp_path / "pack", cache_dir)
    assert verdict["status"] == "INCONCLUSIVE", verdict["reasons"]
    assert "SAST (bandit): bandit could not scan 1 file(s): broken/parser.py: syntax error" in "\n".join(
        verdict["reasons"]
    )
    assert measurement(verdict, "files bandit could not scan")["passed"] is False


def test_empty_source_tree_and_empty_venv_are_inconclusive(tmp_path: Path, cache_dir: Path) -> None:
    """Nothing to scan is never a pass: 0 lines for bandit, ruff and mypy, 0 audited packages, an empty SBOM."""
    verdict = run_gate_verified("G5", target_with(tmp_path, "sec-empty"), tmp_path / "pack", cache_dir)
    assert verdict["status"] == "INCONCLUSIVE", verdict["reasons"]
    reasons = "\n".join(verdict["reasons"])
    assert "bandit scanned 0 lines of code in empty" in reasons
    assert "pip-audit audited no dependency" in reasons
    assert "the SBOM lists no component" in reasons
    assert "ruff checks no file in empty (empty or fully excluded): nothing was analysed" in reasons
    assert "mypy analysed 0 lines in empty (empty or fully excluded): nothing was analysed" in reasons
    assert verdict["details"]["scanners"]["SAST (ruff)"] == "INCONCLUSIVE"
    assert verdict["details"]["scanners"]["type check (mypy)"] == "INCONCLUSIVE"
