"""C2: put a dependency into a failure mode (HTTP 429, 5xx, ...) through its own control endpoint."""

from __future__ import annotations

from typing import Any

from chaos.client import call
from chaos.experiments import ControlFault
from chaos.faults import Injector
from chaos.instance import ChaosInstance
from harness.errors import ConfigError, TargetError


class ControlInjector(Injector):
    """POSTs the `inject` body to the dependency's control path, and the `restore` body afterwards."""

    def _send(self, inst: ChaosInstance, body: dict[str, Any]) -> dict[str, Any]:
        assert isinstance(self.spec, ControlFault)  # noqa: S101 - the registry pairs spec and injector
        port = inst.dependency_ports.get(self.spec.dependency)
        if port is None:
            msg = f"no [service.dependencies.{self.spec.dependency}] to send a control request to"
            raise ConfigError(msg)
        answer = call(port, "POST", self.spec.path, body, timeout_s=5.0)
        if not answer.ok:
            why = answer.error or f"HTTP {answer.status}"
            msg = f"dependency {self.spec.dependency} refused the control request {body}: {why}"
            raise TargetError(msg)
        return {"request": body, "status": answer.status, "answer": answer.body}

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Switch the failure mode on (sent to the dependency directly, not through the proxy)."""
        assert isinstance(self.spec, ControlFault)  # noqa: S101 - the registry pairs spec and injector
        return self._send(inst, self.spec.inject)

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Switch it off."""
        assert isinstance(self.spec, ControlFault)  # noqa: S101 - the registry pairs spec and injector
        return self._send(inst, self.spec.restore)
