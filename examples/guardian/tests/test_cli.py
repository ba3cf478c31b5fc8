"""Tests of the CLI entry point run as real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port


def run_cli(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``python -m guardian`` with arguments and capture output."""
    return subprocess.run(
        [sys.executable, "-m", "guardian", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.parametrize(
    "command", ["serve", "worker", "upstream", "status", "submit", "supervisor", "api"]
)
def test_help_for_every_command(command: str) -> None:
    """Every sub-command prints help with the exit-code table and exits 0."""
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "exit codes:" in result.stdout
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2() -> None:
    """Missing required flags exit with code 2 and no traceback."""
    result = run_cli("submit", "--kind", "compute")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert run_cli("status").returncode == 2


def test_status_and_submit_unreachable_exit_5() -> None:
    """Talking to a port nobody listens on exits 5 with a one-line error."""
    url = f"http://127.0.0.1:{free_port()}"
    status = run_cli("status", "--url", url)
    assert status.returncode == 5
    submit = run_cli("submit", "--url", url, "--kind", "compute")
    assert submit.returncode == 5
    assert "Traceback" not in submit.stderr


def test_submit_bad_payload_exit_2() -> None:
    """An invalid --payload is a usage error."""
    result = run_cli("submit", "--url", "http://127.0.0.1:9", "--kind", "compute", "--payload", "{")
    assert result.returncode == 2


def test_status_from_data_dir(tmp_path: Path) -> None:
    """Status --data-dir reports pid files (alive or not) as JSON."""
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "worker-0.pid").write_text("999999\n")
    result = run_cli("status", "--data-dir", str(tmp_path), "--json")
    assert result.returncode == 0
    assert '"alive": false' in result.stdout
    text = run_cli("status", "--data-dir", str(tmp_path))
    assert "worker-0: pid 999999 gone" in text.stdout


def test_serve_rejects_bad_worker_count(tmp_path: Path) -> None:
    """--workers outside 1-16 exits 2 before starting anything."""
    result = run_cli("serve", "--data-dir", str(tmp_path), "--port", "1", "--workers", "0")
    assert result.returncode == 2
