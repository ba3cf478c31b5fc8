"""Registry of fault hooks: how to inject the failure a playbook is meant to heal.

A hook is a pair of callables, ``inject`` and ``clear``, registered under the failure mode
name. The harness (or a test) looks a hook up to provoke the failure, lets the playbook run,
then always calls ``clear``. No hooks are registered by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from guardian.errors import GuardianError


class FaultHookError(GuardianError):
    """A fault hook could not be registered or found."""


@dataclass(frozen=True)
class FaultHook:
    """How to cause and how to undo one failure mode."""

    failure_mode: str
    description: str
    inject: Callable[[], None]
    clear: Callable[[], None]


class FaultHookRegistry:
    """Failure mode → fault hook."""

    def __init__(self) -> None:
        """Start empty."""
        self._hooks: dict[str, FaultHook] = {}

    def register(self, hook: FaultHook) -> None:
        """Add a hook; one per failure mode."""
        if hook.failure_mode in self._hooks:
            raise FaultHookError(f"a hook for {hook.failure_mode!r} is already registered")
        self._hooks[hook.failure_mode] = hook

    def get(self, failure_mode: str) -> FaultHook:
        """Return the hook for ``failure_mode``."""
        try:
            return self._hooks[failure_mode]
        except KeyError as exc:
            raise FaultHookError(f"no fault hook for {failure_mode!r}") from exc

    def failure_modes(self) -> list[str]:
        """Return the failure modes that have hooks, sorted."""
        return sorted(self._hooks)
