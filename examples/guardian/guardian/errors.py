"""Typed errors raised by guardian library code; only the CLI and the HTTP layer translate them."""

from __future__ import annotations


class GuardianError(Exception):
    """Base class of every error guardian raises on purpose."""


class ConfigError(GuardianError):
    """A command-line flag, environment variable or setting has an invalid value."""


class StoreError(GuardianError):
    """The SQLite store could not complete an operation (disk full, locked, corrupt)."""


class TaskNotFoundError(GuardianError):
    """No task with the requested id exists."""


class InvalidTaskError(GuardianError):
    """A task submission is malformed: unknown kind, bad payload or out-of-bounds cost."""


class TaskStateError(GuardianError):
    """A task is not in a state that allows the requested transition (e.g. cancel a done task)."""


class SettingsError(GuardianError):
    """A settings value is outside its documented bounds."""


class DependencyError(GuardianError):
    """The upstream dependency failed after all retries; the task may be retried later."""


class CircuitOpenError(DependencyError):
    """The circuit breaker is open, so the upstream was not called at all."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        """Record how long until the breaker allows a probe call."""
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentTaskError(GuardianError):
    """A task can never succeed (e.g. the upstream rejected it with a 4xx); fail it now."""


class TaskInterruptedError(GuardianError):
    """The worker is shutting down mid-task; the task is released back to the queue."""


class InstanceRunningError(GuardianError):
    """Another guardian instance already owns this data directory."""
