"""An instance of the target for one chaos experiment, with a Toxiproxy proxy on every dependency link.

`harness.lifecycle.InstanceLauncher` fills `{<dep>_url}` with the dependency's real address, so the
chaos gate starts instances itself, reusing the core's pieces (free_port, fill, target_env,
wait_http_ok, spawn_role, stop_roles): each dependency is started, a proxy is created in front of it, and the
service gets `{<dep>_url}` pointing at the proxy (a `postgresql` dependency is a throwaway cluster in the
instance's data dir, harness/postgres.py, and its URL is postgresql://...@proxy/DATABASE). How each
dependency was started is kept (`DependencyRun`), so a fault can stop it and `relaunch` starts it again
the same way, on the same port. Two experiment-specific variants:
- DNS: the service runs in a private mount namespace whose /etc/hosts and /etc/resolv.conf are files
  owned by the harness (bind mounts), so the dependency's host name resolves, or stops resolving, for
  the target's processes only; the resolver points at 127.0.0.1, so no query leaves the machine.
- disk full: the data dir is a size-limited tmpfs mounted for the instance and unmounted afterwards.
Everything started is stopped by pid in `stop`, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos.toxiproxy_client import ToxiproxyApiError, ToxiproxyClient
from harness import postgres
from harness.config import CertifyConfigBase, DependencySection, ServiceSection
from harness.errors import TargetError, ToolMissingError
from harness.lifecycle import fill, free_port, spawn_role, stop_roles, target_env, wait_http_ok
from harness.procs import ProcessRegistry, spawn, tail

#: The wrapper that gives the service its own /etc/hosts and /etc/resolv.conf (argv: hosts, resolv, cmd...).
NAMESPACE_SCRIPT = (
    'h="$1"; r="$2"; shift 2; mount --bind "$h" /etc/hosts && mount --bind "$r" /etc/resolv.conf && exec "$@"'
)
MOUNT_TIMEOUT_S = 20.0
#: The machine's mount table, a resource of experiments that mount (tmpfs) or copy it (a namespace).
MOUNTS = "mount-table"


@dataclass(frozen=True)
class InstanceOptions:
    """What an experiment needs from its instance beyond the default."""

    dns_dependency: str | None = None
    dns_hostname: str = ""
    tmpfs_mb: int | None = None


@dataclass(frozen=True)
class DependencyRun:
    """How one dependency of an instance was started: enough to start it again the same way (same port, same data)."""

    kind: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    port: int
    readiness: str
    startup_deadline_s: float
    database: str = ""


@dataclass
class ChaosInstance:
    """A running instance: its processes, data dir, the proxies in front of its dependencies."""

    name: str
    port: int
    data_dir: Path
    log_dir: Path
    toxiproxy: ToxiproxyClient
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    dependency_ports: dict[str, int] = field(default_factory=dict)
    proxies: dict[str, str] = field(default_factory=dict)
    hosts_file: Path | None = None
    hosts_entry: str = ""
    tmpfs: Path | None = None
    ready_s: float = 0.0
    dependency_runs: dict[str, DependencyRun] = field(default_factory=dict)
    #: Starts a stopped dependency again as it was first started; seconds until it was ready (set by the launcher).
    relaunch: Callable[[str], float] | None = None

    @property
    def service(self) -> subprocess.Popen[bytes]:
        """The service's main process."""
        return self.procs["service"]

    def output_files(self) -> list[Path]:
        """Captured stdout/stderr of every process of the instance."""
        return sorted(self.log_dir.glob("*.txt"))


