"""The supervisor: keeps the API process and N worker processes running.

It restarts a child (API, workers, and with ``--healer`` the healer) that exits
unexpectedly (crash, SIGKILL) or stops heart-beating (hang),
with exponential back-off; a slot that keeps dying young is held back as ``crash_loop`` for a
cool-down instead of being restarted in a tight loop. It scales workers to the persisted
``worker_count`` setting, re-queues the leases of dead workers at once, reaps expired leases,
and records every restart in the database (the source of ``guardian_worker_restarts_total``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from guardian import metrics, procutil
from guardian import settings as settings_mod
from guardian.errors import StoreError
from guardian.leases import LeaseManager, mark_worker, prune_workers
from guardian.paths import DataDir
from guardian.store import Store
from guardian.worker import worker_id_for

log = logging.getLogger("guardian.supervisor")


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off and crash-loop rules shared by the supervisor and the keeper."""

    base_s: float = 0.25
    max_s: float = 15.0
    stable_after_s: float = 10.0
    crash_loop_limit: int = 8
    crash_loop_cooldown_s: float = 60.0

    def backoff_s(self, consecutive_failures: int) -> float:
        """Delay before restart number ``consecutive_failures`` (1-based): base * 2**(n-1)."""
        exponent = max(0, consecutive_failures - 1)
        return float(min(self.max_s, self.base_s * (2 ** min(exponent, 30))))


@dataclass
class Slot:
    """Supervision state of one child: ``api``/0 or ``worker``/n."""

    role: str
    index: int
    process: subprocess.Popen[bytes] | None = None
    state: str = "pending"  # pending, running, backoff, crash_loop, stopping
    started_at: float = 0.0
    next_start_at: float = 0.0
    consecutive_failures: int = 0
    restart_reason: str | None = None
    probe_failures: int = 0
    killed_for_hang: bool = False

    @property
    def pid(self) -> int | None:
        """Pid of the current process, if one is running."""
        return self.process.pid if self.process is not None else None


@dataclass(frozen=True)
class SupervisorConfig:
    """Tunables of the supervisor (defaults suit the reference machine)."""

    hang_timeout_s: float = 10.0
    startup_grace_s: float = 15.0
    tick_s: float = 0.1
    settings_refresh_s: float = 1.0
    reap_interval_s: float = 1.0
    api_probe_interval_s: float = 2.0
    api_probe_failures: int = 3
    shutdown_grace_s: float = 10.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)


