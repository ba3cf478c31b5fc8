"""Supervisor unit tests without real children: what it logs, records and persists per decision.

A fake process object stands in for ``subprocess.Popen`` so each decision (exit, hang, crash
loop, back-off reset, adoption) runs in milliseconds, and the log records' messages and
``extra`` fields, the supervisor_events rows and the slots table are checked exactly: an operator
reads those, and the release harness's mutation sampling (G1.strength) asks whether a test would
notice them change.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any, cast

import pytest

from guardian import procutil
from guardian import settings as settings_mod
from guardian.errors import StoreError
from guardian.leases import LeaseManager, register_worker
from guardian.paths import DataDir
from guardian.store import NewTask, Store
from guardian.supervisor import RestartPolicy, Slot, Supervisor, SupervisorConfig
from guardian.worker import worker_id_for

POLICY = RestartPolicy(base_s=0.5, max_s=4.0, stable_after_s=30.0, crash_loop_limit=2)
CONFIG = SupervisorConfig(
    hang_timeout_s=5.0, startup_grace_s=2.0, settings_refresh_s=1.0, reap_interval_s=1.0,
    api_probe_interval_s=1.0, api_probe_failures=2, policy=POLICY,
)  # fmt: skip


class FakeProcess:
    """Enough of subprocess.Popen for the supervisor: pid, poll, returncode, wait, kill."""

    def __init__(self, pid: int, returncode: int | None = None) -> None:
        """A process with ``pid`` that has exited with ``returncode`` (None: still running)."""
        self.pid = pid
        self.returncode = returncode
        self.killed = False

    def poll(self) -> int | None:
        """The exit code, None while running."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Return the exit code (the fake has always exited by the time it is waited for)."""
        del timeout
        self.returncode = -9 if self.returncode is None else self.returncode
        return self.returncode

    def kill(self) -> None:
        """Record the SIGKILL."""
        self.killed = True
        self.returncode = -9


def fake(pid: int, returncode: int | None = None) -> Any:
    """A FakeProcess where a Slot wants a Popen."""
    return FakeProcess(pid, returncode)


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every (pid, signal) the supervisor sends, recorded instead of sent."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(procutil, "kill_quietly", lambda pid, sig: sent.append((pid, sig)))
    return sent


@pytest.fixture
def sup(data_dir: DataDir) -> Iterator[Supervisor]:
    """A supervisor of one worker and the API whose children are never really started."""
    store = Store(data_dir.db_path)
    settings_mod.save(store, {"worker_count": 1})
    store.close()
    made = Supervisor(data_dir, lambda role, index: ["true"], config=CONFIG)
    yield made
    made.store.close()


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    """The supervisor's log records with exactly this message."""
    return [
        r for r in caplog.records if r.name == "guardian.supervisor" and r.getMessage() == message
    ]


def extra(record: logging.LogRecord, *names: str) -> dict[str, Any]:
    """The named ``extra`` fields of a log record."""
    return {name: getattr(record, name, "<missing>") for name in names}


def event_rows(store: Store) -> list[tuple[str, int, str, str]]:
    """Every supervisor_events row as (role, slot, event, detail)."""
    return [
        tuple(r)
        for r in store.read("SELECT role, slot, event, detail FROM supervisor_events ORDER BY id")
    ]


def slot_row(store: Store, role: str, index: int) -> tuple[Any, ...] | None:
    """The persisted (state, pid, consecutive_failures) of one slot, None when absent."""
    rows = store.read(
        "SELECT state, pid, consecutive_failures FROM slots WHERE role = ? AND slot = ?",
        (role, index),
    )
    return tuple(rows[0]) if rows else None


def test_a_new_supervisor_starts_idle(sup: Supervisor) -> None:
    """A fresh supervisor is neither stopping, finished nor asked to reset, and is due at once."""
    assert (sup.stopping, sup.finished, sup.reset_requested) == (False, False, False)
    assert (sup._next_settings, sup._next_reap, sup._next_probe) == (0.0, 0.0, 0.0)
    assert sorted(sup.slots) == [("api", 0)]
    assert sup.desired_workers == 1


