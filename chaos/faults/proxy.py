"""C2: faults on the dependency link through the Toxiproxy proxy in front of it (toxics, link down)."""

from __future__ import annotations

import contextlib
from typing import Any

from chaos.experiments import ProxyDownFault, ToxicFault
from chaos.faults import Injector
from chaos.instance import ChaosInstance
from chaos.toxiproxy_client import ToxiproxyApiError
from harness.errors import ConfigError

TOXIC_NAME = "chaos-fault"
#: The run's one Toxiproxy server (a single asyncio process carrying every instance's dependency links).
PROXY_SERVER = "toxiproxy-server"


def proxy_name(inst: ChaosInstance, dependency: str) -> str:
    """The proxy in front of a dependency of this instance."""
    if dependency not in inst.proxies:
        known = ", ".join(sorted(inst.proxies)) or "none"
        msg = f"no [service.dependencies.{dependency}] to put a fault on (dependencies: {known})"
        raise ConfigError(msg)
    return inst.proxies[dependency]


class ToxicInjector(Injector):
    """Adds one toxic (latency, timeout, reset_peer, bandwidth, ...) to the dependency's proxy."""

    def resources(self) -> frozenset[str]:
        """The shared proxy server: one fault on it at a time, so a held or throttled link cannot slow another's."""
        return frozenset({PROXY_SERVER})

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Add the toxic; the server's echo of it is the proof it is in place."""
        assert isinstance(self.spec, ToxicFault)  # noqa: S101 - the registry pairs spec and injector
        proxy = proxy_name(inst, self.spec.dependency)
        toxic = inst.toxiproxy.add_toxic(
            proxy,
            self.spec.toxic,
            stream=self.spec.stream,
            name=TOXIC_NAME,
            toxicity=self.spec.toxicity,
            attributes=self.spec.attributes,
        )
        return {"proxy": proxy, "toxic": toxic.type, "stream": toxic.stream, "attributes": dict(toxic.attributes)}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Delete the toxic (absent already: nothing to do)."""
        assert isinstance(self.spec, ToxicFault)  # noqa: S101 - the registry pairs spec and injector
        proxy = proxy_name(inst, self.spec.dependency)
        with contextlib.suppress(ToxiproxyApiError):
            inst.toxiproxy.delete_toxic(proxy, TOXIC_NAME)
        return {"proxy": proxy, "toxics_left": [t.name for t in inst.toxiproxy.toxics(proxy)]}


class ProxyDownInjector(Injector):
    """Disables the dependency's proxy: new connections refused, open ones dropped."""

    def resources(self) -> frozenset[str]:
        """The shared proxy server (see ToxicInjector.resources)."""
        return frozenset({PROXY_SERVER})

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Disable the proxy."""
        assert isinstance(self.spec, ProxyDownFault)  # noqa: S101 - the registry pairs spec and injector
        info = inst.toxiproxy.set_enabled(proxy_name(inst, self.spec.dependency), enabled=False)
        return {"proxy": info.name, "enabled": info.enabled}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Enable it again."""
        assert isinstance(self.spec, ProxyDownFault)  # noqa: S101 - the registry pairs spec and injector
        info = inst.toxiproxy.set_enabled(proxy_name(inst, self.spec.dependency), enabled=True)
        return {"proxy": info.name, "enabled": info.enabled, "listen": info.listen}
