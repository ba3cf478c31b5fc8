"""The target's own venv and its isolated instances: free port, own data dir, own process group."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import postgres, service_user
from harness.config import CertifyConfigBase, DependencySection
from harness.errors import TargetError, ToolMissingError
from harness.failures import output_shape, where_output_is
from harness.procs import REGISTRY, ProcessRegistry, run_tool, spawn, stop_many, tail
from harness.service_user import ServiceUser

BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT", "PIP_CACHE_DIR")
#: Set for every child while a run lasts (harness.workdir: XDG config and cache dirs inside the work dir).
RUN_CHILD_ENV: dict[str, str] = {}


def target_env(extra: dict[str, str] | None = None, venv: Path | None = None) -> dict[str, str]:
    """A minimal environment for target processes: the harness's secrets are not passed on."""
    env = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
    env.update(RUN_CHILD_ENV)
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PYTHONUNBUFFERED"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env.update(extra or {})
    return env


_ISSUED_PORTS: set[int] = set()
_PORT_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and that this process never handed out before.

    Gates start instances side by side; the kernel may offer a port just released by another
    gate's probe socket, so two instances could be told the same port and one would fail to bind
    (a false FAIL). Each port is handed out once per harness process.
    """
    with _PORT_LOCK:
        for _ in range(64):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _ISSUED_PORTS:
                _ISSUED_PORTS.add(port)
                return port
    raise TargetError("no free TCP port on 127.0.0.1 that was not already handed out in this run")


def fill(template: str, values: dict[str, str]) -> str:
    """Fill a command or path template's placeholders (validated when the config was read)."""
    return template.format_map(values)


class TargetVenv:
    """The target installed into its own venv, reused while its dependency files are unchanged."""

    def __init__(self, config: CertifyConfigBase, target_dir: Path, cache_dir: Path) -> None:
        """Bind to a target and the directory holding venvs."""
        self.config = config
        self.target_dir = target_dir
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._python: Path | None = None

    def fingerprint(self) -> str:
        """Hash of the target's resolved path, the install command and the dependency declaration files.

        The path is part of it because an install command may install the target editable (pip -e .):
        such a venv runs the code of the checkout it was made from, so another checkout with the same
        pyproject must never reuse it.
        """
        digest = hashlib.sha256(str(self.target_dir.resolve()).encode() + b"\0")
        digest.update("\0".join(self.config.install.command).encode())
        for name in self.config.install.hash_files:
            path = self.target_dir / name
            digest.update(name.encode() + b"\0")
            digest.update(path.read_bytes() if path.is_file() else b"<missing>")
        return digest.hexdigest()[:16]

    def python(self, log_dir: Path) -> Path:
        """Path of the venv's interpreter, creating and installing the venv on first use."""
        with self._lock:
            if self._python is None:
                self._python = self._ensure(log_dir)
            return self._python

    def _ensure(self, log_dir: Path) -> Path:
        """Create the venv and run the install command unless a complete one exists.

        Two harness processes may want the same venv at once (two runs sharing a cache): the second
        waits on a lock file beside the venv, then finds it complete, instead of installing into the
        half-made venv of the first (seen: pip's TypeError on a dist with no version yet).
        """
        venv = self.cache_dir / f"{self.config.target.name}-{self.fingerprint()}"
        venv.parent.mkdir(parents=True, exist_ok=True)
        wait_s = 2 * self.config.install.timeout_s
        with open(venv.parent / f"{venv.name}.lock", "a+b") as lock:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        name = self.config.target.name
                        msg = f"installing {name}: {venv} stayed locked by another install for {wait_s:g} s"
                        raise TargetError(msg) from None
                    time.sleep(0.2)
            try:
                return self._install(venv, log_dir)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _install(self, venv: Path, log_dir: Path) -> Path:
        """Under the venv's lock: reuse a complete venv, else create it and run the install steps."""
        python = venv / "bin" / "python"
        marker = venv / ".certify-installed"
        if marker.is_file() and python.exists():
            return python
        install = list(self.config.install.command)
        create = [os.environ.get("CERTIFY_PYTHON", "python3"), "-m", "venv", "--clear", str(venv)]
        steps = [("venv", create + ([] if install else ["--without-pip"]))]
        if install:
            steps.append(("install", [fill(part, self._values(python)) for part in install]))
        for label, argv in steps:
            run = run_tool(
                argv,
                cwd=self.target_dir,
                env=target_env(venv=venv),
                timeout_s=self.config.install.timeout_s,
                stdout_path=log_dir / f"install-{label}.stdout.txt",
                stderr_path=log_dir / f"install-{label}.stderr.txt",
            )
            if run.returncode != 0:
                # The pack keeps the whole log (target/, copied by GateContext.target_python); the
                # reason names it rather than quoting a tail cut at some length.
                shape = output_shape(tail(run.stderr_path))
                why = "timed out" if run.timed_out else f"exited {run.returncode} with {shape}"
                where = where_output_is(f"target/{run.stderr_path.name}")
                msg = f"installing {self.config.target.name}: step {label!r} {why}; {where}"
                raise TargetError(msg)
        marker.write_text(self.fingerprint(), encoding="utf-8")
        return python

    def _values(self, python: Path) -> dict[str, str]:
        """Placeholder values for install and test commands."""
        return {"python": str(python), "target_dir": str(self.target_dir)}


