"""The matrix in a real pack: written by `certify run`, listed in the manifest, rebuilt by `certify verify`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.requirements import requirement_catalogue
from tests.harness.packs import certify_argv, certify_env, committed_copy

SCOPED_POLICY = """[policy]
name = "scoped"
version = "1"
required_gates = ["ID"]
requirements = {requirements}

[policy.out_of_scope]
S7 = "the target keeps no data at rest"
"""


def _run(target: Path, out: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    """A release-mode run of a target under a policy file."""
    return subprocess.run(
        certify_argv("run", "--target", str(target), "--out", str(out), "--policy", str(policy)),
        env=certify_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _policy(tmp: Path, name: str, requirements: list[str]) -> Path:
    """A policy file holding the target to the given requirement ids."""
    path = tmp / f"{name}.toml"
    path.write_text(SCOPED_POLICY.format(requirements=json.dumps(requirements)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """Release packs of the tiny target: one whose scope (R1, R4) the ID gate covers, one adding S5 (no check)."""
    base = tmp_path_factory.mktemp("traceability")
    target = committed_copy("tiny", base / "tiny")
    made = {}
    for name, scope in (("full", ["R1", "R4"]), ("short", ["R1", "R4", "S5"])):
        out = base / name
        made[name] = (out, _run(target, out, _policy(base, name, scope)))
    return made


def test_the_pack_carries_the_matrix_in_its_manifest(packs: dict[str, tuple[Path, object]]) -> None:
    """traceability.json and .md are in the pack and the manifest, listing every catalogue id."""
    out, _ = packs["full"]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert {"traceability.json", "traceability.md"} <= set(manifest["files"])
    matrix = json.loads((out / "traceability.json").read_text(encoding="utf-8"))
    assert [row["id"] for row in matrix["requirements"]] == list(requirement_catalogue().ids)
    rows = {row["id"]: row for row in matrix["requirements"]}
    assert rows["R4"]["checks"][0]["evidence"][0]["path"] == "gates/ID/identity.json"
    assert rows["R4"]["checks"][0]["evidence"][0]["sha256"] == manifest["files"]["gates/ID/identity.json"]["sha256"]
    assert rows["S7"]["reason"] == "policy scoped 1: the target keeps no data at rest"
    assert "**traceability: 2 of 2 in-scope requirements evidenced and PASS (100.0 %).**" in (
        out / "traceability.md"
    ).read_text(encoding="utf-8")


def test_full_traceability_certifies_and_says_so(
    packs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]],
) -> None:
    """At 100 % of the scope the run certifies, and certificate and summary print the figure."""
    out, done = packs["full"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    for name in ("production_readiness_certificate.md", "summary.md"):
        text = (out / name).read_text(encoding="utf-8")
        assert "traceability: 2 of 2 in-scope requirements evidenced and PASS (100.0 %)" in text, name
    assert "Verdict: **CERTIFIED**" in (out / "production_readiness_certificate.md").read_text(encoding="utf-8")


def test_an_unevidenced_requirement_in_scope_blocks_the_certificate(
    packs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]],
) -> None:
    """A scope holding S5, which no check evidences, makes the run exit 3, not certified, naming S5."""
    out, done = packs["short"]
    assert done.returncode == 3, done.stdout + done.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["overall"]["certified"] is False
    assert results["overall"]["traceability"]["not_passed"] == ["S5", "R1"]
    certificate = (out / "production_readiness_certificate.md").read_text(encoding="utf-8")
    assert "Verdict: **NOT CERTIFIED**" in certificate
    assert "traceability: 1 of 3 in-scope requirements evidenced and PASS (33.3 %)**; not PASS: S5, R1" in certificate
    assert "no gate blocks; not certified because traceability matrix not complete; in-scope requirement(s)" in (
        certificate
    )
    assert "names no blocking gate" not in certificate
    html = (out / "production_readiness_certificate.html").read_text(encoding="utf-8")
    assert "not PASS: S5, R1</li>" in html


def test_verify_rebuilds_the_matrix_and_catches_an_edit(packs: dict[str, tuple[Path, object]], tmp_path: Path) -> None:
    """The untouched pack verifies; a traceability.json edited to claim S5 PASS (manifest re-hashed) is named."""
    out, _ = packs["short"]
    ok = subprocess.run(
        certify_argv("verify", str(out)), env=certify_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    forged = tmp_path / "forged"
    subprocess.run(["cp", "-r", str(out), str(forged)], check=True)
    path = forged / "traceability.json"
    matrix = json.loads(path.read_text(encoding="utf-8"))
    for row in matrix["requirements"]:
        if row["id"] == "S5":
            row["status"] = "PASS"
    path.write_text(json.dumps(matrix, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    done = subprocess.run(
        certify_argv("verify", str(forged)), env=certify_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "changed: traceability.json" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