def run_quiet(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a short system command (mount, umount, chattr), bounded, output captured."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT_S, check=False)


class ChaosLauncher:
    """Starts and stops chaos instances of the target (one per experiment)."""

    def __init__(
        self,
        config: CertifyConfigBase,
        target_dir: Path,
        work_dir: Path,
        registry: ProcessRegistry,
        toxiproxy: ToxiproxyClient,
    ) -> None:
        """Bind to the target, a scratch area, the process registry and the Toxiproxy server."""
        if config.service is None:
            msg = "certify.toml has no [service] table: the chaos gate needs to start the target"
            raise ToolMissingError(msg)
        self.service: ServiceSection = config.service
        self.target_dir = target_dir
        self.work_dir = work_dir
        self.registry = registry
        self.toxiproxy = toxiproxy

    def start(self, python: Path, name: str, options: InstanceOptions) -> ChaosInstance:
        """Start dependencies, their proxies, then the service; wait for readiness; clean up on failure."""
        root = self.work_dir / "instances" / name
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        inst = ChaosInstance(
            name=name, port=free_port(), data_dir=data_dir, log_dir=root / "output", toxiproxy=self.toxiproxy
        )
        values = {"python": str(python), "target_dir": str(self.target_dir), "data_dir": str(data_dir)}
        env = target_env(dict(self.service.env), venv=python.parent.parent)
        try:
            if options.tmpfs_mb is not None:
                self._mount_tmpfs(inst, options.tmpfs_mb)
            inst.relaunch = lambda dep_name: self.relaunch(inst, dep_name)
            for dep_name, dep in sorted(self.service.dependencies.items()):
                port = self._start_dependency(inst, dep_name, dep, values, env)
                inst.dependency_ports[dep_name] = port
                values.update(self._proxy(inst, dep_name, port, options))
            values["port"] = str(inst.port)
            argv = [fill(part, values) for part in self.service.command]
            if options.dns_dependency is not None:
                argv = self._namespaced(inst, argv)
            # [service] env values are templates too ({db_url}), filled once the dependencies are up
            env = {**env, **{key: fill(value, values) for key, value in self.service.env.items()}}
            proc = self._spawn(inst, "service", argv, env)
            inst.ready_s = wait_http_ok(
                f"http://127.0.0.1:{inst.port}{self.service.readiness}", self.service.startup_deadline_s, proc
            )
        except TargetError as exc:
            self.stop(inst)
            output = "".join(tail(path, 1500) for path in inst.output_files() if "stderr" in path.name)
            msg = f"{name}: {exc.message}; captured stderr: {output.strip()[-1500:] or '(empty)'}"
            raise TargetError(msg, output_files=tuple(inst.output_files())) from None
        except BaseException:
            self.stop(inst)
            raise
        return inst

    def _proxy(self, inst: ChaosInstance, dep_name: str, port: int, options: InstanceOptions) -> dict[str, str]:
        """Create the proxy in front of one dependency; the placeholder values pointing at it."""
        proxy = self.toxiproxy.create_proxy(f"{inst.name}-{dep_name}", f"127.0.0.1:{port}")
        inst.proxies[dep_name] = proxy.name
        host = "127.0.0.1"
        if options.dns_dependency == dep_name:
            host = options.dns_hostname
            inst.hosts_entry = f"127.0.0.1 {host}\n"
        run = inst.dependency_runs.get(dep_name)
        if run is not None and run.kind == "postgresql":
            url = f"postgresql://{postgres.APP_ROLE}@{host}:{proxy.port}/{run.database}"
        else:
            url = f"http://{host}:{proxy.port}"
        return {f"{dep_name}_url": url, f"{dep_name}_host": host, f"{dep_name}_port": str(proxy.port)}

    def _start_dependency(
        self, inst: ChaosInstance, dep_name: str, dep: DependencySection, values: dict[str, str], env: dict[str, str]
    ) -> int:
        """Start one dependency on a free port (a postgresql one: initdb, server, createdb); the port it listens on."""
        port = free_port()
        if dep.kind == "postgresql":
            bindir, who = postgres.find_bindir(), postgres.run_as()
            cluster = inst.data_dir / dep_name
            postgres.init_cluster(bindir, cluster, who)
            argv = postgres.server_argv(bindir, cluster, port, who)
        else:
            argv = [fill(part, {**values, "port": str(port)}) for part in dep.command]
        run = DependencyRun(
            kind=dep.kind,
            argv=tuple(argv),
            env=tuple(sorted(env.items())),
            port=port,
            readiness=dep.readiness,
            startup_deadline_s=dep.startup_deadline_s,
            database=dep.database if dep.kind == "postgresql" else "",
        )
        inst.dependency_runs[dep_name] = run
        self._launch(inst, dep_name, run, self._spawn(inst, dep_name, list(argv), env))
        if dep.kind == "postgresql":
            postgres.create_database(postgres.find_bindir(), port, dep.database, postgres.run_as())
        return port

    @staticmethod
    def _launch(inst: ChaosInstance, dep_name: str, run: DependencyRun, proc: subprocess.Popen[bytes]) -> float:
        """Wait until a just-started dependency is ready (pg_isready, or its readiness path answering 2xx)."""
        del inst, dep_name
        if run.kind == "postgresql":
            return postgres.wait_ready(postgres.find_bindir(), run.port, run.startup_deadline_s, proc)
        return wait_http_ok(f"http://127.0.0.1:{run.port}{run.readiness}", run.startup_deadline_s, proc)

    def relaunch(self, inst: ChaosInstance, dep_name: str) -> float:
        """Start a dependency whose process has exited again, with its first argv, env and port; seconds to ready.

        Its output goes to <dep>-restart-N.std*.txt beside the first run's, which is kept.
        """
        run = inst.dependency_runs[dep_name]
        old = inst.procs.get(dep_name)
        if old is not None and old.poll() is None:
            msg = f"dependency {dep_name} (pid {old.pid}) is still running: it is not started twice"
            raise TargetError(msg)
        if old is not None:
            self.registry.discard(old)
        n = 1 + len(list(inst.log_dir.glob(f"{dep_name}-restart-*.stdout.txt")))
        proc = spawn(
            list(run.argv),
            cwd=self.target_dir,
            env=dict(run.env),
            registry=self.registry,
            stdout_path=inst.log_dir / f"{dep_name}-restart-{n}.stdout.txt",
            stderr_path=inst.log_dir / f"{dep_name}-restart-{n}.stderr.txt",
        )
        inst.procs[dep_name] = proc
        return self._launch(inst, dep_name, run, proc)

    def _namespaced(self, inst: ChaosInstance, argv: list[str]) -> list[str]:
        """Wrap the service argv so it runs with harness-owned /etc/hosts and /etc/resolv.conf."""
        root = inst.data_dir.parent
        hosts, resolv = root / "hosts", root / "resolv.conf"
        hosts.write_text(self.base_hosts() + inst.hosts_entry, encoding="utf-8")
        resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n", encoding="utf-8")
        inst.hosts_file = hosts
        unshare = shutil.which("unshare") or "unshare"
        return [
            unshare,
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_SCRIPT,
            "sh",
            str(hosts),
            str(resolv),
            *argv,
        ]

    @staticmethod
    def base_hosts() -> str:
        """The machine's /etc/hosts, the base of an instance's private one."""
        try:
            text = Path("/etc/hosts").read_text(encoding="utf-8")
        except OSError:
            text = "127.0.0.1 localhost\n"
        return text if text.endswith("\n") else text + "\n"

    def _mount_tmpfs(self, inst: ChaosInstance, size_mb: int) -> None:
        """Mount a size-limited tmpfs on the (empty) data dir."""
        done = run_quiet(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(inst.data_dir)])
        if done.returncode != 0:
            msg = f"cannot mount a {size_mb} MB tmpfs for the data dir: {done.stderr.strip()}"
            raise ToolMissingError(msg)
        inst.tmpfs = inst.data_dir

    def _spawn(self, inst: ChaosInstance, role: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start one process of the instance with its output captured."""
        return spawn_role(inst.procs, inst.log_dir, role, argv, self.target_dir, env, self.registry)

    def stop(self, inst: ChaosInstance) -> None:
        """Stop the service, then dependencies (by pid, SIGKILL after the grace); drop proxies; unmount."""
        stop_roles(inst.procs, self.service.stop_grace_s, self.registry)
        for proxy in inst.proxies.values():
            with contextlib.suppress(ToxiproxyApiError, OSError):
                self.toxiproxy.delete_proxy(proxy)
        if inst.tmpfs is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                _make_writable(inst.tmpfs)
            done = run_quiet(["umount", str(inst.tmpfs)])
            if done.returncode != 0:
                run_quiet(["umount", "-l", str(inst.tmpfs)])
            inst.tmpfs = None


def _make_writable(root: Path) -> None:
    """Clear immutable flags a read-only fault may have left (best effort before unmounting)."""
    if shutil.which("chattr") and os.geteuid() == 0:
        run_quiet(["chattr", "-R", "-i", str(root)])
