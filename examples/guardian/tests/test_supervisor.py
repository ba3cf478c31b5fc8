"""Tests of the supervisor with real (small, fake) child processes driven tick by tick."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from guardian import settings as settings_mod
from guardian.leases import LeaseManager
from guardian.paths import DataDir
from guardian.store import NewTask, Store
from guardian.supervisor import RestartPolicy, Supervisor, SupervisorConfig
from guardian.worker import worker_id_for

# A child that behaves like a healthy worker: registers and heart-beats for up to 60 s.
HEALTHY = """
import os, sys, time, pathlib
from guardian.leases import heartbeat, register_worker
from guardian.store import Store
store = Store(pathlib.Path(sys.argv[2]) / "guardian.db")
slot = int(sys.argv[3])
wid = f"worker-{slot}-{os.getpid()}"
register_worker(store, wid, slot, os.getpid())
for _ in range(600):
    heartbeat(store, wid, 15.0)
    time.sleep(0.1)
"""
SILENT = "import time\nfor _ in range(600): time.sleep(0.1)\n"  # alive, never heart-beats
CRASH = "import sys; sys.exit(3)\n"
STUBBORN = (
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "for _ in range(600): time.sleep(0.1)\n"
)

FAST = SupervisorConfig(
    hang_timeout_s=0.6,
    startup_grace_s=0.8,
    tick_s=0.02,
    settings_refresh_s=0.05,
    reap_interval_s=0.05,
    api_probe_interval_s=0.05,
    api_probe_failures=2,
    shutdown_grace_s=3.0,
    policy=RestartPolicy(
        base_s=0.05, max_s=0.2, stable_after_s=30.0, crash_loop_limit=3, crash_loop_cooldown_s=60.0
    ),
)
# FAST without hang detection, for tests that count crashes or expect children to stay up. On a
# busy machine (coverage in every child, the suite in parallel, other gates beside it) a Python
# child can take longer than FAST's 0.8 s grace to start and exit, or to send its first heartbeat,
# and would then be killed and counted as hung instead.
NO_HANG = replace(FAST, hang_timeout_s=60.0, startup_grace_s=60.0)


def scripted(data_dir: DataDir, scripts: dict[str, str]) -> Callable[[str, int], list[str]]:
    """Build ``argv_for`` running the given script per role."""

    def argv_for(role: str, index: int) -> list[str]:
        return [
            sys.executable,
            "-c",
            scripts[role],
            "guardian-fake",
            str(data_dir.root),
            str(index),
        ]

    return argv_for


def tick_until(supervisor: Supervisor, predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Drive ticks until ``predicate`` holds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        supervisor.tick()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def events(store: Store, event: str) -> int:
    """Count supervisor events of one type."""
    return int(store.read("SELECT COUNT(*) FROM supervisor_events WHERE event = ?", (event,))[0][0])


@pytest.fixture
def make_supervisor(data_dir: DataDir) -> Iterator[Callable[..., Supervisor]]:
    """Factory for supervisors that are always shut down (children reaped) after the test."""
    created: list[Supervisor] = []

    def factory(scripts: dict[str, str], workers: int = 1, **kwargs: object) -> Supervisor:
        store = Store(data_dir.db_path)
        settings_mod.save(store, {"worker_count": workers})
        store.close()
        supervisor = Supervisor(
            data_dir, scripted(data_dir, scripts), config=kwargs.pop("config", FAST), **kwargs
        )  # type: ignore[arg-type]
        created.append(supervisor)
        return supervisor

    yield factory
    for supervisor in created:
        supervisor.shutdown()


def test_backoff_doubles_and_caps() -> None:
    """Back-off is base * 2**(n-1), capped at max_s."""
    policy = RestartPolicy(base_s=0.25, max_s=2.0)
    assert [policy.backoff_s(n) for n in range(1, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert policy.backoff_s(0) == 0.25


def test_starts_api_and_workers(make_supervisor: Callable[..., Supervisor]) -> None:
    """The first tick spawns the API and the configured number of workers."""
    sup = make_supervisor({"api": SILENT, "worker": HEALTHY}, workers=2)
    sup.tick()
    assert sorted(sup.slots) == [("api", 0), ("worker", 0), ("worker", 1)]
    assert all(slot.state == "running" and slot.pid for slot in sup.slots.values())
    assert sup.store.read("SELECT COUNT(*) FROM slots WHERE state = 'running'")[0][0] == 3


def test_killed_worker_is_restarted_and_its_lease_released(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """SIGKILL of a worker: its task is re-queued at once and a restart is recorded."""
    sup = make_supervisor({"worker": HEALTHY}, workers=1, with_api=False, config=NO_HANG)
    sup.tick()
    slot = sup.slots[("worker", 0)]
    old_pid = slot.pid
    assert old_pid is not None
    task = store.submit(NewTask("compute", {}))
    assert LeaseManager(store, worker_id_for(0, old_pid)).claim() is not None
    os.kill(old_pid, signal.SIGKILL)
    assert tick_until(sup, lambda: slot.pid not in (None, old_pid), 30.0)
    assert store.get(task.id).status == "queued"
    assert events(store, "restart_crash") == 1
    assert slot.consecutive_failures == 1


def test_crash_loop_holds_slot_back(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """A child that keeps exiting at once ends in crash_loop after the limit."""
    sup = make_supervisor({"worker": CRASH}, workers=1, with_api=False, config=NO_HANG)
    slot_key = ("worker", 0)
    assert tick_until(sup, lambda: sup.slots[slot_key].state == "crash_loop", 60.0)
    assert events(store, "crash_loop") == 1
    assert events(store, "restart_crash") == FAST.policy.crash_loop_limit
    row = store.read("SELECT state FROM slots WHERE role = 'worker' AND slot = 0")
    assert row[0][0] == "crash_loop"


def test_hung_worker_is_killed_and_restarted(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """A worker that stops heart-beating is SIGKILLed and counted as a hang restart."""
    sup = make_supervisor({"worker": SILENT}, workers=1, with_api=False)
    assert tick_until(sup, lambda: events(store, "restart_hang") >= 1, 30.0)


def test_api_failing_probes_is_restarted(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """An API that fails its health probe repeatedly is killed and restarted."""
    probes: list[bool] = []

    def probe() -> bool:
        probes.append(False)
        return False

    sup = make_supervisor({"api": SILENT, "worker": HEALTHY}, workers=1, api_probe=probe)
    assert tick_until(sup, lambda: events(store, "restart_hang") >= 1, 30.0)
    assert len(probes) >= FAST.api_probe_failures


def test_healthy_api_probe_resets_failures(make_supervisor: Callable[..., Supervisor]) -> None:
    """A passing probe keeps the API running with no failures counted."""
    answers = [False, True, True, True]
    asked: list[bool] = []

    def probe() -> bool:
        asked.append(answers[len(asked)] if len(asked) < len(answers) else True)
        return asked[-1]

    sup = make_supervisor({"api": SILENT, "worker": HEALTHY}, workers=1, api_probe=probe)
    api = sup.slots[("api", 0)]
    # Until the probe has answered all four (a fixed wait saw fewer on a busy machine).
    assert tick_until(sup, lambda: len(asked) >= len(answers), 30.0)
    assert api.state == "running"
    assert api.probe_failures == 0


def test_scales_workers_to_setting(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """Raising and lowering worker_count adds and retires worker processes."""
    sup = make_supervisor({"worker": HEALTHY}, workers=1, with_api=False, config=NO_HANG)
    sup.tick()
    settings_mod.save(store, {"worker_count": 3})
    assert tick_until(sup, lambda: len([s for s in sup.slots.values() if s.pid]) == 3, 30.0)
    settings_mod.save(store, {"worker_count": 1})
    assert tick_until(sup, lambda: sorted(sup.slots) == [("worker", 0)], 30.0)
    assert events(store, "restart_crash") == 0


def test_scale_down_drops_slot_waiting_in_backoff(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """A slot above the desired count that has no process is simply removed."""
    sup = make_supervisor({"worker": CRASH}, workers=2, with_api=False, config=NO_HANG)
    assert tick_until(sup, lambda: sup.slots[("worker", 1)].state == "backoff", 30.0)
    settings_mod.save(store, {"worker_count": 1})
    assert tick_until(sup, lambda: ("worker", 1) not in sup.slots, 30.0)


def test_shutdown_kills_children_ignoring_sigterm(data_dir: DataDir) -> None:
    """Children that ignore SIGTERM are SIGKILLed after the grace period; none survive."""
    config = SupervisorConfig(shutdown_grace_s=0.5, policy=FAST.policy)
    sup = Supervisor(
        data_dir, scripted(data_dir, {"api": STUBBORN, "worker": STUBBORN}), config=config
    )
    sup.tick()
    pids = [slot.pid for slot in sup.slots.values()]
    time.sleep(0.3)
    sup.shutdown()
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_adopt_previous_stops_stale_children_and_frees_leases(
    data_dir: DataDir, store: Store
) -> None:
    """A new supervisor stops children a killed one left behind and re-queues their tasks."""
    stale = subprocess.Popen([sys.executable, "-c", SILENT, "guardian-fake", str(data_dir.root)])
    data_dir.write_pid("worker", 0, stale.pid)
    task = store.submit(NewTask("compute", {}))
    assert LeaseManager(store, worker_id_for(0, stale.pid)).claim() is not None
    sup = Supervisor(data_dir, scripted(data_dir, {"api": SILENT, "worker": HEALTHY}), config=FAST)
    sup.adopt_previous()
    assert stale.wait(timeout=10) is not None
    assert store.get(task.id).status == "queued"
    sup.shutdown()


def test_run_is_bounded_and_shuts_down(data_dir: DataDir) -> None:
    """run() with a duration ticks, then stops every child and records final slot state."""
    sup = Supervisor(data_dir, scripted(data_dir, {"api": SILENT, "worker": HEALTHY}), config=FAST)
    sup.run(max_duration_s=0.5)
    store = Store(data_dir.db_path)
    states = {row[0] for row in store.read("SELECT state FROM slots")}
    store.close()
    assert states == {"stopped"}


def test_request_stop_ends_run(data_dir: DataDir) -> None:
    """The SIGTERM handler makes run() return promptly."""
    sup = Supervisor(data_dir, scripted(data_dir, {"api": SILENT, "worker": HEALTHY}), config=FAST)
    sup.request_stop(signal.SIGTERM, None)
    started = time.monotonic()
    sup.run(max_duration_s=10)
    assert time.monotonic() - started < 5


def test_spawn_failure_goes_to_backoff(data_dir: DataDir, store: Store) -> None:
    """An unexecutable child command is treated like a crash, not a supervisor crash."""
    sup = Supervisor(
        data_dir, lambda role, index: ["/nonexistent/python"], config=FAST, with_api=False
    )
    sup.tick()
    assert sup.slots[("worker", 0)].state == "backoff"
    sup.shutdown()


def test_healer_slot_is_supervised_and_restarted(
    make_supervisor: Callable[..., Supervisor], store: Store
) -> None:
    """With the healer enabled, its child is started and restarted like any other."""
    sup = make_supervisor(
        {"worker": HEALTHY, "healer": CRASH},
        workers=1,
        with_api=False,
        with_healer=True,
        config=NO_HANG,
    )
    assert ("healer", 0) in sup.slots
    assert tick_until(sup, lambda: events(store, "restart_crash") >= 1, 30.0)
    restarted = store.read(
        "SELECT COUNT(*) FROM supervisor_events WHERE role = 'healer' AND event = 'restart_crash'"
    )
    assert restarted[0][0] >= 1