def test_signal_handlers_log_the_signal(sup: Supervisor, caplog: pytest.LogCaptureFixture) -> None:
    """SIGTERM and SIGUSR1 each set their flag and log which signal arrived."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    sup.request_stop(signal.SIGTERM, None)
    sup.request_backoff_reset(signal.SIGUSR1, None)
    assert sup.stopping and sup.reset_requested
    (stop,) = records(caplog, "supervisor stop requested")
    (reset,) = records(caplog, "back-off reset requested")
    assert (stop.levelno, extra(stop, "signal")) == (logging.INFO, {"signal": signal.SIGTERM})
    assert (reset.levelno, extra(reset, "signal")) == (logging.INFO, {"signal": signal.SIGUSR1})


def test_reset_backoff_restarts_waiting_slots_now(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """Waiting slots are due now with no failures; each reset is recorded and logged."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    sup.slots[("worker", 0)] = Slot(
        "worker", 0, state="crash_loop", consecutive_failures=3, next_start_at=99.0
    )
    sup.slots[("worker", 1)] = Slot(
        "worker", 1, state="running", consecutive_failures=2, next_start_at=50.0
    )
    sup.slots[("worker", 2)] = Slot("worker", 2, state="running")
    sup.reset_requested = True
    assert sup.reset_backoff(10.0) == ["worker-0", "worker-1"]
    assert sup.reset_requested is False
    first, second = sup.slots[("worker", 0)], sup.slots[("worker", 1)]
    assert (first.consecutive_failures, first.next_start_at) == (0, 10.0)
    assert (second.consecutive_failures, second.next_start_at) == (0, 50.0)
    assert event_rows(sup.store) == [
        ("worker", 0, "backoff_reset", "was crash_loop after 3 consecutive failure(s)"),
        ("worker", 1, "backoff_reset", "was running after 2 consecutive failure(s)"),
    ]
    assert slot_row(sup.store, "worker", 0) == ("crash_loop", None, 0)
    assert slot_row(sup.store, "worker", 2) is None
    (logged,) = records(caplog, "restart back-off reset")
    assert (logged.levelno, extra(logged, "slots")) == (
        logging.WARNING,
        {"slots": ["worker-0", "worker-1"]},
    )


def test_tick_honours_a_requested_reset(sup: Supervisor, signals: list[tuple[int, int]]) -> None:
    """A tick after SIGUSR1 resets the slots before deciding what to start."""
    del signals
    sup.slots[("api", 0)] = Slot("api", 0, state="running", process=fake(4242), started_at=1e12)
    sup.slots[("worker", 0)] = Slot(
        "worker", 0, state="running", process=fake(4343), started_at=1e12
    )
    sup.slots[("worker", 0)].consecutive_failures = 4
    sup.reset_requested = True
    sup.tick()
    assert sup.slots[("worker", 0)].consecutive_failures == 0
    assert sup.reset_requested is False