def wait_http_ok(url: str, deadline_s: float, proc: subprocess.Popen[bytes]) -> float:
    """Poll a URL until it answers 2xx; return seconds waited. Raise if the process dies or time runs out."""
    start = time.monotonic()
    last_error = "no answer yet"
    while time.monotonic() - start < deadline_s:
        if proc.poll() is not None:
            msg = f"exited with code {proc.returncode} before {url} was ready"
            raise TargetError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
                if 200 <= response.status < 300:
                    return time.monotonic() - start
                last_error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        time.sleep(0.1)
    msg = f"{url} not ready within {deadline_s:g} s (last: {last_error})"
    raise TargetError(msg)


@dataclass
class Instance:
    """One running, isolated instance of the target and the dependencies started for it."""

    name: str
    port: int
    data_dir: Path
    log_dir: Path
    values: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ready_s: float = 0.0
    user: ServiceUser = field(default_factory=lambda: ServiceUser(service_user.DEFAULT_USER))

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def service(self) -> subprocess.Popen[bytes]:
        """The service's main process."""
        return self.procs["service"]

    def output_files(self) -> list[Path]:
        """Captured stdout/stderr files of every process of this instance."""
        return sorted(self.log_dir.glob("*.txt"))


class InstanceLauncher:
    """Starts and stops isolated instances of the target for service gates."""

    def __init__(
        self, config: CertifyConfigBase, target_dir: Path, work_dir: Path, registry: ProcessRegistry = REGISTRY
    ) -> None:
        """Bind to a target, a scratch area and the process registry."""
        if config.service is None:
            msg = "certify.toml has no [service] table: this gate needs to start the target"
            raise ToolMissingError(msg)
        self.service = config.service
        self.target_dir = target_dir
        self.work_dir = work_dir
        self.registry = registry
        self._count = 0
        self._lock = threading.Lock()

    def _claim(self, label: str) -> tuple[str, Path]:
        """A fresh instance name and folder: `<label>-N` with the first N not used in this work dir yet.

        Launchers come and go (one per load profile), so the count lives in the folders: every instance
        gets a data dir of its own, never one an earlier instance left.
        """
        with self._lock:
            while True:
                self._count += 1
                name = f"{label}-{self._count}"
                root = self.work_dir / "instances" / name
                try:
                    root.mkdir(parents=True)
                except FileExistsError:
                    continue
                return name, root

    def start(self, python: Path, label: str, extra_env: dict[str, str] | None = None) -> Instance:
        """Start dependencies then the service; wait for readiness; stop everything on failure."""
        name, root = self._claim(label)
        values = {"python": str(python), "target_dir": str(self.target_dir), "data_dir": str(root / "data")}
        user = service_user.resolve(self.service.user, python, self.target_dir)
        self._make_dirs(root, user)
        instance = Instance(
            name=name, port=free_port(), data_dir=root / "data", log_dir=root / "output", values=values, user=user
        )
        values["port"] = str(instance.port)
        env = target_env({**self.service.env, **(extra_env or {})}, venv=python.parent.parent)
        if user.drops:
            # the run's TMPDIR and root's HOME are the harness's: the dropped user gets its own
            env.update(TMPDIR=str(root / "tmp"), HOME=str(root / "tmp"))
        try:
            for dep_name, dep in sorted(self.service.dependencies.items()):
                self._start_dependency(instance, dep_name, dep, env)
            argv = [fill(part, values) for part in self.service.command]
            # [service] env values are templates too ({db_url}), filled once the dependencies are up
            service_env = {**env, **{k: fill(v, values) for k, v in self.service.env.items()}}
            proc = self._spawn(instance, "service", argv, service_env)
            instance.ready_s = wait_http_ok(
                instance.base_url + self.service.readiness, self.service.startup_deadline_s, proc
            )
        except TargetError as exc:
            self.stop(instance)
            output = "".join(tail(path, 1500) for path in instance.output_files() if "stderr" in path.name)
            msg = f"{name}: {exc.message}; captured stderr: {output.strip()[-1500:] or '(empty)'}"
            raise TargetError(msg, output_files=tuple(instance.output_files())) from None
        except BaseException:
            self.stop(instance)
            raise
        return instance

    def _make_dirs(self, root: Path, user: ServiceUser) -> None:
        """The instance's data dir (and, for a dropped user, its temp dir) owned by the user the service runs as."""
        if not user.drops:
            (root / "data").mkdir(parents=True)
            return
        service_user.make_private_dir(root / "data", user)
        service_user.make_private_dir(root / "tmp", user)
        if any(dep.kind == "postgresql" for dep in self.service.dependencies.values()):
            # PostgreSQL's own user must pass through the data dir to its cluster (search, never list)
            (root / "data").chmod(0o701)

    def start_dependencies(self, python: Path, label: str, names: tuple[str, ...]) -> Instance:
        """Only the named dependencies (for a test run), in an instance without a service; `stop` stops them."""
        label, root = self._claim(label)
        values = {"python": str(python), "target_dir": str(self.target_dir), "data_dir": str(root / "data")}
        (root / "data").mkdir(parents=True)
        instance = Instance(name=label, port=0, data_dir=root / "data", log_dir=root / "output", values=values)
        env = target_env(venv=python.parent.parent)
        try:
            for name in names:
                self._start_dependency(instance, name, self.service.dependencies[name], env)
        except BaseException:
            self.stop(instance)
            raise
        return instance

    def _start_dependency(self, instance: Instance, dep_name: str, dep: DependencySection, env: dict[str, str]) -> None:
        """Start one dependency on its own free port and publish its address placeholders."""
        if dep.kind == "postgresql":
            self._start_postgres(instance, dep_name, dep, env)
            return
        port = free_port()
        values = {**instance.values, "port": str(port)}
        proc = self._spawn(instance, dep_name, [fill(part, values) for part in dep.command], env)
        wait_http_ok(f"http://127.0.0.1:{port}{dep.readiness}", dep.startup_deadline_s, proc)
        instance.values[f"{dep_name}_port"] = str(port)
        instance.values[f"{dep_name}_host"] = "127.0.0.1"
        instance.values[f"{dep_name}_url"] = f"http://127.0.0.1:{port}"

    def _start_postgres(self, instance: Instance, dep_name: str, dep: DependencySection, env: dict[str, str]) -> None:
        """A throwaway PostgreSQL cluster in the instance's data dir (harness/postgres.py), its database created."""
        bindir, port = postgres.find_bindir(), free_port()
        who = postgres.run_as()
        cluster = instance.data_dir / dep_name
        postgres.init_cluster(bindir, cluster, who)
        argv = postgres.server_argv(bindir, cluster, port, who)
        proc = self._spawn(instance, dep_name, argv, env, as_service_user=False)
        postgres.wait_ready(bindir, port, dep.startup_deadline_s, proc)
        instance.values[f"{dep_name}_url"] = postgres.create_database(bindir, port, dep.database, who)
        instance.values[f"{dep_name}_port"] = str(port)
        instance.values[f"{dep_name}_host"] = "127.0.0.1"

    def _spawn(
        self, instance: Instance, role: str, argv: list[str], env: dict[str, str], *, as_service_user: bool = True
    ) -> subprocess.Popen[bytes]:
        """Start one process of the instance with its output captured, as the instance's user unless told not."""
        user = instance.user
        who = (user.uid, user.gid) if as_service_user and user.uid is not None and user.gid is not None else None
        return spawn_role(instance.procs, instance.log_dir, role, argv, self.target_dir, env, self.registry, who)

    def stop(self, instance: Instance) -> None:
        """Stop the service first (so it can drain), then its dependencies; SIGKILL after the grace."""
        stop_roles(instance.procs, self.service.stop_grace_s, self.registry)


def spawn_role(  # noqa: PLR0917 - one process of an instance: who, what, where and with which env
    procs: dict[str, subprocess.Popen[bytes]],
    log_dir: Path,
    role: str,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    registry: ProcessRegistry,
    as_user: tuple[int, int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start one process of an instance as `role` (output in log_dir/<role>.std*.txt) and add it to procs."""
    proc = spawn(
        argv,
        cwd=cwd,
        env=env,
        registry=registry,
        stdout_path=log_dir / f"{role}.stdout.txt",
        stderr_path=log_dir / f"{role}.stderr.txt",
        as_user=as_user,
    )
    procs[role] = proc
    return proc


def stop_roles(procs: dict[str, subprocess.Popen[bytes]], grace_s: float, registry: ProcessRegistry) -> None:
    """Stop an instance's "service" first (so it can drain), then the rest, by pid; SIGKILL after the grace."""
    stop_many([procs[role] for role in ("service",) if role in procs], grace_s)
    stop_many([proc for role, proc in procs.items() if role != "service"], grace_s)
    for proc in procs.values():
        registry.discard(proc)