class Supervisor:
    """Owns the child processes of one guardian instance."""

    def __init__(
        self,
        data_dir: DataDir,
        argv_for: Callable[[str, int], list[str]],
        config: SupervisorConfig | None = None,
        api_probe: Callable[[], bool] | None = None,
        with_api: bool = True,
        clock: Callable[[], float] = time.monotonic,
        with_healer: bool = False,
    ) -> None:
        """Set up slots; ``argv_for(role, index)`` gives each child's command line."""
        self.data_dir = data_dir
        self.argv_for = argv_for
        self.config = config or SupervisorConfig()
        self.api_probe = api_probe
        self.clock = clock
        self.store = Store(data_dir.db_path)
        self.leases = LeaseManager(self.store, "supervisor")
        self.slots: dict[tuple[str, int], Slot] = {}
        if with_api:
            self.slots[("api", 0)] = Slot("api", 0)
        if with_healer:
            self.slots[("healer", 0)] = Slot("healer", 0)
        self.desired_workers = settings_mod.load(self.store).worker_count
        self.stopping = False
        self.finished = False
        self.reset_requested = False
        self._next_settings = 0.0
        self._next_reap = 0.0
        self._next_probe = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self, signum: int = signal.SIGTERM, frame: object = None) -> None:
        """Signal handler: begin graceful shutdown at the next tick."""
        del frame
        log.info("supervisor stop requested", extra={"signal": signum})
        self.stopping = True

    def request_backoff_reset(self, signum: int = signal.SIGUSR1, frame: object = None) -> None:
        """Signal handler (SIGUSR1): forget restart histories at the next tick."""
        del frame
        log.info("back-off reset requested", extra={"signal": signum})
        self.reset_requested = True

    def reset_backoff(self, now: float) -> list[str]:
        """Clear every slot's failure count; start slots in back-off or crash loop now.

        Used once the cause of a crash loop is fixed: the slot restarts at once instead of
        sitting out its cool-down, and a new failure starts from the shortest back-off again.
        """
        self.reset_requested = False
        reset = []
        for slot in self.slots.values():
            waiting = slot.state in {"backoff", "crash_loop"}
            if not waiting and slot.consecutive_failures == 0:
                continue
            detail = f"was {slot.state} after {slot.consecutive_failures} consecutive failure(s)"
            slot.consecutive_failures = 0
            if waiting:
                slot.next_start_at = now
            self._record_event(slot, "backoff_reset", detail)
            self._persist_slot(slot)
            reset.append(f"{slot.role}-{slot.index}")
        log.warning("restart back-off reset", extra={"slots": reset})
        return reset

    def run(self, max_duration_s: float | None = None) -> None:
        """Tick until stopped (or ``max_duration_s`` passes), then shut the children down."""
        started = self.clock()
        self.adopt_previous()
        while not self.stopping:
            if max_duration_s is not None and self.clock() - started > max_duration_s:
                break
            self.tick()
            time.sleep(self.config.tick_s)
        self.shutdown()

    def adopt_previous(self) -> None:
        """Stop children a previous (killed) supervisor left behind and free their leases."""
        stale = [
            pid
            for name, pid in self.data_dir.read_pids().items()
            if name.split("-")[0] in {"api", "worker", "healer"}
            and pid != os.getpid()
            and procutil.is_guardian_process(pid, str(self.data_dir.root))
        ]
        for pid in stale:
            procutil.kill_quietly(pid, signal.SIGTERM)
        for pid in procutil.wait_gone(stale, timeout_s=8.0):
            log.warning("stale child ignored SIGTERM; killing", extra={"child_pid": pid})
            procutil.kill_quietly(pid, signal.SIGKILL)
        owners = self.store.read("SELECT DISTINCT lease_owner FROM tasks WHERE status = 'running'")
        released = sum(self.leases.release_owner(owner) for (owner,) in owners if owner)
        if stale or released:
            log.info(
                "adopted previous run", extra={"stale_children": stale, "released_tasks": released}
            )

    def tick(self) -> None:
        """One supervision pass: exits, hangs, scaling, due starts, lease reaping."""
        now = self.clock()
        if self.reset_requested:
            self.reset_backoff(now)
        self._refresh_settings(now)
        self._scale()
        for slot in list(self.slots.values()):
            self._check_exit(slot, now)
        self._check_hangs(now)
        for slot in list(self.slots.values()):
            if slot.state in {"pending", "backoff", "crash_loop"} and now >= slot.next_start_at:
                self._start(slot, now)
        if now >= self._next_reap:
            self._next_reap = now + self.config.reap_interval_s
            try:
                self.leases.reap_expired()
            except StoreError:
                log.exception("lease reaping failed")

    def shutdown(self) -> None:
        """SIGTERM every child, wait for the grace period, SIGKILL stragglers, free leases."""
        if self.finished:
            return
        running = [s for s in self.slots.values() if s.process is not None]
        for slot in running:
            slot.state = "stopping"
            procutil.kill_quietly(slot.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + self.config.shutdown_grace_s
        for slot in running:
            assert slot.process is not None
            try:
                slot.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "child ignored SIGTERM; killing",
                    extra={"role": slot.role, "child_pid": slot.pid},
                )
                slot.process.kill()
                slot.process.wait(timeout=5)
            self._after_exit(slot)
            slot.state = "stopped"
            self._persist_slot(slot)
        self.finished = True
        log.info("supervisor stopped", extra={"children": len(running)})
        self.store.close()

    # -- internals ---------------------------------------------------------------------------

    def _refresh_settings(self, now: float) -> None:
        """Re-read worker_count (the UI may have changed it)."""
        if now < self._next_settings:
            return
        self._next_settings = now + self.config.settings_refresh_s
        try:
            desired = settings_mod.load(self.store).worker_count
        except StoreError:
            log.exception("cannot read settings; keeping worker count")
            return
        if desired != self.desired_workers:
            log.info("scaling workers", extra={"from": self.desired_workers, "to": desired})
            self.desired_workers = desired

    def _scale(self) -> None:
        """Add missing worker slots; stop (or drop) slots above the desired count."""
        for index in range(self.desired_workers):
            if ("worker", index) not in self.slots:
                self.slots[("worker", index)] = Slot("worker", index)
        for (role, index), slot in list(self.slots.items()):
            if role != "worker" or index < self.desired_workers or slot.state == "stopping":
                continue
            if slot.process is None:
                del self.slots[(role, index)]
                self._persist_slot(slot, delete=True)
            else:
                slot.state = "stopping"
                procutil.kill_quietly(slot.process.pid, signal.SIGTERM)

    def _start(self, slot: Slot, now: float) -> None:
        """Spawn the child of ``slot`` (counted as a restart unless it is the first start)."""
        env = dict(os.environ)
        env[procutil.PARENT_PID_ENV] = str(os.getpid())
        argv = self.argv_for(slot.role, slot.index)
        try:
            slot.process = subprocess.Popen(argv, env=env)  # noqa: S603 - argv list we built
        except OSError:
            log.exception("spawn failed", extra={"role": slot.role, "slot": slot.index})
            self._schedule_restart(slot, now, "crash")
            return
        if slot.restart_reason is not None:
            self._record_event(
                slot,
                f"restart_{slot.restart_reason}",
                f"pid {slot.process.pid} after {slot.consecutive_failures} consecutive failure(s)",
            )
        slot.state, slot.started_at, slot.restart_reason = "running", now, None
        slot.probe_failures, slot.killed_for_hang = 0, False
        log.info(
            "child started",
            extra={"role": slot.role, "slot": slot.index, "child_pid": slot.process.pid},
        )
        self._persist_slot(slot)

    def _check_exit(self, slot: Slot, now: float) -> None:
        """Handle a child that has exited since the last tick."""
        if slot.process is None or slot.process.poll() is None:
            return
        code = slot.process.returncode
        pid = slot.process.pid
        reason = "hang" if slot.killed_for_hang else "crash"
        self._after_exit(slot)
        if slot.state == "stopping":
            del self.slots[(slot.role, slot.index)]
            self._persist_slot(slot, delete=True)
            log.info("child retired", extra={"role": slot.role, "slot": slot.index})
            return
        log.warning(
            "child exited",
            extra={
                "role": slot.role,
                "slot": slot.index,
                "child_pid": pid,
                "exit_code": code,
                "uptime_s": round(now - slot.started_at, 3),
            },
        )
        if now - slot.started_at >= self.config.policy.stable_after_s:
            slot.consecutive_failures = 0
        self._schedule_restart(slot, now, reason)

    def _schedule_restart(self, slot: Slot, now: float, reason: str) -> None:
        """Put ``slot`` into back-off, or into crash-loop cool-down past the limit."""
        policy = self.config.policy
        slot.consecutive_failures += 1
        slot.restart_reason = reason
        if slot.consecutive_failures > policy.crash_loop_limit:
            slot.state = "crash_loop"
            slot.next_start_at = now + policy.crash_loop_cooldown_s
            self._record_event(
                slot,
                "crash_loop",
                f"{slot.consecutive_failures} consecutive failures; holding "
                f"back {policy.crash_loop_cooldown_s:.0f} s",
            )
            log.error(
                "crash loop: slot held back",
                extra={
                    "role": slot.role,
                    "slot": slot.index,
                    "consecutive_failures": slot.consecutive_failures,
                },
            )
        else:
            slot.state = "backoff"
            slot.next_start_at = now + policy.backoff_s(slot.consecutive_failures)
        self._persist_slot(slot)

    def _after_exit(self, slot: Slot) -> None:
        """Free what a dead child held: its leases (workers) and its metric shard liveness."""
        if slot.process is None:
            return
        pid = slot.process.pid
        if slot.role == "worker":
            owner = worker_id_for(slot.index, pid)
            try:
                released = self.leases.release_owner(owner)
                mark_worker(self.store, owner, "dead" if slot.state != "stopping" else "stopped")
                prune_workers(self.store, older_than_s=3600)
            except StoreError:
                log.exception("could not release leases of dead worker", extra={"owner": owner})
            else:
                if released:
                    log.warning(
                        "re-queued tasks of dead worker", extra={"owner": owner, "count": released}
                    )
        self.data_dir.remove_pid(slot.role, slot.index, pid)
        metrics.mark_process_dead(pid)
        slot.process = None

    def _check_hangs(self, now: float) -> None:
        """SIGKILL workers with stale heartbeats and an API that fails its health probe."""
        grace = self.config.startup_grace_s
        for slot in self.slots.values():
            if slot.process is None or slot.state != "running" or slot.killed_for_hang:
                continue
            if now - slot.started_at < grace:
                continue
            if slot.role == "worker" and self._worker_stale(slot):
                self._kill_hung(slot, "heartbeat older than hang timeout")
        api = self.slots.get(("api", 0))
        if (
            api is None
            or self.api_probe is None
            or api.process is None
            or api.state != "running"
            or now < self._next_probe
            or now - api.started_at < grace
            or api.killed_for_hang
        ):
            return
        self._next_probe = now + self.config.api_probe_interval_s
        if self.api_probe():
            api.probe_failures = 0
            return
        api.probe_failures += 1
        if api.probe_failures >= self.config.api_probe_failures:
            self._kill_hung(api, f"{api.probe_failures} failed health probes")

    def _worker_stale(self, slot: Slot) -> bool:
        """Tell whether the worker in ``slot`` missed its heartbeats."""
        assert slot.pid is not None
        rows = self.store.read(
            "SELECT heartbeat_at FROM workers WHERE worker_id = ?",
            (worker_id_for(slot.index, slot.pid),),
        )
        last = rows[0][0] if rows else 0.0
        return time.time() - last > self.config.hang_timeout_s

    def _kill_hung(self, slot: Slot, why: str) -> None:
        """Kill a hung child; the exit is handled (and the restart counted) on the next tick."""
        log.error(
            "child hung; killing",
            extra={"role": slot.role, "slot": slot.index, "child_pid": slot.pid, "reason": why},
        )
        slot.killed_for_hang = True
        procutil.kill_quietly(slot.pid or 0, signal.SIGKILL)

    def _record_event(self, slot: Slot, event: str, detail: str) -> None:
        """Append a supervision event (restart, crash loop) to the database."""
        try:
            with self.store.write() as conn:
                conn.execute(
                    "INSERT INTO supervisor_events(ts, role, slot, event, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (time.time(), slot.role, slot.index, event, detail),
                )
        except StoreError:
            log.exception("could not record supervisor event", extra={"event": event})

    def _persist_slot(self, slot: Slot, delete: bool = False) -> None:
        """Mirror the slot's state into the ``slots`` table for status pages and metrics."""
        try:
            with self.store.write() as conn:
                if delete:
                    conn.execute(
                        "DELETE FROM slots WHERE role = ? AND slot = ?", (slot.role, slot.index)
                    )
                    return
                conn.execute(
                    "INSERT INTO slots(role, slot, state, pid, consecutive_failures, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(role, slot) DO UPDATE SET "
                    "state = excluded.state, pid = excluded.pid, "
                    "consecutive_failures = excluded.consecutive_failures, "
                    "updated_at = excluded.updated_at",
                    (
                        slot.role,
                        slot.index,
                        slot.state,
                        slot.pid,
                        slot.consecutive_failures,
                        time.time(),
                    ),
                )
        except StoreError:
            log.exception("could not persist slot state", extra={"role": slot.role})
