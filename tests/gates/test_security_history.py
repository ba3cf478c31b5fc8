"""G5 S2 over the whole history: a key committed then deleted is found by commit, path and line."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from gates.security import history_worker, secret_history, secret_scan
from gates.security.policy import Finding, SecurityPolicy, Severity, apply_waivers
from tests.conftest import FIXTURE_TARGETS, commit_all, copy_target, git, run_gate_verified

ADVISORY_DB = FIXTURE_TARGETS / "sec-advisory-db"
FRESH_ENOUGH = f'advisory_db = "{ADVISORY_DB}"\nmax_advisory_age_days = 100000\n'
#: An AWS access key id shape built here, so no key-looking string is committed in the fixtures.
KEY = "AKIA" + "Q7" * 8
KEY_SHA1 = hashlib.sha1(KEY.encode()).hexdigest()  # noqa: S324 - detect-secrets names secrets by sha1
FIXTURE_POLICY = FIXTURE_TARGETS.parent / "policies" / "fixture-targets.toml"


def leak_and_delete(target: Path) -> str:
    """Commit a settings file holding KEY, delete it in the next commit; the leaking commit's id."""
    (target / "sec_clean" / "cloud.py").write_text(f'REGION = "eu-west-1"\nACCESS_KEY_ID = "{KEY}"\n', encoding="utf-8")
    commit_all(target, "add cloud settings")
    leaked = git(target, "rev-parse", "HEAD").stdout.strip()
    (target / "sec_clean" / "cloud.py").unlink()
    commit_all(target, "remove cloud settings")
    return leaked


def rotation_policy(tmp_path: Path, *, rotated: bool) -> Path:
    """The fixture targets' policy plus one G5 waiver for KEY, recording its rotation or not."""
    lines = [
        "",
        "[[waivers]]",
        'gate = "G5"',
        f'finding = "secret:{KEY_SHA1}"',
        'reason = "Key deactivated in IAM and replaced (INC-7)."',
        'owner = "security@example.invalid"',
        'approved_by = "certifier@example.invalid"',
        "expires = 2099-12-31",
        *(["rotated = 2026-12-01"] if rotated else []),
    ]
    policy = tmp_path / "rotation.toml"
    text = FIXTURE_POLICY.read_text(encoding="utf-8").replace('"fixture-targets"', '"rotation"', 1)
    policy.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    return policy


