"""Shared fixtures: temporary data dirs, stores, and real guardian instances on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from guardian.paths import DataDir
from guardian.store import Store


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the modules that start real guardian processes first; file order otherwise.

    Under ``-n 4 --dist loadfile --no-loadscope-reorder`` (certify.toml) each of those long
    modules then starts on a worker of its own at once instead of queueing behind short ones
    (xdist's default reorder sorts modules by test count, and test_real_processes has 5 tests).
    A module stays on one worker in file order: the healing modules share one instance.
    """
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    """A fresh, created data directory."""
    directory = DataDir(tmp_path / "data")
    directory.ensure()
    return directory


@pytest.fixture
def store(data_dir: DataDir) -> Iterator[Store]:
    """A store on a fresh database."""
    opened = Store(data_dir.db_path)
    yield opened
    opened.close()


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: object, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate()`` until true or the timeout passes (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval_s)
    return False


@dataclass
class Instance:
    """A running ``guardian serve`` started by a test."""

    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: DataDir
    output: Path

    def pids(self) -> dict[str, int]:
        """Current pid files of the instance."""
        return self.data_dir.read_pids()

    def ready(self) -> bool:
        """True when /readyz answers 200."""
        try:
            return httpx.get(f"{self.base_url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout_s: float = 40.0) -> int:
        """SIGTERM the keeper by pid and wait; SIGKILL the group only as a last resort."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return int(self.process.returncode)


def start_instance(
    tmp_path: Path,
    workers: int = 2,
    upstream_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> Instance:
    """Start ``python -m guardian serve`` in its own session and wait until ready."""
    port = free_port()
    data_dir = DataDir(tmp_path / f"instance-{port}")
    output = tmp_path / f"serve-{port}.out"
    argv = [
        sys.executable,
        "-m",
        "guardian",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir.root),
        "--workers",
        str(workers),
    ]
    if upstream_url:
        argv += ["--upstream-url", upstream_url]
    argv += extra_args or []
    env = {**os.environ, **(extra_env or {})}
    with output.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=sink, env=env, start_new_session=True)
    instance = Instance(process, f"http://127.0.0.1:{port}", data_dir, output)
    if not wait_for(instance.ready, timeout_s=45):
        instance.stop()
        raise AssertionError(f"instance not ready; output:\n{output.read_text()[-3000:]}")
    return instance


def guardian_pids_in_session(session_id: int) -> list[int]:
    """Return pids of live processes in a session (to prove no orphans are left)."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found
