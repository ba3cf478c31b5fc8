"""The run-wide observer plug point: something that watches the instances other gates start.

G6 uses it to have one Prometheus scrape the instances of G2's load profiles and G4's chaos
experiments while they run (gates/observability/shared.py). A gate offers an observer through
`Gate.run_observer`; the runner starts at most one before the first gate and stops it after the
last. Gates reach it only through `GateContext.observed` and `GateContext.observe_window`, which do
nothing when no observer is running or it does not watch that gate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Observer(ABC):
    """Watches instances and remembers time windows; every method is thread-safe and never raises to a gate."""

    @abstractmethod
    def watching(self, gate_id: str) -> bool:
        """Whether this observer wants the instances of that gate."""

    @abstractmethod
    def watch(self, gate_id: str, name: str, base_url: str) -> None:
        """Start watching an instance; returns once it has been observed at least once (or gave up)."""

    @abstractmethod
    def unwatch(self, gate_id: str, name: str) -> None:
        """Observe the instance once more, then stop watching it (called before the instance stops)."""

    @abstractmethod
    def window(self, gate_id: str, name: str, *, kind: str, start: float, end: float, info: dict[str, Any]) -> None:
        """Remember a time window (unix seconds) of a watched instance: a load profile, a chaos fault."""

    @abstractmethod
    def stop(self) -> None:
        """Stop whatever the observer started (by pid); idempotent."""
