"""Typed errors raised by the harness; only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the CLI reports as one line; `exit_code` picks the process status."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        """Keep the one-line message and an optional hint for the user."""
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(HarnessError):
    """certify.toml is missing, is not TOML, or does not match the schema."""


class UsageError(HarnessError):
    """The command line asks for something that cannot be done (unknown gate, bad path)."""


class TargetError(HarnessError):
    """The target could not be installed or started; carries the captured output's tail."""

    exit_code = 3

    def __init__(self, message: str, hint: str | None = None, output_files: tuple[object, ...] = ()) -> None:
        """Keep the message and the paths of the output captured before the failure."""
        super().__init__(message, hint)
        self.output_files = output_files


class PackError(HarnessError):
    """An evidence pack cannot be read, or an output directory cannot be written safely."""


class ToolMissingError(HarnessError):
    """A tool a gate needs is not installed; the gate reports NOT_RUN with the install hint."""

    exit_code = 3


class ToolFailedError(HarnessError):
    """A tool ran but its output cannot be trusted (crashed, unparsable output)."""

    exit_code = 3


class RunInterruptedError(HarnessError):
    """The run was stopped by SIGINT or SIGTERM; the pack is marked INCOMPLETE."""

    exit_code = 130


class FetchError(HarnessError):
    """A download the harness was asked for could not be made or verified (`certify advisory-db update`)."""

    exit_code = 5
