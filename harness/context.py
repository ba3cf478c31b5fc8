"""What a gate's `collect` may use: evidence writing, bounded tool runs, the target's venv and instances."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import CertifyConfigBase
from harness.errors import PackError, TargetError
from harness.evidence import EvidencePack
from harness.gate import GateSpec
from harness.lifecycle import Instance, InstanceLauncher, TargetVenv, fill, target_env
from harness.observer import Observer
from harness.procs import REGISTRY, ProcessRegistry, ToolRun, run_tool


@dataclass
class RunServices:
    """Shared, thread-safe things every gate of one run uses."""

    config: CertifyConfigBase
    target_dir: Path
    mode: str
    pack: EvidencePack
    work_dir: Path
    venv: TargetVenv
    cancel: threading.Event
    progress: Callable[[str, str], None]
    registry: ProcessRegistry = REGISTRY
    tools: dict[str, str] = field(default_factory=dict)
    tools_lock: threading.Lock = field(default_factory=threading.Lock)
    observer: Observer | None = None


class GateContext:
    """The handle one gate's `collect` gets; everything it writes lands under gates/<id>/."""

    def __init__(self, spec: GateSpec, services: RunServices) -> None:
        """Bind a gate to the run's services."""
        self.spec = spec
        self._svc = services
        self.scratch = services.work_dir / "gates" / spec.id
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._runs = 0

    @property
    def config(self) -> CertifyConfigBase:
        """The validated certify.toml."""
        return self._svc.config

    @property
    def target_dir(self) -> Path:
        """The target's root directory."""
        return self._svc.target_dir

    @property
    def mode(self) -> str:
        """The run mode, release or ci."""
        return self._svc.mode

    @property
    def cancel(self) -> threading.Event:
        """Set when the run is interrupted or the gate's time is up; long loops must check it."""
        return self._svc.cancel

    def progress(self, message: str) -> None:
        """Report what the gate is doing now."""
        self._svc.progress(self.spec.id, message)

    def write_text(self, name: str, text: str) -> str:
        """Write gates/<id>/<name>."""
        return self._svc.pack.write_text(f"gates/{self.spec.id}/{name}", text, self.spec.id)

    def write_bytes(self, name: str, data: bytes) -> str:
        """Write gates/<id>/<name> from bytes."""
        return self._svc.pack.write_bytes(f"gates/{self.spec.id}/{name}", data, self.spec.id)

    def write_json(self, name: str, data: Any) -> str:
        """Write gates/<id>/<name> as stable JSON."""
        return self._svc.pack.write_json(f"gates/{self.spec.id}/{name}", data, self.spec.id)

    def copy_in(self, name: str, source: Path) -> str:
        """Copy a tool's output file to gates/<id>/<name>."""
        return self._svc.pack.copy_file(f"gates/{self.spec.id}/{name}", source, self.spec.id)

    def write_document(self, name: str, data: bytes) -> str:
        """Write one of the gate's named documents at the pack root (declared in its spec)."""
        top = name.split("/", 1)[0]
        if top not in self.spec.documents:
            msg = f"gate {self.spec.id} did not declare the document {top!r}"
            raise PackError(msg)
        return self._svc.pack.write_bytes(name, data, self.spec.id)

    def record_tool(self, name: str, version: str) -> None:
        """Record the exact version of a tool used, for the run record."""
        with self._svc.tools_lock:
            self._svc.tools[name] = version

    def run(
        self,
        label: str,
        argv: list[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout_s: float = 600.0,
    ) -> ToolRun:
        """Run a tool bounded in time; its argv, exit code and output are kept as evidence."""
        self._runs += 1
        stem = f"{self._runs:02d}-{label}"
        run = run_tool(
            argv,
            cwd=cwd or self.target_dir,
            env=env or target_env(),
            timeout_s=timeout_s,
            stdout_path=self.scratch / f"{stem}.stdout.txt",
            stderr_path=self.scratch / f"{stem}.stderr.txt",
            cancel=self.cancel,
            registry=self._svc.registry,
        )
        self.copy_in(f"runs/{stem}.stdout.txt", run.stdout_path)
        self.copy_in(f"runs/{stem}.stderr.txt", run.stderr_path)
        self.write_json(
            f"runs/{stem}.json",
            {
                "argv": list(run.argv),
                "returncode": run.returncode,
                "duration_s": round(run.duration_s, 3),
                "timed_out": run.timed_out,
                "cancelled": run.cancelled,
            },
        )
        return run

    def target_python(self) -> Path:
        """The interpreter of the target's venv (installed on first use; the log goes in the pack)."""
        log_dir = self._svc.work_dir / "install"
        try:
            return self._svc.venv.python(log_dir)
        finally:
            for path in sorted(log_dir.glob("*.txt")) if log_dir.is_dir() else []:
                with contextlib.suppress(PackError):
                    self._svc.pack.copy_file(f"target/{path.name}", path)

    def command(self, template: tuple[str, ...], **values: str) -> list[str]:
        """Fill a command template from certify.toml with {python}, {target_dir} and extra values."""
        base = {"python": str(self.target_python()), "target_dir": str(self.target_dir), **values}
        return [fill(part, base) for part in template]

    @property
    def observer(self) -> Observer | None:
        """The run's observer (G6's shared Prometheus), if one is running."""
        return self._svc.observer

    @contextlib.contextmanager
    def observed(self, name: str, base_url: str) -> Iterator[None]:
        """Have the run's observer watch an instance for the block (nothing if none watches this gate)."""
        observer = self._svc.observer
        if observer is None or not observer.watching(self.spec.id):
            yield
            return
        observer.watch(self.spec.id, name, base_url)
        try:
            yield
        finally:
            observer.unwatch(self.spec.id, name)

    def observe_window(self, name: str, kind: str, start: float, end: float, info: dict[str, Any]) -> None:
        """Tell the run's observer about a window (unix seconds) of a watched instance."""
        observer = self._svc.observer
        if observer is not None and observer.watching(self.spec.id):
            observer.window(self.spec.id, name, kind=kind, start=start, end=end, info=info)

    @contextlib.contextmanager
    def test_dependencies(self) -> Iterator[dict[str, str]]:
        """The [tests] dependencies up for the block (their placeholders yielded); stopped, output kept, after it."""
        names = self.config.tests.dependencies
        if not names:
            yield {}
            return
        launcher = InstanceLauncher(self.config, self.target_dir, self._svc.work_dir, self._svc.registry)
        label = f"{self.spec.id}-tests"
        started = launcher.start_dependencies(self.target_python(), label, names)
        try:
            yield dict(started.values)
        finally:
            launcher.stop(started)
            for path in started.output_files():
                self.copy_in(f"instances/{started.name}/{path.name}", path)

    @contextlib.contextmanager
    def instance(self, extra_env: dict[str, str] | None = None) -> Iterator[Instance]:
        """An isolated running instance; stopped, and its output kept, however the block ends."""
        launcher = InstanceLauncher(self.config, self.target_dir, self._svc.work_dir, self._svc.registry)
        try:
            started = launcher.start(self.target_python(), self.spec.id, extra_env)
        except TargetError as exc:
            for item in exc.output_files:
                path = Path(str(item))
                self.copy_in(f"instances/failed-start/{path.name}", path)
            raise
        try:
            yield started
        finally:
            launcher.stop(started)
            for path in started.output_files():
                self.copy_in(f"instances/{started.name}/{path.name}", path)