def test_backoff_then_crash_loop_is_recorded(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """Failures wait base*2**(n-1); past the limit the slot is held back, recorded, logged."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    slot = Slot("worker", 0)
    sup.slots[("worker", 0)] = slot
    sup._schedule_restart(slot, 100.0, "crash")
    assert (slot.state, slot.next_start_at, slot.restart_reason) == ("backoff", 100.5, "crash")
    sup._schedule_restart(slot, 200.0, "hang")
    assert (slot.state, slot.next_start_at, slot.restart_reason) == ("backoff", 201.0, "hang")
    assert slot_row(sup.store, "worker", 0) == ("backoff", None, 2)
    sup._schedule_restart(slot, 300.0, "crash")
    assert (slot.state, slot.next_start_at) == ("crash_loop", 300.0 + POLICY.crash_loop_cooldown_s)
    assert slot_row(sup.store, "worker", 0) == ("crash_loop", None, 3)
    assert event_rows(sup.store) == [
        ("worker", 0, "crash_loop", "3 consecutive failures; holding back 60 s")
    ]
    (logged,) = records(caplog, "crash loop: slot held back")
    assert logged.levelno == logging.ERROR
    assert extra(logged, "role", "slot", "consecutive_failures") == {
        "role": "worker",
        "slot": 0,
        "consecutive_failures": 3,
    }


def test_dead_worker_frees_its_lease_and_row(
    sup: Supervisor, data_dir: DataDir, caplog: pytest.LogCaptureFixture
) -> None:
    """A dead worker's task is re-queued, its row marked dead, its pid file removed, all logged."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    owner = worker_id_for(0, 5151)
    register_worker(sup.store, owner, 0, 5151)
    task = sup.store.submit(NewTask("compute", {}))
    assert LeaseManager(sup.store, owner).claim() is not None
    data_dir.write_pid("worker", 0, 5151)
    slot = Slot("worker", 0, process=fake(5151, returncode=1), state="running")
    sup._after_exit(slot)
    assert slot.process is None
    assert sup.store.get(task.id).status == "queued"
    assert sup.store.read("SELECT state FROM workers WHERE worker_id = ?", (owner,))[0][0] == "dead"
    assert "worker-0" not in data_dir.read_pids()
    (logged,) = records(caplog, "re-queued tasks of dead worker")
    assert (logged.levelno, extra(logged, "owner", "count")) == (
        logging.WARNING,
        {"owner": owner, "count": 1},
    )


def test_stopped_worker_row_is_marked_stopped(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker exiting while stopping is marked stopped; with no lease none is re-queued."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    owner = worker_id_for(1, 5252)
    register_worker(sup.store, owner, 1, 5252)
    sup._after_exit(Slot("worker", 1, process=fake(5252, returncode=0), state="stopping"))
    assert (
        sup.store.read("SELECT state FROM workers WHERE worker_id = ?", (owner,))[0][0] == "stopped"
    )
    assert records(caplog, "re-queued tasks of dead worker") == []


def test_an_exited_child_drops_its_metric_shards(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead child's own pid goes to the metrics collector; a slot without one is skipped."""
    dead: list[int] = []
    monkeypatch.setattr("guardian.supervisor.metrics.mark_process_dead", dead.append)
    sup._after_exit(Slot("api", 0, process=fake(6161, returncode=0)))
    sup._after_exit(Slot("api", 0))
    assert dead == [6161]


def test_lease_release_failure_is_logged_with_the_owner(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store error while freeing a dead worker's leases is logged naming the owner, not raised."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")

    def broken(owner: str, now: float | None = None) -> int:
        raise StoreError("database is locked")

    monkeypatch.setattr(sup.leases, "release_owner", broken)
    slot = Slot("worker", 2, process=fake(5353, returncode=1))
    sup._after_exit(slot)
    assert slot.process is None
    (logged,) = records(caplog, "could not release leases of dead worker")
    assert (logged.levelno, extra(logged, "owner")) == (
        logging.ERROR,
        {"owner": worker_id_for(2, 5353)},
    )


def test_child_exit_is_logged_and_scheduled(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """A crashed child is logged with its pid, exit code and uptime, then put into back-off."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    slot = Slot("api", 0, process=fake(7171, returncode=3), state="running", started_at=10.0)
    sup.slots[("api", 0)] = slot
    sup._check_exit(slot, 12.5)
    (logged,) = records(caplog, "child exited")
    assert logged.levelno == logging.WARNING
    assert extra(logged, "role", "slot", "child_pid", "exit_code", "uptime_s") == {
        "role": "api",
        "slot": 0,
        "child_pid": 7171,
        "exit_code": 3,
        "uptime_s": 2.5,
    }
    assert (slot.state, slot.restart_reason, slot.consecutive_failures) == ("backoff", "crash", 1)


def test_a_hung_child_restarts_as_hang_and_a_stable_one_forgets_failures(sup: Supervisor) -> None:
    """An exit after a hang kill counts as hang; a stable child starts again from one failure."""
    slot = Slot("api", 0, process=fake(7272, returncode=-9), state="running", started_at=0.0)
    slot.killed_for_hang, slot.consecutive_failures = True, 5
    sup.slots[("api", 0)] = slot
    sup._check_exit(slot, POLICY.stable_after_s)
    assert (slot.restart_reason, slot.consecutive_failures, slot.state) == ("hang", 1, "backoff")


def test_a_retired_worker_leaves_no_slot(sup: Supervisor, caplog: pytest.LogCaptureFixture) -> None:
    """A worker exiting while stopping leaves the slots and their table, logged as retired."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    slot = Slot("worker", 3, process=fake(7373, returncode=0), state="stopping")
    sup.slots[("worker", 3)] = slot
    sup._persist_slot(slot)
    sup._check_exit(slot, 5.0)
    assert ("worker", 3) not in sup.slots
    assert slot_row(sup.store, "worker", 3) is None
    (logged,) = records(caplog, "child retired")
    assert extra(logged, "role", "slot") == {"role": "worker", "slot": 3}
    assert records(caplog, "child exited") == []


def test_a_running_child_is_left_alone(sup: Supervisor) -> None:
    """A child still running (poll None) is neither handled as exited nor rescheduled."""
    slot = Slot("api", 0, process=fake(7474), state="running")
    sup._check_exit(slot, 5.0)
    assert (slot.state, slot.consecutive_failures, slot.pid) == ("running", 0, 7474)


def test_hung_child_is_killed_and_logged(
    sup: Supervisor, signals: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    """A hang kill sends SIGKILL to that child and logs role, slot, pid and why."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    slot = Slot("worker", 0, process=fake(8181), state="running")
    sup._kill_hung(slot, "heartbeat older than hang timeout")
    assert signals == [(8181, signal.SIGKILL)]
    assert slot.killed_for_hang is True
    (logged,) = records(caplog, "child hung; killing")
    assert logged.levelno == logging.ERROR
    assert extra(logged, "role", "slot", "child_pid", "reason") == {
        "role": "worker",
        "slot": 0,
        "child_pid": 8181,
        "reason": "heartbeat older than hang timeout",
    }


def test_stale_heartbeat_is_a_hang_only_after_the_grace(
    sup: Supervisor, signals: list[tuple[int, int]]
) -> None:
    """A worker with no heartbeat row is killed once the startup grace has passed, not before."""
    slot = Slot("worker", 0, process=fake(8282), state="running", started_at=100.0)
    sup.slots[("worker", 0)] = slot
    sup._check_hangs(100.0 + CONFIG.startup_grace_s - 0.01)
    assert signals == []
    sup._check_hangs(100.0 + CONFIG.startup_grace_s)
    assert signals == [(8282, signal.SIGKILL)]


def test_fresh_heartbeat_is_no_hang(sup: Supervisor, signals: list[tuple[int, int]]) -> None:
    """A worker whose heartbeat row is recent is not killed."""
    register_worker(sup.store, worker_id_for(0, 8383), 0, 8383)
    sup.slots[("worker", 0)] = Slot(
        "worker", 0, process=fake(8383), state="running", started_at=0.0
    )
    sup._check_hangs(1e9)
    assert signals == []


def test_api_probe_counts_failures_then_kills(
    sup: Supervisor, signals: list[tuple[int, int]]
) -> None:
    """The API is probed once per interval after its grace; enough failures in a row kill it."""
    answers: list[bool] = []

    def failing() -> bool:
        answers.append(False)
        return False

    sup.api_probe = failing
    api = Slot("api", 0, process=fake(9191), state="running", started_at=0.0)
    sup.slots[("api", 0)] = api
    sup._check_hangs(1.0)  # within the 2 s grace
    assert answers == []
    sup._check_hangs(10.0)
    sup._check_hangs(10.5)  # within the probe interval
    assert (len(answers), api.probe_failures, signals) == (1, 1, [])
    sup._check_hangs(11.0)
    assert (len(answers), api.probe_failures, signals) == (2, 2, [(9191, signal.SIGKILL)])
    sup._check_hangs(20.0)  # already killed for the hang: not probed again
    assert len(answers) == 2


def test_a_passing_probe_clears_the_failures(
    sup: Supervisor, signals: list[tuple[int, int]]
) -> None:
    """One good answer resets the API's failure count."""
    sup.api_probe = lambda: True
    api = Slot("api", 0, process=fake(9292), state="running", started_at=0.0, probe_failures=1)
    sup.slots[("api", 0)] = api
    sup._check_hangs(10.0)
    assert (api.probe_failures, signals) == (0, [])


def test_start_passes_the_parent_pid_and_logs(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart gets the supervisor's pid in its environment, is recorded and logged."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    spawned: list[tuple[list[str], dict[str, str]]] = []

    def popen(argv: list[str], env: dict[str, str]) -> FakeProcess:
        spawned.append((argv, env))
        return FakeProcess(9393)

    monkeypatch.setattr("guardian.supervisor.subprocess.Popen", popen)
    slot = Slot("worker", 1, restart_reason="crash", consecutive_failures=2, probe_failures=1)
    slot.killed_for_hang = True
    sup._start(slot, 40.0)
    ((argv, env),) = spawned
    assert argv == ["true"]
    assert env[procutil.PARENT_PID_ENV] == str(os.getpid())
    assert (slot.state, slot.started_at, slot.restart_reason) == ("running", 40.0, None)
    assert (slot.probe_failures, slot.killed_for_hang) == (0, False)
    assert event_rows(sup.store) == [
        ("worker", 1, "restart_crash", "pid 9393 after 2 consecutive failure(s)")
    ]
    assert slot_row(sup.store, "worker", 1) == ("running", 9393, 2)
    (logged,) = records(caplog, "child started")
    assert extra(logged, "role", "slot", "child_pid") == {
        "role": "worker",
        "slot": 1,
        "child_pid": 9393,
    }


def test_spawn_failure_is_logged_and_backs_off(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An OSError from Popen is logged with role and slot and treated as a crash."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")

    def popen(argv: list[str], env: dict[str, str]) -> FakeProcess:
        raise OSError("exec format error")

    monkeypatch.setattr("guardian.supervisor.subprocess.Popen", popen)
    slot = Slot("worker", 4)
    sup._start(slot, 1.0)
    (logged,) = records(caplog, "spawn failed")
    assert (logged.levelno, extra(logged, "role", "slot")) == (
        logging.ERROR,
        {"role": "worker", "slot": 4},
    )
    assert (slot.state, slot.restart_reason, slot.process) == ("backoff", "crash", None)


def test_store_errors_while_recording_are_logged(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing event or slot write is logged naming the event or role, never raised."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")

    def locked() -> Any:
        raise StoreError("database is locked")

    monkeypatch.setattr(sup.store, "write", locked)
    slot = Slot("healer", 0)
    sup._record_event(slot, "crash_loop", "detail")
    sup._persist_slot(slot)
    (event,) = records(caplog, "could not record supervisor event")
    (persist,) = records(caplog, "could not persist slot state")
    assert (event.levelno, extra(event, "event")) == (logging.ERROR, {"event": "crash_loop"})
    assert (persist.levelno, extra(persist, "role")) == (logging.ERROR, {"role": "healer"})


def test_delete_removes_only_that_slot_row(sup: Supervisor) -> None:
    """Deleting a slot's row keeps the other slots' rows."""
    sup._persist_slot(Slot("worker", 0, state="running"))
    sup._persist_slot(Slot("worker", 1, state="backoff"))
    sup._persist_slot(Slot("worker", 0), delete=True)
    assert slot_row(sup.store, "worker", 0) is None
    assert slot_row(sup.store, "worker", 1) == ("backoff", None, 0)


def test_adopt_previous_kills_only_guardian_children(
    sup: Supervisor,
    data_dir: DataDir,
    signals: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stale api/worker/healer pids get SIGTERM, stragglers SIGKILL; leases freed; logged."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    for name, pid in (
        ("api", 101),
        ("worker", 102),
        ("healer", 103),
        ("keeper", 104),
        ("supervisor", 105),
    ):
        data_dir.write_pid(name, 0, pid)
    data_dir.write_pid("worker", 1, os.getpid())
    monkeypatch.setattr(procutil, "is_guardian_process", lambda pid, root: pid != 103)
    monkeypatch.setattr(
        procutil, "wait_gone", lambda pids, timeout_s: [p for p in pids if p == 102]
    )
    owner = worker_id_for(0, 102)
    task = sup.store.submit(NewTask("compute", {}))
    assert LeaseManager(sup.store, owner).claim() is not None
    sup.adopt_previous()
    assert signals == [(101, signal.SIGTERM), (102, signal.SIGTERM), (102, signal.SIGKILL)]
    assert sup.store.get(task.id).status == "queued"
    (stale,) = records(caplog, "stale child ignored SIGTERM; killing")
    assert (stale.levelno, extra(stale, "child_pid")) == (logging.WARNING, {"child_pid": 102})
    (adopted,) = records(caplog, "adopted previous run")
    assert extra(adopted, "stale_children", "released_tasks") == {
        "stale_children": [101, 102],
        "released_tasks": 1,
    }


def test_adopt_previous_reports_freed_leases_without_stale_children(
    sup: Supervisor, signals: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    """Leases left running by a previous run are freed and logged even when no child is left."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    sup.store.submit(NewTask("compute", {}))
    assert LeaseManager(sup.store, "worker-0-1").claim() is not None
    sup.adopt_previous()
    assert signals == []
    (adopted,) = records(caplog, "adopted previous run")
    assert extra(adopted, "stale_children", "released_tasks") == {
        "stale_children": [],
        "released_tasks": 1,
    }


def test_adopt_previous_says_nothing_when_nothing_was_left(
    sup: Supervisor, signals: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    """With no stale child and no running lease there is nothing to log."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    sup.adopt_previous()
    assert (signals, records(caplog, "adopted previous run")) == ([], [])


def test_tick_logs_failing_reaping_and_settings(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store error while reaping or reading settings is logged and the tick goes on."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(sup.leases, "reap_expired", broken)
    monkeypatch.setattr(settings_mod, "load", broken)
    monkeypatch.setattr("guardian.supervisor.subprocess.Popen", lambda argv, env: FakeProcess(1234))
    sup.tick()
    assert [r.levelno for r in records(caplog, "lease reaping failed")] == [logging.ERROR]
    assert [r.levelno for r in records(caplog, "cannot read settings; keeping worker count")] == [
        logging.ERROR
    ]
    assert sup.desired_workers == 1


def test_settings_are_reread_once_per_interval(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed worker_count is picked up and logged, and not reread within the interval."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    reads: list[int] = []
    real_load = settings_mod.load

    def counting(store: Store) -> Any:
        reads.append(1)
        return real_load(store)

    settings_mod.save(sup.store, {"worker_count": 3})
    monkeypatch.setattr(settings_mod, "load", counting)
    sup._refresh_settings(50.0)
    sup._refresh_settings(50.0 + CONFIG.settings_refresh_s - 0.01)
    assert (len(reads), sup.desired_workers, sup._next_settings) == (1, 3, 51.0)
    (logged,) = records(caplog, "scaling workers")
    assert extra(logged, "from", "to") == {"from": 1, "to": 3}


def test_shutdown_kills_stragglers_and_logs(
    sup: Supervisor,
    signals: list[tuple[int, int]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown SIGTERMs each child, SIGKILLs one that outlives the grace, and logs both."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")

    class Stubborn(FakeProcess):
        """Ignores SIGTERM: the first wait times out."""

        def wait(self, timeout: float | None = None) -> int:
            if not self.killed:
                raise subprocess.TimeoutExpired("child", timeout or 0)
            return -9

    stubborn = Stubborn(4545)
    sup.slots[("api", 0)] = Slot("api", 0, process=cast(Any, stubborn), state="running")
    sup.shutdown()
    assert signals == [(4545, signal.SIGTERM)]
    assert stubborn.killed
    (killed,) = records(caplog, "child ignored SIGTERM; killing")
    assert extra(killed, "role", "child_pid") == {"role": "api", "child_pid": 4545}
    (stopped,) = records(caplog, "supervisor stopped")
    assert extra(stopped, "children") == {"children": 1}
    reopened = Store(sup.data_dir.db_path)
    assert slot_row(reopened, "api", 0) == ("stopped", None, 0)
    reopened.close()


def test_kill_quietly_refuses_a_pid_that_means_a_group(caplog: pytest.LogCaptureFixture) -> None:
    """A pid of 0 or below would signal a whole process group: refused and logged, none sent."""
    caplog.set_level(logging.INFO, logger="guardian.proc")
    procutil.kill_quietly(0, 0)
    procutil.kill_quietly(-1, 0)
    refused = [r.getMessage() for r in caplog.records if r.name == "guardian.proc"]
    assert refused == ["refusing to signal pid 0", "refusing to signal pid -1"]


def test_a_child_already_killed_for_a_hang_is_not_killed_again(
    sup: Supervisor, signals: list[tuple[int, int]]
) -> None:
    """A stale worker already SIGKILLed for a hang waits for its exit: no second kill."""
    slot = Slot("worker", 0, process=fake(8484), state="running", started_at=0.0)
    slot.killed_for_hang = True
    sup.slots[("worker", 0)] = slot
    sup._check_hangs(1e9)
    assert signals == []


def test_scale_down_signals_a_surplus_worker_once_and_drops_an_idle_one(
    sup: Supervisor, signals: list[tuple[int, int]]
) -> None:
    """Above the desired count a running worker gets one SIGTERM; an idle one is deleted."""
    running = Slot("worker", 1, process=fake(8585), state="running")
    idle = Slot("worker", 2, state="backoff")
    sup.slots.update(
        {("worker", 0): Slot("worker", 0), ("worker", 1): running, ("worker", 2): idle}
    )
    sup._persist_slot(idle)
    sup._scale()
    sup._scale()
    assert signals == [(8585, signal.SIGTERM)]
    assert running.state == "stopping"
    assert ("worker", 2) not in sup.slots
    assert slot_row(sup.store, "worker", 2) is None


def test_reset_backoff_starts_a_slot_in_backoff_now(sup: Supervisor) -> None:
    """A slot waiting out an ordinary back-off is due at once after a reset."""
    sup.slots[("worker", 0)] = Slot(
        "worker", 0, state="backoff", consecutive_failures=1, next_start_at=9.0
    )
    assert sup.reset_backoff(2.0) == ["worker-0"]
    assert sup.slots[("worker", 0)].next_start_at == 2.0


def test_leases_are_reaped_once_per_interval(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ticks within the reap interval reap expired leases only once."""
    reaps: list[int] = []

    def reap() -> int:
        reaps.append(1)
        return 0

    monkeypatch.setattr(sup.leases, "reap_expired", reap)
    monkeypatch.setattr("guardian.supervisor.subprocess.Popen", lambda argv, env: FakeProcess(1235))
    sup.clock = lambda: 500.0
    sup.tick()
    sup.tick()
    assert (len(reaps), sup._next_reap) == (1, 500.0 + CONFIG.reap_interval_s)


def test_shutdown_waits_no_longer_than_the_grace(
    sup: Supervisor, signals: list[tuple[int, int]]
) -> None:
    """Each child is waited for at most the shutdown grace, and a killed straggler at most 5 s."""
    del signals
    waited: list[float | None] = []

    class Recording(FakeProcess):
        """Times out on the first wait and records every timeout it is given."""

        def wait(self, timeout: float | None = None) -> int:
            waited.append(timeout)
            if not self.killed:
                raise subprocess.TimeoutExpired("child", timeout or 0)
            return -9

    sup.slots[("api", 0)] = Slot("api", 0, process=cast(Any, Recording(4646)), state="running")
    sup.shutdown()
    first, second = waited
    assert first is not None and 0.0 <= first <= CONFIG.shutdown_grace_s
    assert second == 5


def test_an_api_that_is_not_running_is_not_probed(sup: Supervisor) -> None:
    """An API slot that is stopping is left alone by the health probe."""
    asked: list[bool] = []

    def probe() -> bool:
        asked.append(True)
        return False

    sup.api_probe = probe
    sup.slots[("api", 0)] = Slot("api", 0, process=fake(9494), state="stopping", started_at=0.0)
    sup._check_hangs(100.0)
    assert asked == []


def test_a_stale_worker_is_killed_naming_the_heartbeat(
    sup: Supervisor, signals: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    """The hang kill of a worker without a fresh heartbeat gives that as its reason."""
    caplog.set_level(logging.INFO, logger="guardian.supervisor")
    sup.slots[("worker", 0)] = Slot(
        "worker", 0, process=fake(8686), state="running", started_at=0.0
    )
    sup._check_hangs(100.0)
    assert signals == [(8686, signal.SIGKILL)]
    (logged,) = records(caplog, "child hung; killing")
    assert extra(logged, "reason") == {"reason": "heartbeat older than hang timeout"}


def test_a_crash_loop_slot_starts_again_once_its_cool_down_ends(
    sup: Supervisor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot held back in crash_loop is started by the first tick at or after next_start_at."""
    monkeypatch.setattr("guardian.supervisor.subprocess.Popen", lambda argv, env: FakeProcess(1236))
    sup.slots[("api", 0)] = Slot(
        "api", 0, state="crash_loop", next_start_at=10.0, restart_reason="crash"
    )
    sup.clock = lambda: 9.0
    sup.tick()
    assert sup.slots[("api", 0)].state == "crash_loop"
    sup.clock = lambda: 10.0
    sup.tick()
    assert (sup.slots[("api", 0)].state, sup.slots[("api", 0)].pid) == ("running", 1236)
