"""Nothing a run creates outside its pack and cache outlives it: pass, FAIL, timeout, SIGINT or SIGTERM.

Each run gets TMPDIR pointing at an empty directory of its own; afterwards that directory must be
empty again, although the gates' children (and the harness itself) made temporary files there and
never removed them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.packs import PLUGINS, certify_argv, certify_env, guardian_copy

pytestmark = pytest.mark.integration

LEAKY_PLUGINS = f"{PLUGINS},tests.fixtures.plugins.leaky_gates"


@pytest.fixture
def tmpdir_of_run(tmp_path: Path) -> Path:
    """An empty directory that a run gets as its TMPDIR."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


def _argv(target: Path, gates: str, out: Path, cache: Path) -> list[str]:
    """certify run of some gates of a target, ci mode."""
    return certify_argv(
        "run", "--target", str(target), "--gates", gates, "--mode", "ci", "--out", str(out), "--cache-dir", str(cache)
    )


def _left_in(path: Path) -> list[str]:
    """Everything still under path, relative to it."""
    return sorted(str(item.relative_to(path)) for item in path.rglob("*"))


def _verdicts(pack: Path) -> dict[str, dict[str, Any]]:
    """Gate id -> verdict from a pack's results.json."""
    return {item["gate"]: item["verdict"] for item in json.loads((pack / "results.json").read_text())["results"]}


def _child_temp_dir(pack: Path, gate: str) -> Path:
    """The temporary directory the leaking child reported making."""
    return Path((pack / "gates" / gate / "runs" / "01-leaves-temp.stdout.txt").read_text().strip())


@pytest.mark.parametrize(("outcome", "exit_code"), [("pass", 0), ("fail", 1)])
def test_finished_run_leaves_its_tmpdir_empty(  # noqa: PLR0917 - two parameters and four fixtures
    outcome: str, exit_code: int, sleepy: Path, cache_dir: Path, tmp_path: Path, tmpdir_of_run: Path
) -> None:
    """A PASSing or FAILing gate's leftover temp files (a child's and the harness's) are gone after the run."""
    out = tmp_path / "pack"
    env = certify_env(CERTIFY_PLUGINS=LEAKY_PLUGINS, TMPDIR=str(tmpdir_of_run), LEAKY_OUTCOME=outcome)
    done = subprocess.run(
        _argv(sleepy, "ID,LEAKY", out, cache_dir), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == exit_code, done.stdout + done.stderr
    leaked = _child_temp_dir(out, "LEAKY")
    assert leaked.name.startswith("child-leak-")
    assert leaked.parent.parent.name.startswith("certify-work-")  # <work dir>/tmp/child-leak-*
    assert _left_in(tmpdir_of_run) == []


def test_timed_out_gate_leaves_its_tmpdir_empty(
    sleepy: Path, cache_dir: Path, tmp_path: Path, tmpdir_of_run: Path
) -> None:
    """A gate stopped at its timeout, its child killed mid-sleep, leaves nothing in TMPDIR."""
    out = tmp_path / "pack"
    env = certify_env(CERTIFY_PLUGINS=LEAKY_PLUGINS, TMPDIR=str(tmpdir_of_run))
    done = subprocess.run(
        _argv(sleepy, "ID,LEAKYSLOW", out, cache_dir), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert "Traceback" not in done.stdout + done.stderr
    verdict = _verdicts(out)["LEAKYSLOW"]
    assert verdict["status"] == "INCONCLUSIVE"
    assert "timed out" in verdict["reasons"][0]
    assert _left_in(tmpdir_of_run) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_its_tmpdir_empty(
    sig: signal.Signals, sleepy: Path, cache_dir: Path, tmp_path: Path, tmpdir_of_run: Path
) -> None:
    """SIGINT or SIGTERM while a gate's child holds its temp files: exit 130 and TMPDIR empty afterwards."""
    out = tmp_path / "pack"
    env = certify_env(CERTIFY_PLUGINS=LEAKY_PLUGINS, TMPDIR=str(tmpdir_of_run), LEAKY_SECONDS="60")
    proc = subprocess.Popen(
        _argv(sleepy, "ID,LEAKY", out, cache_dir),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmpdir_of_run.glob("certify-work-*/tmp/child-leak-*/left.txt")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the leaking child never started"
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert json.loads((out / "run.json").read_text())["state"] == "INCOMPLETE"
    assert _left_in(tmpdir_of_run) == []


def test_guardian_quickstart_leaves_nothing_behind(tmp_path: Path, tmpdir_of_run: Path) -> None:
    """G8 runs guardian's real quickstart (install, serve, stop): it PASSes and TMPDIR is empty afterwards.

    The run exits 3 (guardian's other required gates are not run); only G8's verdict matters here.
    """
    target = guardian_copy(tmp_path / "guardian")
    out = tmp_path / "pack"
    done = subprocess.run(
        _argv(target, "G8", out, tmp_path / "venvs"),
        env=certify_env(TMPDIR=str(tmpdir_of_run)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr
    verdict = _verdicts(out)["G8"]
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert _left_in(tmpdir_of_run) == []
