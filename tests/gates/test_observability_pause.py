"""G6's dependency pause: every process of a declared dependency frozen for the fault window, thawed after."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from gates.observability.policy import FaultSpec, PauseAction
from gates.observability.traffic import Pauser
from harness.lifecycle import Instance

#: A parent that starts a child in a session of its own (as PostgreSQL's backends are), then waits.
FAMILY = (
    "import os, subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
    "time.sleep(60)"
)


def _status(pid: int) -> str:
    """The process's scheduler state (psutil's name for it)."""
    return str(psutil.Process(pid).status())


def test_a_paused_dependency_and_its_own_session_child_stop_and_resume(tmp_path: Path) -> None:
    """start SIGSTOPs the dependency and its descendant in another session; stop SIGCONTs both; records name them."""
    proc = subprocess.Popen([sys.executable, "-c", FAMILY], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = psutil.Process(proc.pid).children()
        inst = Instance(name="x", port=1, data_dir=tmp_path, log_dir=tmp_path, values={}, procs={"db": proc})
        pauser = Pauser(PauseAction(dependency="db"), inst)
        started = pauser.start()
        assert started["signal"] == "SIGSTOP"
        assert started["ok"]
        assert set(started["pids"]) == {proc.pid, child.pid}
        assert started["pid_file"] == "dependency db (2 processes)"
        assert started["still_running"] == []
        assert {_status(proc.pid), _status(child.pid)} == {psutil.STATUS_STOPPED}
        stopped = pauser.stop()
        assert stopped["signal"] == "SIGCONT"
        assert set(stopped["pids"]) == {proc.pid, child.pid}
        assert psutil.STATUS_STOPPED not in {_status(proc.pid), _status(child.pid)}
        assert pauser.stop() == {**pauser.stop(), "ok": False}  # nothing frozen: a no-op, said so
    finally:
        for member in psutil.Process(proc.pid).children(recursive=True):
            member.kill()
        proc.kill()
        proc.wait(timeout=10)


def test_a_pause_of_a_dependency_that_is_not_running_is_recorded_not_sent(tmp_path: Path) -> None:
    """No such process: the record says why and nothing is signalled; the fault table accepts `pause`."""
    inst = Instance(name="x", port=1, data_dir=tmp_path, log_dir=tmp_path, values={})
    record = Pauser(PauseAction(dependency="db"), inst).start()
    assert record == {**record, "ok": False, "why": "dependency db is not running"}
    assert FaultSpec.model_validate({"pause": {"dependency": "db"}}).pause == PauseAction(dependency="db")
