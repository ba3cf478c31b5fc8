"""The Playbook protocol and its registry: the plug point for self-healing actions.

A playbook diagnoses one failure mode and repairs it. Each must support a side-effect-free
``dry_run``, ``execute``, ``verify`` (did the repair work, judged from real state) and
``rollback``. The registry starts empty; no playbook ships with guardian yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from guardian.errors import GuardianError


class RiskTier(Enum):
    """Governance tier of a playbook's actions; tiers 2 and 3 need approval."""

    TIER_1 = 1
    TIER_2 = 2
    TIER_3 = 3


class PlaybookError(GuardianError):
    """A playbook could not be registered or run."""


@dataclass(frozen=True)
class PlaybookOutcome:
    """The result of one playbook step, with the evidence it was judged on."""

    ok: bool
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Playbook(Protocol):
    """One self-healing procedure for one failure mode."""

    name: str
    failure_mode: str
    tier: RiskTier

    def dry_run(self, context: dict[str, Any]) -> PlaybookOutcome:
        """Describe what ``execute`` would do, without side effects."""
        ...

    def execute(self, context: dict[str, Any]) -> PlaybookOutcome:
        """Apply the repair."""
        ...

    def verify(self, context: dict[str, Any]) -> PlaybookOutcome:
        """Check from real state that the failure mode is gone."""
        ...

    def rollback(self, context: dict[str, Any]) -> PlaybookOutcome:
        """Undo ``execute``."""
        ...


class PlaybookRegistry:
    """Name → playbook mapping; refuses duplicates and objects missing the protocol."""

    def __init__(self) -> None:
        """Start empty."""
        self._playbooks: dict[str, Playbook] = {}

    def register(self, playbook: Playbook) -> None:
        """Add a playbook under its unique name."""
        if not isinstance(playbook, Playbook):
            raise PlaybookError(f"{playbook!r} does not implement the Playbook protocol")
        if playbook.name in self._playbooks:
            raise PlaybookError(f"playbook {playbook.name!r} is already registered")
        self._playbooks[playbook.name] = playbook

    def get(self, name: str) -> Playbook:
        """Return the playbook called ``name``."""
        try:
            return self._playbooks[name]
        except KeyError as exc:
            raise PlaybookError(f"no playbook named {name!r}") from exc

    def names(self) -> list[str]:
        """Return registered names, sorted."""
        return sorted(self._playbooks)

    def __len__(self) -> int:
        """Return how many playbooks are registered."""
        return len(self._playbooks)
