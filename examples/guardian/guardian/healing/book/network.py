"""Playbooks for process life cycle and listeners: start crash loops, TLS expiry, API stalls."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import signal
import threading
import time
from typing import Any

import httpx
import psutil

from guardian import procutil, tls
from guardian import settings as settings_mod
from guardian.healing.book.processes import instance_processes
from guardian.healing.book.storage import write_probe
from guardian.healing.book.upstream import restore_settings, save_settings
from guardian.healing.env import HealEnv
from guardian.healing.playbooks import (
    BasePlaybook,
    Detection,
    ParamSpec,
    PlaybookOutcome,
    PlaybookSpec,
    RiskTier,
    RunContext,
)
from guardian.leases import live_workers

MIB = 1024 * 1024
CAUSE_WINDOW_S = 300.0
# Hung request threads of api-stalled injections (kept referenced so they are not collected).
_HUNG: set[asyncio.Task[Any]] = set()


# -- crash-loop ----------------------------------------------------------------------------------


class CrashLoop(BasePlaybook):
    """Workers refuse to start under a memory limit they cannot run in: restore it, restart now."""

    spec = PlaybookSpec(
        id="crash-loop",
        actions=("config-write", "signal"),
        title="Fix the start-time cause of a worker crash loop and restart the slot",
        failure_mode="a worker exits at every start (back-off, then the crash-loop cool-down)",
        tier=RiskTier.TIER_1,
        params=(ParamSpec("min_failures", int, 3, 2, 50, "consecutive failed starts"),),
        timeout_s=45.0,
        verify_timeout_s=25.0,
        fault="sets worker_memory_limit_mb to 16 (below a worker's needs) and restarts worker-1",
    )
    stable_s = 3.0

    def _looping(self, env: HealEnv, min_failures: int) -> dict[str, dict[str, Any]]:
        """Worker slots failing at start, with the refusal the workers recorded."""
        store, found = env.store(), {}
        for slot, state, failures in store.read(
            "SELECT slot, state, consecutive_failures FROM slots WHERE role = 'worker' "
            "AND consecutive_failures >= ?",
            (min_failures,),
        ):
            refusals = store.read(
                "SELECT detail FROM supervisor_events WHERE role = 'worker' AND slot = ? "
                "AND event = 'start_failed' AND ts >= ? ORDER BY id DESC LIMIT 1",
                (slot, time.time() - CAUSE_WINDOW_S),
            )
            if refusals and "worker_memory_limit_mb" in refusals[0][0]:
                found[f"worker-{slot}"] = {
                    "state": state,
                    "failures": failures,
                    "cause": refusals[0][0],
                }
        return found

    def _known_good_mb(self, env: HealEnv) -> int:
        """Return the address-space limit running workers have (0: none), read from the kernel."""
        limits = []
        for name, pid in instance_processes(env).items():
            if name.startswith("worker-"):
                try:
                    soft, _hard = psutil.Process(pid).rlimit(psutil.RLIMIT_AS)
                except psutil.Error:
                    continue
                limits.append(0 if soft == psutil.RLIM_INFINITY else soft // MIB)
        return max(limits, default=0) if 0 not in limits else 0

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Slots that keep failing at start because of the configured memory limit."""
        looping = self._looping(env, params["min_failures"])
        limit_mb = settings_mod.load(env.store()).worker_memory_limit_mb
        if not looping or limit_mb == 0:
            return None
        return Detection(
            "worker crash loop: memory limit too low",
            ",".join(sorted(looping)),
            {"slots": looping, "worker_memory_limit_mb": limit_mb},
        )

    def plan(self, ctx: RunContext) -> list[str]:
        """Restore the limit, then reset the supervisor's back-off."""
        current = settings_mod.load(ctx.env.store()).worker_memory_limit_mb
        return [
            f"set worker_memory_limit_mb {current} -> {self._known_good_mb(ctx.env)} "
            "(the limit the running workers have)",
            "SIGUSR1 the supervisor: clear the back-off so the slot starts now",
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Remove the cause first, then let the supervisor restart the slots at once."""
        looping = self._looping(ctx.env, ctx.params["min_failures"])
        good = self._known_good_mb(ctx.env)
        save_settings(ctx, {"worker_memory_limit_mb": good})
        supervisor = instance_processes(ctx.env).get("supervisor-0")
        if supervisor is None:
            return PlaybookOutcome(False, "no live supervisor to restart the slot")
        procutil.kill_quietly(supervisor, signal.SIGUSR1)
        ctx.undo.update(slots=sorted(looping), reset_at=time.time(), limit_mb=good)
        return PlaybookOutcome(True, f"limit -> {good} MiB; back-off reset", {"slots": looping})

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Each slot runs a worker started after the reset, heart-beating for ``stable_s``."""
        reset_at = float(context.undo.get("reset_at", time.time()))
        live = {row[1]: row for row in live_workers(context.env.store(), 5.0)}
        for name in context.undo.get("slots", []):
            row = live.get(int(name.split("-")[1]))
            if row is None or row[3] < reset_at - 1.0:
                return PlaybookOutcome(False, f"{name} has not started since the reset")
            if time.time() - row[3] < self.stable_s:
                return PlaybookOutcome(False, f"{name} up for less than {self.stable_s} s")
        if self._looping(context.env, context.params["min_failures"]):
            return PlaybookOutcome(False, "a slot is still failing")
        return PlaybookOutcome(True, f"{context.undo.get('slots')} running and stable")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Restore the settings rows (the old limit applies again at the next start)."""
        return PlaybookOutcome(True, f"restored {restore_settings(context)} settings row(s)")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Configure a limit no worker can start under, then restart one worker (SIGTERM)."""
        limit_mb, slot = int(options.get("limit_mb", 16)), int(options.get("slot", 1))
        settings_mod.save(env.store(), {"worker_memory_limit_mb": limit_mb})
        pid = instance_processes(env).get(f"worker-{slot}")
        if pid is not None:
            procutil.kill_quietly(pid, signal.SIGTERM)
        return {"worker_memory_limit_mb": limit_mb, "restarted": f"worker-{slot}", "pid": pid}


# -- tls-cert-expiry -----------------------------------------------------------------------------


class TlsCertExpiry(BasePlaybook):
    """The HTTPS listener serves a certificate close to expiry: issue a new one, reloaded live."""

    spec = PlaybookSpec(
        id="tls-cert-expiry",
        actions=("file-write",),
        title="Re-issue the HTTPS certificate before it expires",
        failure_mode="the certificate the HTTPS listener presents expires within min_days",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("min_days", int, 14, 1, 365, "days of validity that must remain"),
            ParamSpec("valid_days", int, 365, 30, 825, "validity of the new certificate"),
        ),
        verify_timeout_s=15.0,
        fault="installs a self-signed certificate valid for 3 days (the listener serves it)",
    )
    reload_timeout_s = 10.0

    def _served(self, env: HealEnv) -> tls.CertInfo | None:
        """Return the certificate the listener presents (None: TLS off or not answering)."""
        port = tls.listener_port(env.data_dir)
        if port is None or not tls.cert_path(env.data_dir).exists():
            return None
        try:
            return tls.served_certificate("127.0.0.1", port)
        except (OSError, ValueError):
            return None

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Detect a served certificate with fewer than ``min_days`` left (real handshake)."""
        served = self._served(env)
        if served is None or served.days_left() >= params["min_days"]:
            return None
        return Detection("TLS certificate expiring", "https", served.to_json())

    def plan(self, ctx: RunContext) -> list[str]:
        """Back up, issue, reload."""
        return [
            "copy tls/cert.pem and tls/key.pem to tls/previous/",
            f"issue a new key and self-signed certificate valid {ctx.params['valid_days']} days",
            "the listener reloads the pair for new connections (no restart)",
        ]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Keep the old pair (mode 0600), install a new one."""
        data_dir = ctx.env.data_dir
        backup = tls.tls_dir(data_dir) / "previous" / str(int(time.time() * 1000))
        backup.mkdir(mode=0o700, parents=True)
        for path in (tls.cert_path(data_dir), tls.key_path(data_dir)):
            shutil.copy2(path, backup / path.name)
        issued = tls.issue_self_signed(data_dir, ctx.params["valid_days"])
        ctx.undo.update(backup=str(backup), serial=issued.serial)
        return PlaybookOutcome(True, f"issued serial {issued.serial}", issued.to_json())

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when a fresh handshake presents the new certificate with enough validity left."""
        served = self._served(context.env)
        if served is None:
            return PlaybookOutcome(False, "the HTTPS listener does not answer")
        ok = served.serial == context.undo.get("serial") and (
            served.days_left() >= context.params["min_days"]
        )
        return PlaybookOutcome(ok, f"served serial {served.serial}", served.to_json())

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Put the previous pair back (byte for byte) and wait until the listener serves it."""
        backup = context.undo.get("backup")
        if not backup:
            return PlaybookOutcome(True, "nothing to restore")
        data_dir = context.env.data_dir
        for path in (tls.key_path(data_dir), tls.cert_path(data_dir)):
            staged = path.with_name(f".{path.name}.restore")
            shutil.copy2(f"{backup}/{path.name}", staged)
            staged.replace(path)
        wanted = tls.file_cert_info(tls.cert_path(data_dir)).serial
        deadline = time.monotonic() + self.reload_timeout_s
        while time.monotonic() < deadline:
            served = self._served(context.env)
            if served is not None and served.serial == wanted:
                return PlaybookOutcome(True, f"previous certificate {wanted} served again")
            time.sleep(0.2)
        return PlaybookOutcome(False, f"previous certificate {wanted} restored, not yet served")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Install a certificate that expires in ``days`` (the listener starts or reloads)."""
        issued = tls.issue_self_signed(env.data_dir, float(options.get("days", 3)))
        return {"installed": issued.to_json(), "cert": str(tls.cert_path(env.data_dir))}


# -- api-stalled ---------------------------------------------------------------------------------


def api_address(env: HealEnv) -> tuple[int, str] | None:
    """Pid and base URL of the API process, from the sockets it listens on (not the TLS one)."""
    pid = instance_processes(env).get("api-0")
    if pid is None:
        return None
    tls_port = tls.listener_port(env.data_dir)
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port != tls_port:
            address = ipaddress.ip_address(conn.laddr.ip)
            host = "127.0.0.1" if address.is_unspecified else conn.laddr.ip
            host = f"[{host}]" if address.version == 6 and not address.is_unspecified else host
            return pid, f"http://{host}:{conn.laddr.port}"
    return None


class ApiStalled(BasePlaybook):
    """Liveness answers but every request thread is stuck: restart the API gracefully."""

    inject_on_event_loop = True  # it blocks the request pool's threads from the API's event loop

    spec = PlaybookSpec(
        id="api-stalled",
        actions=("signal", "restart"),
        title="Restart an API whose request threads are all stuck",
        failure_mode="/healthz answers (the supervisor keeps the API) but thread-pool routes hang",
        tier=RiskTier.TIER_1,
        params=(
            ParamSpec("min_stall_s", int, 8, 3, 600, "seconds the stall must last"),
            ParamSpec("timeout_ms", int, 2000, 200, 30_000, "answer time of a thread-pool route"),
            ParamSpec("grace_s", int, 8, 1, 60, "wait after SIGTERM before SIGKILL"),
        ),
        timeout_s=60.0,
        verify_timeout_s=30.0,
        fault="occupies every thread of the API's request pool with calls that never return",
    )
    check_every_s = 2.0

    def _probe(self, base_url: str, timeout_ms: int) -> tuple[bool, bool]:
        """(/healthz answers on the event loop, /api/tasks answers from the thread pool)."""
        try:
            live = httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False, False
        try:
            pooled = httpx.get(f"{base_url}/api/tasks?limit=1", timeout=timeout_ms / 1000)
        except httpx.HTTPError:
            return live, False
        return live, pooled.status_code == 200

    def _stalled_for(self, env: HealEnv, params: dict[str, Any]) -> dict[str, Any] | None:
        """Pid, URL and seconds since the stall began, if the API is stalled now."""
        memory: dict[str, Any] = env.memory.setdefault("api_stall", {})
        now = time.monotonic()
        if memory.get("since") is None and now - memory.get("checked", 0.0) < self.check_every_s:
            return None
        memory["checked"] = now
        address = api_address(env)
        live, pooled = self._probe(address[1], params["timeout_ms"]) if address else (False, True)
        # Not live is the supervisor's case; a held write lock is db-lock-holder's.
        if address is None or not live or pooled or not write_probe(env, 200):
            memory["since"] = None
            return None
        if memory.get("pid") != address[0] or memory.get("since") is None:
            memory.update(pid=address[0], since=now)
        return {"pid": address[0], "url": address[1], "stalled_s": round(now - memory["since"], 1)}

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Thread-pool routes time out for ``min_stall_s`` while /healthz answers."""
        stall = self._stalled_for(env, params)
        if stall is None or stall["stalled_s"] < params["min_stall_s"]:
            return None
        return Detection("API request threads stalled", "api-0", stall)

    def plan(self, ctx: RunContext) -> list[str]:
        """SIGTERM, then SIGKILL after the grace period; the supervisor respawns it."""
        assert ctx.detection is not None
        pid, grace = ctx.detection.evidence["pid"], ctx.params["grace_s"]
        return [f"SIGTERM api-0 (pid {pid}); SIGKILL after {grace} s; the supervisor respawns it"]

    def execute(self, ctx: RunContext) -> PlaybookOutcome:
        """Stop the stalled API (stuck threads can only end with their process)."""
        address = api_address(ctx.env)
        if address is None:
            return PlaybookOutcome(False, "the API process is gone")
        pid, url = address
        procutil.kill_quietly(pid, signal.SIGTERM)
        killed = bool(procutil.wait_gone([pid], timeout_s=ctx.params["grace_s"]))
        if killed:
            procutil.kill_quietly(pid, signal.SIGKILL)
        ctx.undo.update(old_pid=pid, url=url, sigkill=killed)
        ctx.env.memory.pop("api_stall", None)
        return PlaybookOutcome(True, f"stopped api-0 pid {pid} (SIGKILL needed: {killed})")

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when a new API process answers thread-pool routes in time."""
        address = api_address(context.env)
        if address is None or address[0] == context.undo.get("old_pid"):
            return PlaybookOutcome(False, "no new API process yet")
        live, pooled = self._probe(address[1], context.params["timeout_ms"])
        return PlaybookOutcome(live and pooled, f"api-0 pid {address[0]}: pool answers {pooled}")

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Do nothing: a restarted process cannot be un-restarted."""
        return PlaybookOutcome(True, "nothing to undo: the API was restarted")

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Block every request-pool thread of this (API) process on a call that never returns."""
        import anyio.to_thread  # noqa: PLC0415 - only the API process can inject this fault

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return {"error": "inject through the API: POST /api/guardian/faults/api-stalled"}
        limiter = anyio.to_thread.current_default_thread_limiter()
        threads = int(options.get("threads", limiter.total_tokens))
        hold_s = float(options.get("hold_s", 600.0))
        never = threading.Event()
        for _ in range(threads):
            task = loop.create_task(
                anyio.to_thread.run_sync(never.wait, hold_s, abandon_on_cancel=True)
            )
            _HUNG.add(task)
            task.add_done_callback(_HUNG.discard)
        return {"hung_threads": threads, "pool_size": limiter.total_tokens, "hold_s": hold_s}


PLAYBOOKS: tuple[type[BasePlaybook], ...] = (CrashLoop, TlsCertExpiry, ApiStalled)
