"""`certify verify`: a pack checks out untouched, and any changed, deleted or added file is named."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.model import Status, Verdict
from tests.harness.packs import PLUGINS, certify_argv, certify_env, committed_copy


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete release-mode pack of the tiny fixture target."""
    base = tmp_path_factory.mktemp("verify")
    target = committed_copy("tiny", base / "tiny")
    out = base / "pack"
    subprocess.run(
        certify_argv("run", "--target", str(target), "--out", str(out)),
        env=certify_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def _verify(pack: Path) -> subprocess.CompletedProcess[str]:
    """Run certify verify on a pack."""
    return subprocess.run(
        certify_argv("verify", str(pack)), env=certify_env(), capture_output=True, text=True, timeout=120, check=False
    )


def _verify_here(pack: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """What `certify verify` would print for a pack, verified in this process (one file per loop, no CLI start)."""
    from harness.errors import HarnessError  # noqa: PLC0415
    from harness.verify import verify_pack  # noqa: PLC0415

    monkeypatch.setenv("CERTIFY_PLUGINS", PLUGINS)
    try:
        report = verify_pack(pack, None)
    except HarnessError as exc:  # the CLI prints it as its one line (an unreadable or missing manifest)
        return str(exc)
    return "\n".join([*report.problems, *report.notes]) if not report.ok else ""


def _files(pack: Path) -> list[str]:
    """Every file of the pack, relative."""
    return sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file())


def test_untouched_pack_verifies(pack: Path) -> None:
    """Verify exits 0 on the pack as written."""
    done = _verify(pack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok:")


def test_flipping_one_byte_of_any_file_is_named(pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing one byte of any file makes verify fail and name that file (the CLI's exit code: the tests below)."""
    for relpath in _files(pack):
        copy = tmp_path / relpath.replace("/", "_")
        shutil.copytree(pack, copy)
        target = copy / relpath
        data = bytearray(target.read_bytes() or b"\n")  # an empty file gets its one byte added
        position = len(data) // 2
        data[position] = (data[position] + 1) % 256 if data[position] not in b'{}[]"' else ord(" ")
        target.write_bytes(bytes(data))
        problems = _verify_here(copy, monkeypatch)
        assert problems, relpath
        assert relpath in problems, (relpath, problems)
        shutil.rmtree(copy)


def test_deleting_any_file_is_named(pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deleting any file makes verify fail and name it; through the CLI, exit 1 naming it."""
    for relpath in _files(pack):
        copy = tmp_path / ("del_" + relpath.replace("/", "_"))
        shutil.copytree(pack, copy)
        (copy / relpath).unlink()
        problems = _verify_here(copy, monkeypatch)
        assert problems, relpath
        assert relpath in problems, relpath
        shutil.rmtree(copy)
    copy = tmp_path / "deleted-by-cli"
    shutil.copytree(pack, copy)
    (copy / "gates" / "ID" / "identity.json").unlink()
    done = _verify(copy)
    assert done.returncode == 1
    assert "gates/ID/identity.json" in done.stdout
    assert "Traceback" not in done.stderr


def test_adding_a_file_is_named(pack: Path, tmp_path: Path) -> None:
    """A file the manifest does not list makes verify fail and name it."""
    copy = tmp_path / "added"
    shutil.copytree(pack, copy)
    (copy / "gates" / "ID" / "extra.json").write_text("{}")
    done = _verify(copy)
    assert done.returncode == 1
    assert "added: gates/ID/extra.json" in done.stdout


def test_forged_verdict_is_recomputed_and_caught(pack: Path, tmp_path: Path) -> None:
    """Editing evidence and re-hashing the manifest still fails: the verdict is recomputed from evidence."""
    import hashlib  # noqa: PLC0415
    import json  # noqa: PLC0415

    copy = tmp_path / "forged"
    shutil.copytree(pack, copy)
    evidence = copy / "gates/ID/identity.json"
    data = json.loads(evidence.read_text())
    data["versions"]["pyproject.toml:project.version"] = "9.9.9"
    evidence.write_text(json.dumps(data))
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = manifest["files"]["gates/ID/identity.json"]
    entry["sha256"] = hashlib.sha256(evidence.read_bytes()).hexdigest()
    entry["size"] = evidence.stat().st_size
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    done = _verify(copy)
    assert done.returncode == 1
    assert "verdict of ID differs: recorded PASS, recomputed FAIL" in done.stdout


def test_verdict_difference_names_what_changed_and_keeps_a_long_reasons_end() -> None:
    """A recomputed verdict's difference line lists reasons gained and lost, then changed details, ids intact."""
    long_reason = "high: " + "x" * 300 + " [vuln:urllib3:PYSEC-2021-59]"
    recorded = Verdict.of(Status.FAIL, "high: other [a]", details={"waived": 1})
    recomputed = Verdict.of(Status.FAIL, "high: other [a]", long_reason, details={"waived": 0})
    line = recomputed.difference(recorded)
    assert line.startswith("now: high: xxx")
    assert line.endswith("[vuln:urllib3:PYSEC-2021-59]; details.waived: 1 -> 0")
    assert len(line) < 250
    assert Verdict.of(Status.PASS).difference(Verdict.of(Status.FAIL)) == "status differs"