def test_worker_finds_a_deleted_key_in_its_commit_and_scans_each_blob_once(tmp_path: Path) -> None:
    """The deleted key is reported with its adding commit, path and line; a blob on two paths is read once."""
    target = copy_target(tmp_path, "sec-clean")
    leaked = leak_and_delete(target)
    (target / "copy.md").write_text((target / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    commit_all(target, "same blob on a second path")
    result = history_worker.scan(target, set())
    (finding,) = result["results"]
    assert (finding["commit"], finding["filename"], finding["line_number"]) == (leaked, "sec_clean/cloud.py", 2)
    assert finding["hashed_secret"] == KEY_SHA1
    assert KEY not in json.dumps(result)
    listed = {line.split()[0] for line in git(target, "rev-list", "--all", "--objects").stdout.splitlines()}
    blobs = [o for o in listed if git(target, "cat-file", "-t", o).stdout.strip() == "blob"]
    assert result["blobs"] == len(blobs)
    assert result["in_tree"] == len(git(target, "ls-files").stdout.split()) - 1  # README.md and copy.md share one blob


def test_worker_on_a_directory_without_git_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside a repository the worker prints one line naming the directory and exits 2."""
    assert history_worker.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(tmp_path) in err


def _secret(needs_rotation: bool = True) -> Finding:
    """A secret finding as the history scan makes it."""
    return Finding(
        scanner="detect-secrets",
        rule="AWS Access Key",
        id="secret-history:abc:cloud.py:def",
        keys=(f"secret:{KEY_SHA1}",),
        severity=Severity.HIGH,
        title="t",
        needs_rotation=needs_rotation,
    )


def test_a_secret_is_waived_only_by_a_waiver_recording_rotation() -> None:
    """Without `rotated` the waiver accepts nothing and is itself a medium finding; with it, the secret is waived."""
    waiver = {"finding": f"secret:{KEY_SHA1}", "reason": "r", "owner": "o", "expires": "2099-12-31"}
    day = dt.date(2026, 12, 7)
    plain = apply_waivers([_secret()], [waiver], day)
    assert [f.rule for f in plain.unwaived] == ["AWS Access Key", "waiver-without-rotation"]
    assert plain.waivers[0].matched == ()
    rotated = apply_waivers([_secret()], [{**waiver, "rotated": "2026-12-01"}], day)
    assert rotated.unwaived == ()
    assert rotated.waived[0][1].rotated == "2026-12-01"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for the module."""
    return tmp_path_factory.mktemp("venvs")


def _target(tmp_path: Path) -> tuple[Path, str]:
    """sec-clean with a fresh-enough advisory database and a key committed then deleted."""
    target = copy_target(tmp_path, "sec-clean")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[gates.G5]\n", "[gates.G5]\n" + FRESH_ENOUGH), encoding="utf-8"
    )
    commit_all(target, "fresh advisory db")
    return target, leak_and_delete(target)


def test_history_only_key_fails_naming_the_commit(tmp_path: Path, cache_dir: Path) -> None:
    """G5 FAILs on the deleted key with commit, path and line; a waiver without rotation does not accept it."""
    target, leaked = _target(tmp_path)
    out = tmp_path / "pack"
    verdict = run_gate_verified("G5", target, out, cache_dir, "--policy", str(rotation_policy(tmp_path, rotated=False)))
    assert verdict["status"] == "FAIL", verdict["reasons"]
    reasons = "\n".join(verdict["reasons"])
    assert f"commit {leaked[:12]} sec_clean/cloud.py:2: possible AWS Access Key in the history" in reasons
    assert verdict["details"]["scanners"]["secrets (detect-secrets)"] == "PASS"
    assert verdict["details"]["scanners"]["secrets in history (detect-secrets)"] == "PASS"
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_history_key_with_a_rotation_waiver_is_accepted_and_printed(tmp_path: Path, cache_dir: Path) -> None:
    """The policy's waiver recording the rotation accepts the history finding; the findings table prints both."""
    target, leaked = _target(tmp_path)
    out = tmp_path / "pack"
    verdict = run_gate_verified("G5", target, out, cache_dir, "--policy", str(rotation_policy(tmp_path, rotated=True)))
    assert verdict["status"] == "PASS", verdict["reasons"]
    (active,) = verdict["details"]["waivers"]
    assert active["rotated"] == "2026-12-01"
    assert active["matched"] == [f"secret-history:{leaked[:12]}:sec_clean/cloud.py:{KEY_SHA1[:12]}"]
    report = (out / "security_report.md").read_text(encoding="utf-8")
    waived = report[report.index("## Waived findings") : report.index("## Waivers")]
    (row,) = [line for line in waived.splitlines() if line.startswith("| detect-secrets |")]
    assert f"commit `{leaked[:12]}` sec_clean/cloud.py:2" in row
    assert "until it is rotated" in row
    assert f"`secret:{KEY_SHA1}` (security@example.invalid, until 2099-12-31, rotated 2026-12-01)" in row


class DictEvidence:
    """Evidence files held in a dict (an EvidenceReader for the pure assess)."""

    def __init__(self, files: dict[str, object]) -> None:
        """Keep the files."""
        self.files = files

    def exists(self, name: str) -> bool:
        """Whether the file was recorded."""
        return name in self.files

    def read_json(self, name: str) -> object:
        """The file's content."""
        return self.files[name]


def _history_evidence(baseline_false: bool) -> DictEvidence:
    """A finished history scan holding one secret, with or without a baseline entry auditing it false."""
    entry = {"blob": "b" * 40, "type": "Secret Keyword", "filename": "old/conf.py", "line_number": 3}
    entry |= {"hashed_secret": KEY_SHA1, "commit": "c" * 40}
    history = {"blobs": 5, "bytes": 100, "binary": 0, "too_large": 0, "in_tree": 2, "lines_scanned": 9}
    files: dict[str, object] = {
        secret_history.HISTORY_RUN: {"returncode": 0, "timed_out": False, "cancelled": False},
        secret_history.HISTORY: {**history, "elapsed_s": 0.1, "results": [entry]},
    }
    if baseline_false:
        audited = {"filename": "now/elsewhere.py", "hashed_secret": KEY_SHA1, "is_secret": False}
        files[secret_scan.BASELINE] = {"path": ".secrets.baseline", "entries": [audited]}
    return DictEvidence(files)


def test_baseline_audited_false_hash_accepts_a_history_finding() -> None:
    """A hash the baseline audits is_secret=false (under any path) is no finding; without it, one high finding."""
    policy = SecurityPolicy()
    accepted = secret_history.assess(_history_evidence(baseline_false=True), policy)
    assert (accepted.status.value, accepted.findings) == ("PASS", ())
    (finding,) = secret_history.assess(_history_evidence(baseline_false=False), policy).findings
    assert (finding.severity, finding.commit, finding.location, finding.line) == (
        Severity.HIGH,
        "c" * 40,
        "old/conf.py",
        3,
    )
