"""Real-process tests: SIGKILL chaos during submissions, dependency outages, clean shutdown."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from guardian import tls
from guardian.procutil import is_guardian_process
from guardian.store import Store
from tests.conftest import (
    Instance,
    free_port,
    guardian_pids_in_session,
    start_instance,
    wait_for,
)

pytestmark = pytest.mark.slow


class Submitter(threading.Thread):
    """Submits tasks in a bounded loop, remembering every id that got a 201."""

    def __init__(self, base_url: str, max_seconds: float, max_tasks: int) -> None:
        """Configure the bounds of the stream."""
        super().__init__(daemon=True)
        self.base_url = base_url
        self.deadline = time.monotonic() + max_seconds
        self.max_tasks = max_tasks
        self.accepted: list[str] = []
        self.failures = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Submit until stopped, out of time or out of tasks."""
        rng = random.Random(1)
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            while (
                not self.stop_event.is_set()
                and time.monotonic() < self.deadline
                and len(self.accepted) < self.max_tasks
            ):
                kind, payload = rng.choice(
                    [("orchestrate", {"steps": 2}), ("compute", {"cost_ms": 30})]
                )
                try:
                    response = client.post("/api/tasks", json={"kind": kind, "payload": payload})
                except httpx.HTTPError:
                    self.failures += 1
                    time.sleep(0.05)
                    continue
                if response.status_code == 201:
                    self.accepted.append(response.json()["id"])
                else:
                    self.failures += 1
                time.sleep(0.02)


def kill_role(instance: Instance, role: str) -> int | None:
    """SIGKILL the process named by a pid file, if it is really one of this instance's."""
    pid = instance.pids().get(role)
    if pid is None or not is_guardian_process(pid, str(instance.data_dir.root)):
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    return pid


def all_done(store: Store, ids: list[str]) -> bool:
    """True when none of ``ids`` is still queued or running."""
    placeholders = ",".join("?" * len(ids))
    rows = store.read(
        f"SELECT COUNT(*) FROM tasks WHERE id IN ({placeholders}) "
        "AND status IN ('queued', 'running')",
        ids,
    )
    return rows[0][0] == 0


def test_sigkill_chaos_loses_nothing_and_completes_once(tmp_path: Path) -> None:
    """Random SIGKILLs of api/supervisor/workers during submissions: every 201 completes once."""
    instance = start_instance(tmp_path, workers=2)
    rng = random.Random(42)
    killed: list[tuple[str, int]] = []
    submitter = Submitter(instance.base_url, max_seconds=120, max_tasks=3000)
    try:
        submitter.start()
        for _ in range(12):
            time.sleep(rng.uniform(0.8, 2.0))
            role = rng.choice(["api-0", "supervisor-0", "worker-0", "worker-1"])
            pid = kill_role(instance, role)
            if pid is not None:
                killed.append((role, pid))
        assert wait_for(instance.ready, timeout_s=30), "instance did not recover"
        # Enough accepted work to make "every 201 completes once" mean something. How much the
        # kill window alone lets through depends on how fast the killed processes come back
        # (39 on a loaded machine): submitting continues after it until there is enough.
        assert wait_for(lambda: len(submitter.accepted) > 100, timeout_s=60), submitter.failures
        submitter.stop_event.set()
        submitter.join(timeout=10)
        store = Store(instance.data_dir.db_path)
        try:
            ids = submitter.accepted
            assert len(ids) > 100
            assert wait_for(lambda: all_done(store, ids), timeout_s=60, interval_s=0.5)
            statuses = {
                s
                for (s,) in store.read(
                    f"SELECT DISTINCT status FROM tasks WHERE id IN ({','.join('?' * len(ids))})",
                    ids,
                )
            }
            assert statuses == {"completed"}
            completed_rows = store.read("SELECT COUNT(*) FROM tasks WHERE status = 'completed'")
            counted = store.read("SELECT SUM(n) FROM task_counts WHERE event = 'completed'")
            assert counted[0][0] == completed_rows[0][0]  # no completion recorded twice
            restarts = store.read(
                "SELECT COUNT(*) FROM supervisor_events WHERE event LIKE 'restart_%'"
            )[0][0]
            assert restarts >= len({role for role, _ in killed}) >= 2
        finally:
            store.close()
    finally:
        submitter.stop_event.set()
        code = instance.stop()
    assert code == 0
    assert wait_for(lambda: not guardian_pids_in_session(instance.process.pid), 10)


def test_sigkill_of_top_process_leaves_no_orphans(tmp_path: Path) -> None:
    """Killing the keeper with SIGKILL makes supervisor, api and workers exit by themselves."""
    instance = start_instance(tmp_path, workers=2)
    session = instance.process.pid
    assert len(guardian_pids_in_session(session)) >= 5
    os.kill(instance.process.pid, signal.SIGKILL)
    instance.process.wait(timeout=5)
    assert wait_for(lambda: not guardian_pids_in_session(session), timeout_s=30)


