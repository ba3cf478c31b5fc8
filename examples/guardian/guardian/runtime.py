"""Process entry points: the keeper (``serve``), the supervisor and the API server.

Process tree of ``guardian serve``::

    keeper (serve)            restarts the supervisor; SIGTERM here = graceful stop of all
    └── supervisor            restarts api + workers, scales workers, reaps leases
        ├── api               uvicorn + FastAPI on --port
        └── worker-0..N-1     claim and run tasks

Every child asks Linux (PR_SET_PDEATHSIG) for SIGTERM when its parent dies and also polls its
parent pid, so killing any process never leaves orphans; killing a child gets it respawned.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import httpx

from guardian import procutil
from guardian import settings as settings_mod
from guardian.errors import InstanceRunningError
from guardian.healing.env import FAULT_INJECTION_ENV, FAULTS_ENABLED_MARKER
from guardian.paths import DataDir
from guardian.store import Store
from guardian.supervisor import RestartPolicy, Supervisor, SupervisorConfig

log = logging.getLogger("guardian.runtime")


@dataclass(frozen=True)
class InstanceConfig:
    """How one instance is started (from ``guardian serve`` flags)."""

    data_dir: DataDir
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_url: str | None = None
    workers: int | None = None
    healer: bool = False
    fault_injection: bool = False
    tls: bool = False

    def child_argv(self, role: str, index: int) -> list[str]:
        """Command line of a supervised child process."""
        base = [sys.executable, "-m", "guardian"]
        upstream = ["--upstream-url", self.upstream_url] if self.upstream_url else []
        root = str(self.data_dir.root)
        if role == "api":
            return [
                *base,
                "api",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                root,
                *upstream,
            ]
        if role == "worker":
            return [*base, "worker", "--data-dir", root, "--slot", str(index), *upstream]
        if role == "healer":
            api = ["--host", self.host, "--port", str(self.port)]  # where the canaries look
            return [*base, "healer", *api, "--data-dir", root, *upstream]
        if role == "supervisor":
            flags = ["--healer"] if self.healer else []
            return [
                *base,
                "supervisor",
                *flags,
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                root,
                *upstream,
            ]
        raise ValueError(f"unknown role {role}")

    def health_probe(self) -> bool:
        """Return True if the API answers /healthz within a second."""
        try:
            response = httpx.get(f"http://{self.host}:{self.port}/healthz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200


def supervisor_main(config: InstanceConfig) -> int:
    """Entry point of the supervisor process."""
    procutil.bind_to_parent()
    config.data_dir.write_pid("supervisor", 0)
    supervisor = Supervisor(
        config.data_dir,
        config.child_argv,
        SupervisorConfig(),
        api_probe=config.health_probe,
        with_healer=config.healer,
    )
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGUSR1, supervisor.request_backoff_reset)
    log.info("supervisor started", extra={"workers": supervisor.desired_workers})
    try:
        supervisor.run()
    finally:
        config.data_dir.remove_pid("supervisor", 0)
    return 0


def stop_on_sigterm(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` before a SIGTERM ends this process, which still dies of that signal.

    uvicorn shuts down gracefully on SIGTERM, then restores the previous handler and raises the
    signal again: with the default handler the process dies there, and no ``finally`` runs.
    """

    def handle(signum: int, frame: FrameType | None) -> None:
        del frame
        cleanup()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, handle)


def api_main(config: InstanceConfig) -> int:
    """Entry point of the API process: run uvicorn with guardian's JSON logging."""
    import uvicorn  # noqa: PLC0415 - only the API process needs the web stack

    from guardian.api.app import create_app  # noqa: PLC0415
    from guardian.api.context import ApiConfig  # noqa: PLC0415
    from guardian.tls import TlsListener  # noqa: PLC0415

    procutil.bind_to_parent()
    config.data_dir.write_pid("api", 0)
    app = create_app(ApiConfig(config.data_dir, config.upstream_url))
    # HTTPS too, while a certificate is installed in <data-dir>/tls (see guardian.tls).
    tls_listener = TlsListener(app, config.data_dir, config.host)
    tls_listener.start()
    stop_on_sigterm(tls_listener.stop)
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            loop=loop,
            http="httptools",
            timeout_graceful_shutdown=5,
            backlog=2048,
            timeout_keep_alive=30,
        )
    )
    try:
        server.run()
    finally:
        tls_listener.stop()
        config.data_dir.remove_pid("api", 0)
    # uvicorn returns normally when it could not bind; make that a crash the supervisor sees.
    return 0 if server.started else 1


