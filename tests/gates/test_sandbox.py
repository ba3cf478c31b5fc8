"""S5 in gate PB (gates/playbooks/sandbox.py): permissions, uids and listeners measured by the harness."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gates.playbooks.config import SandboxCheck
from gates.playbooks.sandbox import ACTIONS, DATA_DIR, LISTEN, ROOT, SECRETS, judge_sandbox, observe
from tests.conftest import GitTarget, RunCertify

CHECK = SandboxCheck()


def _record(**overrides: Any) -> dict[str, Any]:
    """A clean S5 record of an unprivileged service, with fields replaced."""
    record: dict[str, Any] = {
        "harness_euid": 1000,
        "processes": [{"pid": 10, "name": "svc", "uid": 1000, "euid": 1000, "listen": [["127.0.0.1", 8080]]}],
        "entries": [{"path": ".", "mode": 0o755}, {"path": "db", "mode": 0o644}, {"path": "k.key", "mode": 0o600}],
        "actions": {"flag": ["file-write"]},
    }
    return {**record, **overrides}


def _judged(record: dict[str, Any], check: SandboxCheck = CHECK) -> tuple[dict[str, str], list[str]]:
    """The S5 sub-checks and reasons for one record."""
    checks: dict[str, str] = {}
    reasons: list[str] = []
    judge_sandbox(check, {"sandbox": record}, checks, reasons)
    return checks, reasons


def test_clean_unprivileged_record_passes_every_sub_check() -> None:
    """An unprivileged, loopback-only service with tight permissions passes all five sub-checks."""
    checks, reasons = _judged(_record())
    assert checks == dict.fromkeys((ROOT, DATA_DIR, SECRETS, LISTEN, ACTIONS), "PASS"), reasons


@pytest.mark.parametrize(
    ("overrides", "name", "status", "needle"),
    [
        ({"processes": [{"pid": 3, "name": "svc", "uid": 0, "euid": 0, "listen": []}]}, ROOT, "FAIL", "svc (pid 3)"),
        (
            {"harness_euid": 0, "processes": [{"pid": 3, "name": "svc", "uid": 0, "euid": 0, "listen": []}]},
            ROOT,
            "INCONCLUSIVE",
            "the harness runs as root",
        ),
        ({"entries": [{"path": ".", "mode": 0o777}]}, DATA_DIR, "FAIL", ". (0777)"),
        ({"entries": [{"path": ".", "mode": 0o700}, {"path": "a/x", "mode": 0o664}]}, DATA_DIR, "FAIL", "a/x (0664)"),
        ({"entries": [{"path": "tls/key.pem", "mode": 0o640}]}, SECRETS, "FAIL", "tls/key.pem (0640)"),
        (
            {"processes": [{"pid": 4, "name": "svc", "uid": 1, "euid": 1, "listen": [["0.0.0.0", 81]]}]},  # noqa: S104
            LISTEN,
            "FAIL",
            "0.0.0.0:81 (pid 4)",
        ),
        ({"processes": [{"pid": 4, "name": "svc", "uid": 1, "euid": 1, "listen": []}]}, LISTEN, "INCONCLUSIVE", "no"),
        ({"actions": {"flag": ["file-write", "shell"]}}, ACTIONS, "FAIL", "flag: shell"),
        ({"actions": {"flag": None}}, ACTIONS, "INCONCLUSIVE", "declare no 'actions' list"),
    ],
)
def test_each_breach_is_named(overrides: dict[str, Any], name: str, status: str, needle: str) -> None:
    """Root, wide modes, open secrets, a 0.0.0.0 listener and a forbidden action each fail their sub-check by name."""
    checks, reasons = _judged(_record(**overrides))
    assert checks[name] == status
    assert any(reason.startswith(name) and needle in reason for reason in reasons), reasons


def test_root_needs_both_the_policy_and_a_reason() -> None:
    """allow_root without a reason still judges root; with one it passes and says why."""
    record = _record(processes=[{"pid": 3, "name": "svc", "uid": 0, "euid": 0, "listen": [["127.0.0.1", 1]]}])
    assert _judged(record, SandboxCheck(allow_root=True))[0][ROOT] == "FAIL"
    assert _judged(record, SandboxCheck(allow_root=True, root_reason="binds port 80"))[0][ROOT] == "PASS"


def test_declared_secret_file_that_is_missing_fails() -> None:
    """A declared secret file the data dir does not hold is a FAIL naming the glob, not a silent pass."""
    checks, reasons = _judged(_record(), SandboxCheck(secret_files=("keys/data.key",)))
    assert checks[SECRETS] == "FAIL"
    assert "keys/data.key" in reasons[0]


def test_no_record_is_inconclusive() -> None:
    """A governance instance that never reached the observation leaves S5 INCONCLUSIVE."""
    checks: dict[str, str] = {}
    judge_sandbox(CHECK, {"start_error": "boom"}, checks, [])
    assert checks == {ROOT: "INCONCLUSIVE"}


def test_observe_reads_a_real_process_tree_and_data_dir(tmp_path: Path) -> None:
    """observe() sees a child's loopback listener, its euid and the data dir's modes with its own eyes."""
    (tmp_path / "open.txt").write_text("x")
    (tmp_path / "open.txt").chmod(0o666)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = f"import socket,time;s=socket.socket();s.bind(('127.0.0.1',{port}));s.listen();time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            record = json.loads(json.dumps(observe(child.pid, tmp_path, [{"id": "a", "actions": []}], CHECK)))
            if record["processes"] and record["processes"][0]["listen"]:
                break
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
    assert record["processes"][0]["listen"] == [["127.0.0.1", port]]
    assert record["processes"][0]["euid"] == os.geteuid()
    checks, reasons = _judged(record)
    assert checks[LISTEN] == "PASS"
    assert checks[DATA_DIR] == "FAIL"
    assert "open.txt (0666)" in " ".join(reasons)


@pytest.mark.integration
def test_exposed_fixture_fails_s5_and_s7_by_name(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """pb-exposed (0.0.0.0, 0777 data dir, 0644 key, a shell action, plaintext notes) FAILs PB naming each breach."""
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", git_target("pb-exposed"), "--gates", "PB", "--mode", "ci", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr
    (result,) = [r for r in json.loads((out / "results.json").read_text())["results"] if r["gate"] == "PB"]
    verdict = result["verdict"]
    assert verdict["status"] == "FAIL"
    sandbox = verdict["details"]["sandbox"]
    assert sandbox[DATA_DIR] == sandbox[SECRETS] == sandbox[LISTEN] == sandbox[ACTIONS] == "FAIL"
    # a root harness starts it as root only because its certify.toml says [service] user = "root"
    assert sandbox[ROOT] == ("FAIL" if os.geteuid() == 0 else "PASS")
    assert verdict["details"]["at_rest"] == {"S7 notes canary not in plaintext": "FAIL"}
    reasons = " | ".join(verdict["reasons"])
    for needle in (
        ". (0777)",
        "secret.key (0644)",
        "listening beyond 127.0.0.1: 0.0.0.0:",
        "flag: shell",
        "state.db (utf-8)",
    ):
        assert needle in reasons
    matrix = {row["id"]: row for row in json.loads((out / "traceability.json").read_text())["requirements"]}
    assert {c["id"] for c in matrix["S5"]["checks"]} == {"PB.sandbox"}
    assert {c["id"] for c in matrix["S7"]["checks"]} == {"PB.at-rest"}