def _serves_tls(instance: Instance) -> bool:
    """True when the instance's HTTPS listener completes a handshake."""
    port = tls.listener_port(instance.data_dir)
    if port is None:
        return False
    try:
        tls.served_certificate("127.0.0.1", port)
    except (OSError, ValueError):
        return False
    return True


def test_sigkilled_api_leaves_no_tls_staging_outside_its_data_dir(tmp_path: Path) -> None:
    """A SIGKILLed HTTPS API leaves its staged pair only in its data dir; the next API clears it."""
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    instance = start_instance(
        tmp_path, workers=1, extra_env={"TMPDIR": str(scratch)}, extra_args=["--tls"]
    )
    staging = tls.staging_dir(instance.data_dir)
    try:
        assert wait_for(lambda: _serves_tls(instance), 20)
        assert oct(staging.stat().st_mode & 0o777) == "0o700"
        first = kill_role(instance, "api-0")
        assert first is not None
        assert wait_for(
            lambda: instance.pids().get("api-0") not in (None, first) and _serves_tls(instance), 40
        )
        assert sorted(path.name for path in staging.iterdir()) == ["cert.pem", "key.pem"]
        assert list(scratch.iterdir()) == []
    finally:
        code = instance.stop()
    assert code == 0
    assert not staging.exists()
    assert list(scratch.iterdir()) == []


def test_dependency_outage_degrades_then_recovers(tmp_path: Path) -> None:
    """429/5xx/down upstream: retries, circuit opens, readyz degraded, tasks finish afterwards."""
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "guardian", "upstream", "--port", str(upstream_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    control = f"http://127.0.0.1:{upstream_port}/control"
    instance: Instance | None = None
    try:
        assert wait_for(lambda: _answers(control), timeout_s=15)
        instance = start_instance(
            tmp_path, workers=2, upstream_url=f"http://127.0.0.1:{upstream_port}"
        )
        workers_before = {k: v for k, v in instance.pids().items() if k.startswith("worker")}
        httpx.post(control, json={"mode": "429"})
        ids = [
            httpx.post(
                f"{instance.base_url}/api/tasks",
                json={"kind": "dependency", "payload": {"echo": str(i)}},
            ).json()["id"]
            for i in range(12)
        ]
        assert wait_for(lambda: _readiness(instance) == "degraded", timeout_s=30)
        httpx.post(control, json={"mode": "down"})
        time.sleep(3)
        metrics = httpx.get(f"{instance.base_url}/metrics").text
        assert 'guardian_dependency_circuit_state{dependency="upstream"} 2.0' in metrics
        assert (
            'guardian_dependency_errors_total{dependency="upstream",reason="http_429"}'
        ) in metrics
        httpx.post(control, json={"mode": "ok"})
        store = Store(instance.data_dir.db_path)
        try:
            assert wait_for(lambda: all_done(store, ids), timeout_s=60, interval_s=0.5)
            done = store.read("SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0]
            assert done == len(ids)
        finally:
            store.close()
        assert wait_for(lambda: _readiness(instance) == "ready", timeout_s=20)
        workers_after = {k: v for k, v in instance.pids().items() if k.startswith("worker")}
        assert workers_after == workers_before  # no worker died or was restarted
        assert (
            'guardian_worker_restarts_total{reason="crash",role="worker"} 0.0'
            in httpx.get(f"{instance.base_url}/metrics").text
        )
    finally:
        if instance is not None:
            assert instance.stop() == 0
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=10)


def _answers(url: str) -> bool:
    """True if ``url`` answers at all."""
    try:
        httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


def _readiness(instance: Instance) -> str:
    """Current readiness status string of the instance."""
    try:
        return str(httpx.get(f"{instance.base_url}/readyz", timeout=2.0).json()["status"])
    except (httpx.HTTPError, ValueError, KeyError):
        return "unreachable"


def test_cli_against_running_instance(tmp_path: Path) -> None:
    """status/submit work against a live instance; a second serve on its data dir exits 6."""
    instance = start_instance(tmp_path, workers=1)
    try:
        cli = [sys.executable, "-m", "guardian"]
        status = subprocess.run(
            [*cli, "status", "--url", instance.base_url, "--data-dir", str(instance.data_dir.root)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "readiness=ready" in status.stdout
        submit = subprocess.run(
            [
                *cli,
                "submit",
                "--url",
                instance.base_url,
                "--kind",
                "orchestrate",
                "--payload",
                '{"steps": 2}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert submit.returncode == 0
        assert len(submit.stdout.strip()) == 32
        rejected = subprocess.run(
            [
                *cli,
                "submit",
                "--url",
                instance.base_url,
                "--kind",
                "compute",
                "--payload",
                '{"cost_ms": -1}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert rejected.returncode == 1
        second = subprocess.run(
            [*cli, "serve", "--port", str(free_port()), "--data-dir", str(instance.data_dir.root)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 6
        assert "already serves" in second.stderr
    finally:
        assert instance.stop() == 0
