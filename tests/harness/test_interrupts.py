"""The CLI's startup interrupt handling and its last step (harness.interrupts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.interrupts import deferred

CAUGHT_INSIDE_EXEC = """
import sys
from harness.interrupts import exit_now
try:
    exec("raise KeyboardInterrupt")
except KeyboardInterrupt:
    pass
{last}
"""


def test_a_signal_inside_the_block_is_raised_when_it_ends() -> None:
    """A SIGTERM inside `deferred()` raises nothing there, and KeyboardInterrupt once the block ends."""
    before = signal.getsignal(signal.SIGTERM)
    seen_inside: list[int] = []

    def block() -> None:
        with deferred() as noted:
            os.kill(os.getpid(), signal.SIGTERM)
            seen_inside.extend(noted)

    with pytest.raises(KeyboardInterrupt):
        block()
    assert seen_inside == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_quiet_block_raises_nothing_and_restores_the_handlers() -> None:
    """Without a signal the block is transparent and the earlier handlers are back after it."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with deferred() as noted:
        pass
    assert noted == []
    assert {sig: signal.getsignal(sig) for sig in before} == before


@pytest.mark.parametrize(("last", "expected"), [("sys.exit(130)", -signal.SIGINT), ("exit_now(130)", 130)])
def test_exit_now_keeps_the_code_a_caught_interrupt_would_lose(last: str, expected: int, tmp_path: Path) -> None:
    """Run with -m after a KeyboardInterrupt caught from exec(), sys.exit dies by SIGINT (3.11), exit_now does not."""
    (tmp_path / "caught_inside_exec.py").write_text(CAUGHT_INSIDE_EXEC.format(last=last))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "caught_inside_exec"], check=False, capture_output=True, text=True, timeout=60, env=env
    )
    if last.startswith("sys.exit") and proc.returncode == 130:
        pytest.skip("this interpreter no longer keeps the flag; exit_now is still correct")
    assert proc.returncode == expected, proc.stderr