class Keeper:
    """The top process: runs the supervisor and restarts it when it dies."""

    def __init__(
        self,
        config: InstanceConfig,
        policy: RestartPolicy | None = None,
        shutdown_grace_s: float = 13.0,
    ) -> None:
        """Prepare the data dir, refusing if another live keeper owns it."""
        self.config = config
        self.policy = policy or RestartPolicy()
        self.shutdown_grace_s = shutdown_grace_s
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def prepare(self) -> None:
        """Create the layout, wipe metric shards, initialise the schema and settings."""
        data_dir = self.config.data_dir
        data_dir.ensure()
        existing = data_dir.read_pids().get("keeper-0")
        if (
            existing
            and existing != os.getpid()
            and procutil.pid_alive(existing)
            and procutil.is_guardian_process(existing, str(data_dir.root))
        ):
            raise InstanceRunningError(f"guardian (pid {existing}) already serves {data_dir.root}")
        data_dir.wipe_metrics()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(data_dir.metrics_dir)
        marker = data_dir.root / FAULTS_ENABLED_MARKER
        if self.config.fault_injection:
            # Children inherit the environment: only this instance's processes accept faults.
            os.environ[FAULT_INJECTION_ENV] = "1"
            marker.write_text("fault injection enabled by --enable-fault-injection\n")
        else:
            os.environ.pop(FAULT_INJECTION_ENV, None)
            marker.unlink(missing_ok=True)
        if self.config.tls:
            from guardian.tls import ensure_certificate  # noqa: PLC0415

            ensure_certificate(data_dir)
        store = Store(data_dir.db_path)
        try:
            if self.config.workers is not None:
                settings_mod.save(store, {"worker_count": self.config.workers})
        finally:
            store.close()
        data_dir.write_pid("keeper", 0)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: stop the tree gracefully."""
        del frame
        log.info("keeper stop requested", extra={"signal": signum})
        self.stopping = True

    def run(self) -> int:
        """Keep a supervisor running until asked to stop; return the exit code (0)."""
        consecutive = 0
        next_start = 0.0
        started_at = 0.0
        while not self.stopping:
            now = time.monotonic()
            if self.child is None and now >= next_start:
                env = {**os.environ, procutil.PARENT_PID_ENV: str(os.getpid())}
                argv = self.config.child_argv("supervisor", 0)
                self.child = subprocess.Popen(argv, env=env)  # noqa: S603 - argv list we built
                started_at = now
                log.info("supervisor spawned", extra={"child_pid": self.child.pid})
            elif self.child is not None and self.child.poll() is not None:
                code = self.child.returncode
                self.child = None
                consecutive = 0 if now - started_at >= self.policy.stable_after_s else consecutive
                consecutive += 1
                self.restarts += 1
                delay = self.policy.backoff_s(consecutive)
                if consecutive > self.policy.crash_loop_limit:
                    delay = self.policy.crash_loop_cooldown_s
                log.error(
                    "supervisor exited; restarting",
                    extra={"exit_code": code, "restart_in_s": delay, "consecutive": consecutive},
                )
                self._record_restart(code)
                next_start = now + delay
            time.sleep(0.1)
        return self._shutdown()

    def _record_restart(self, code: int) -> None:
        """Count a supervisor restart in the database (guardian_worker_restarts_total)."""
        try:
            store = Store(self.config.data_dir.db_path)
            try:
                with store.write() as conn:
                    conn.execute(
                        "INSERT INTO supervisor_events(ts, role, slot, event, detail) "
                        "VALUES (?, 'supervisor', 0, 'restart_crash', ?)",
                        (time.time(), f"exit code {code}"),
                    )
            finally:
                store.close()
        except Exception:
            log.exception("could not record supervisor restart")

    def _shutdown(self) -> int:
        """SIGTERM the supervisor and wait for the tree to exit."""
        if self.child is not None:
            self.child.send_signal(signal.SIGTERM)
            try:
                self.child.wait(timeout=self.shutdown_grace_s)
            except subprocess.TimeoutExpired:
                log.error("supervisor did not stop in time; killing")
                self.child.kill()
                self.child.wait(timeout=5)
        self.config.data_dir.remove_pid("keeper", 0)
        log.info("guardian stopped")
        return 0


def keeper_main(config: InstanceConfig) -> int:
    """Entry point of ``guardian serve``."""
    keeper = Keeper(config)
    keeper.prepare()
    signal.signal(signal.SIGTERM, keeper.request_stop)
    signal.signal(signal.SIGINT, keeper.request_stop)
    log.info(
        "guardian serving",
        extra={
            "port": config.port,
            "data_dir": str(config.data_dir.root),
            "upstream_url": config.upstream_url,
        },
    )
    return keeper.run()
