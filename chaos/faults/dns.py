"""C2: the dependency's host name stops resolving, for the target's processes only.

The instance runs in a private mount namespace whose /etc/hosts is a file the harness owns (see
chaos/instance.py). The dependency URL the target gets uses a name under the reserved `.invalid` TLD,
listed in that file; the fault rewrites the file in place without the name, so every lookup of the
target fails (the resolver it sees is 127.0.0.1, so nothing is asked of a real DNS server), and the
rollback puts the line back. A name is only looked up when a connection is opened, so the fault also
drops the target's open connections to the dependency (its proxy is disabled and re-enabled at once):
a client that keeps connections alive must reconnect, and resolve, to reach it again. Needs root (a
mount namespace) and `unshare`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from chaos.experiments import DnsFault
from chaos.faults import Injector
from chaos.faults.proxy import PROXY_SERVER, proxy_name
from chaos.instance import MOUNTS, ChaosInstance, ChaosLauncher, InstanceOptions


def rewrite(path: Path, text: str) -> None:
    """Rewrite a file in place (same inode: it is bind-mounted into the target's namespace)."""
    with path.open("r+", encoding="utf-8") as handle:
        handle.seek(0)
        handle.write(text)
        handle.truncate()


class DnsInjector(Injector):
    """Removes the dependency's name from the target's private hosts file for the fault window."""

    def unavailable(self) -> str | None:
        """A private /etc/hosts needs root and unshare(1)."""
        if os.geteuid() != 0:
            return "DNS failure needs a private mount namespace for the target (root); the harness is not root"
        if shutil.which("unshare") is None:
            return "DNS failure needs unshare(1) (util-linux) to give the target a private /etc/hosts"
        return None

    def options(self) -> InstanceOptions:
        """Start the instance namespaced, with the dependency reached by name."""
        assert isinstance(self.spec, DnsFault)  # noqa: S101 - the registry pairs spec and injector
        return InstanceOptions(dns_dependency=self.spec.dependency, dns_hostname=self.spec.hostname)

    def resources(self) -> frozenset[str]:
        """The mount table (the private namespace is a copy of it) and the shared proxy server (its links are cut)."""
        return frozenset({MOUNTS, PROXY_SERVER})

    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Drop the name from the hosts file the target sees."""
        assert inst.hosts_file is not None  # noqa: S101 - options() asked for a namespaced instance
        rewrite(inst.hosts_file, ChaosLauncher.base_hosts())
        assert isinstance(self.spec, DnsFault)  # noqa: S101 - the registry pairs spec and injector
        listed = self.spec.hostname in inst.hosts_file.read_text(encoding="utf-8")
        proxy = proxy_name(inst, self.spec.dependency)
        inst.toxiproxy.set_enabled(proxy, enabled=False)
        inst.toxiproxy.set_enabled(proxy, enabled=True)
        return {"hostname": self.spec.hostname, "listed_in_target_hosts": listed, "open_connections_dropped": True}

    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Put the name back."""
        if inst.hosts_file is None:
            return {"action": "none (no private hosts file)"}
        rewrite(inst.hosts_file, ChaosLauncher.base_hosts() + inst.hosts_entry)
        return {"restored_entry": inst.hosts_entry.strip()}
