"""Guardian's built-in playbooks, one module per family, and the default registry.

Only playbooks that really detect, heal and verify a fault injected into a running instance,
with an end-to-end test proving it, are listed here (see docs/playbooks/).
"""

from __future__ import annotations

from guardian.healing.book import (
    canaries,
    config,
    dependency,
    disk,
    files,
    integrity,
    network,
    processes,
    storage,
    tasks,
)
from guardian.healing.playbooks import BasePlaybook, PlaybookRegistry

PLAYBOOK_CLASSES: tuple[type[BasePlaybook], ...] = (
    *files.PLAYBOOKS,
    *storage.PLAYBOOKS,
    *tasks.PLAYBOOKS,
    *processes.PLAYBOOKS,
    *config.PLAYBOOKS,
    *dependency.PLAYBOOKS,
    *network.PLAYBOOKS,
    *integrity.PLAYBOOKS,
    *disk.PLAYBOOKS,
    *canaries.PLAYBOOKS,
)


def default_registry() -> PlaybookRegistry:
    """Return a registry holding one instance of every built-in playbook."""
    registry = PlaybookRegistry()
    for cls in PLAYBOOK_CLASSES:
        registry.register(cls())
    return registry
