"""The healer while one of the instance's own processes is stopped holding the write lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from guardian.healing.book.processes import ProcessStopped
from guardian.healing.book.storage import write_probe
from guardian.healing.env import HealEnv, write_state
from guardian.healing.healer import Healer, HealerConfig
from guardian.healing.incidents import IncidentStore
from guardian.healing.playbooks import PlaybookRegistry
from guardian.paths import DataDir
from guardian.store import Store

# Stands in for a worker caught by SIGSTOP inside a write transaction: its command line names
# guardian and the data dir (as the instance's processes do), it commits once it runs again.
HOLDER = (
    "import sqlite3, sys, time\n"
    "c = sqlite3.connect(sys.argv[3], isolation_level=None, timeout=15)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "c.execute(\"INSERT OR REPLACE INTO settings(key, value) VALUES ('held', '1')\")\n"
    "print('locked', flush=True)\n"
    "time.sleep(0.3)\n"
    "c.execute('COMMIT')\n"
    "print('committed', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def stopped_holder(data_dir: DataDir) -> Iterator[subprocess.Popen[str]]:
    """A 'worker-0' of the data dir, SIGSTOPped while it holds the write lock."""
    Store(data_dir.db_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "guardian-worker", str(data_dir.root), data_dir.db_path],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGSTOP)
        data_dir.write_pid("worker", 0, holder.pid)
        yield holder
    finally:
        holder.kill()
        holder.wait(5)
        holder.stdout.close()


def test_stopped_worker_holding_the_write_lock_is_continued(
    data_dir: DataDir, stopped_holder: subprocess.Popen[str]
) -> None:
    """A worker stopped inside a write transaction is continued and the healed incident recorded."""
    env = HealEnv(data_dir, busy_timeout_ms=500)
    assert not write_probe(env, 50), "the stopped holder should keep the write lock"
    registry = PlaybookRegistry()
    registry.register(ProcessStopped())
    healer = Healer(env, registry, HealerConfig(tick_s=0.05))
    try:
        healer.run(max_duration_s=2.0)
        assert psutil.Process(stopped_holder.pid).status() != psutil.STATUS_STOPPED
        assert stopped_holder.stdout is not None
        assert stopped_holder.stdout.readline().strip() == "committed"
        incidents = IncidentStore(env.store()).list(playbook_id="process-stopped")
    finally:
        env.close()
    assert [incident.status for incident in incidents] == ["healed"]


def test_storeless_process_stopped_honours_the_operator_rollback_pause(data_dir: DataDir) -> None:
    """While an operator rollback's pause lasts, process-stopped leaves a stopped process alone."""
    env = HealEnv(data_dir, busy_timeout_ms=500)
    write_state(env.store(), "pause:process-stopped", time.time() + 300)
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "guardian-worker", str(data_dir.root)]
    )
    registry = PlaybookRegistry()
    registry.register(ProcessStopped())
    try:
        os.kill(sleeper.pid, signal.SIGSTOP)
        data_dir.write_pid("worker", 0, sleeper.pid)
        Healer(env, registry, HealerConfig(tick_s=0.05)).run(max_duration_s=0.5)
        assert psutil.Process(sleeper.pid).status() == psutil.STATUS_STOPPED
        assert IncidentStore(env.store()).list(playbook_id="process-stopped") == []
    finally:
        sleeper.kill()
        sleeper.wait(5)
        env.close()
