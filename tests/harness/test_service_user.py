"""S5 privilege drop (harness/service_user.py): a root harness starts the target's instance as an unprivileged user."""

from __future__ import annotations

import copy
import os
import pwd
import stat
import tomllib
from pathlib import Path
from typing import Any

import psutil
import pytest

from gates.playbooks.config import SandboxCheck
from gates.playbooks.sandbox import ROOT, judge_sandbox
from harness import service_user
from harness.config import parse_config
from harness.lifecycle import InstanceLauncher
from harness.procs import ProcessRegistry
from tests.conftest import FIXTURE_TARGETS

SLEEPY = FIXTURE_TARGETS / "sleepy"
SLEEPY_DATA: dict[str, Any] = tomllib.loads((SLEEPY / "certify.toml").read_text(encoding="utf-8"))
#: Debian's own interpreter: readable by every user (a pyenv build under /root is not).
SYSTEM_PYTHON = Path("/usr/bin/python3")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop happens only when the harness is root")


def _root_verdict(user: dict[str, Any]) -> tuple[str, list[str]]:
    """The S5 root sub-check of a root harness whose service ran as root, given the launcher's user record."""
    record = {
        "harness_euid": 0,
        "service_user": user,
        "processes": [{"pid": 7, "name": "svc", "uid": 0, "euid": 0, "listen": [["127.0.0.1", 1]]}],
        "entries": [{"path": ".", "mode": 0o700}],
        "actions": {"a": []},
    }
    checks: dict[str, str] = {}
    reasons: list[str] = []
    judge_sandbox(SandboxCheck(), {"sandbox": record}, checks, reasons)
    return checks[ROOT], reasons


def test_declared_root_user_fails_and_a_failed_drop_is_inconclusive_with_its_reason() -> None:
    """user = 'root' FAILs naming the declaration; a drop that could not happen is INCONCLUSIVE naming why."""
    status, reasons = _root_verdict({"requested": "root", "uid": None, "problem": ""})
    assert status == "FAIL"
    assert "[service] user = 'root'" in " ".join(reasons)
    status, reasons = _root_verdict({"requested": "nobody", "uid": None, "problem": "user 'nobody' cannot reach /x"})
    assert status == "INCONCLUSIVE"
    assert "cannot reach /x" in " ".join(reasons)
    status, _ = _root_verdict({"requested": "nobody", "uid": 65534, "problem": ""})
    assert status == "FAIL"


def test_blocked_at_names_the_folder_another_user_cannot_pass(tmp_path: Path) -> None:
    """A 0700 folder above a file stops another user, and blocked_at names that folder with its mode."""
    service_user.grant_search(tmp_path / "private")  # pytest's own temp root is 0700
    private = tmp_path / "private"
    (private / "inner").mkdir(parents=True)
    private.chmod(0o700)
    stranger = pwd.struct_passwd(("x", "", 54321, 54321, "", "/", "/bin/false"))
    where = service_user.blocked_at(private / "inner", stranger, 5)
    assert where.startswith(f"{private} (0700")
    private.chmod(0o755)
    assert service_user.blocked_at(private / "inner", stranger, 5) == ""


@needs_root
def test_unreachable_venv_keeps_root_and_says_why(tmp_path: Path) -> None:
    """A root harness whose venv the user cannot reach starts as root and records one line naming the folder."""
    service_user.grant_search(tmp_path / "hidden")  # pytest's own temp root is 0700
    hidden = tmp_path / "hidden"
    (hidden / "venv" / "bin").mkdir(parents=True)
    hidden.chmod(0o700)
    user = service_user.resolve(None, hidden / "venv" / "bin" / "python", SLEEPY)
    assert not user.drops
    assert user.problem.startswith("the service runs as root: user 'nobody' cannot reach")
    assert f"{hidden} (0700" in user.problem


@needs_root
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs Debian's /usr/bin/python3")
def test_root_harness_starts_the_service_as_nobody_with_a_private_data_dir(tmp_path: Path) -> None:
    """Under a root harness the started service's uid is nobody's (not 0) and it owns its 0700 data dir."""
    data = copy.deepcopy(SLEEPY_DATA)
    config = parse_config(data, "sleepy/certify.toml")
    launcher = InstanceLauncher(config, SLEEPY, tmp_path / "work", registry=ProcessRegistry())
    instance = launcher.start(SYSTEM_PYTHON, "S5")
    try:
        uids = psutil.Process(instance.service.pid).uids()
        owner = instance.data_dir.stat()
    finally:
        launcher.stop(instance)
    nobody = pwd.getpwnam("nobody").pw_uid
    assert instance.user.drops, instance.user.problem
    assert uids.real == uids.effective == nobody != 0
    assert owner.st_uid == nobody
    assert stat.S_IMODE(owner.st_mode) == 0o700
