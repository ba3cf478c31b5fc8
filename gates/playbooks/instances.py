"""Isolated instances started with the gate's extra service arguments, reusing the harness's launcher.

`ctx.instance()` starts the [service] command as written; the healer and fault injection need extra
arguments, so the gate starts its instances from a copy of the config with `service_args` appended
and `service_env` added, through the same InstanceLauncher (free port, own data dir, own process group).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from gates.playbooks.config import PlaybookPolicy
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.lifecycle import Instance, InstanceLauncher
from harness.procs import REGISTRY

_COPY_LOCK = threading.Lock()


class PlaybookInstances:
    """Starts and stops the instances of one gate run; their output is kept as evidence."""

    def __init__(self, ctx: GateContext, policy: PlaybookPolicy) -> None:
        """Build a launcher from the target's [service] with the gate's arguments and environment."""
        service = ctx.config.service
        if service is None:
            msg = "certify.toml has no [service] table: the playbook gate needs to start the target"
            raise ToolMissingError(msg)
        service = service.model_copy(
            update={"command": (*service.command, *policy.service_args), "env": {**service.env, **policy.service_env}}
        )
        config = ctx.config.model_copy(update={"service": service})
        self.ctx = ctx
        self.launcher = InstanceLauncher(config, ctx.target_dir, ctx.scratch / "work", REGISTRY)
        self.python = ctx.target_python()

    @contextlib.contextmanager
    def running(self, label: str, extra_env: dict[str, str] | None = None) -> Iterator[Instance]:
        """An isolated running instance; stopped, and its output copied into the pack, however the block ends."""
        instance = self.launcher.start(self.python, label, extra_env)
        try:
            yield instance
        finally:
            self.launcher.stop(instance)
            with _COPY_LOCK:
                for path in instance.output_files():
                    self.ctx.copy_in(f"instances/{instance.name}/{path.name}", path)
