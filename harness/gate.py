"""The gate plug point: a spec, a policy model, `collect` (runs tools) and a pure `evaluate`."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict

from harness.checks import CheckSpec
from harness.errors import PackError
from harness.model import Verdict

if TYPE_CHECKING:
    from harness.config import CertifyConfigBase
    from harness.context import GateContext, RunServices
    from harness.observer import Observer


class GateSpec(BaseModel):
    """What the runner needs to know about a gate before running it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    title: str
    requirements: tuple[str, ...]
    needs_service: bool = False
    #: True: it measures timing that another gate's CPU use would distort, so it runs with nothing else.
    runs_alone: bool = False
    #: Gates that must have finished before this one starts, when they are planned too.
    after: tuple[str, ...] = ()
    timeout_s: float = 1800.0
    documents: tuple[str, ...] = ()
    #: The checks inside the gate, each with the requirement ids it evidences and the files it writes.
    checks: tuple[CheckSpec, ...] = ()


class Policy(BaseModel):
    """Base of every gate's thresholds table in certify.toml; unknown keys are rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Evidence:
    """Read-only view of the files one gate wrote into a pack; the only input of `evaluate`."""

    def __init__(self, pack_root: Path, gate_id: str, files: tuple[str, ...]) -> None:
        """Bind the view to a pack directory and the files recorded for the gate."""
        self._root = pack_root
        self.gate_id = gate_id
        self.files = files

    @property
    def root(self) -> Path:
        """The pack directory (for readers that take a pack root, such as `certify compare`'s)."""
        return self._root

    def _path(self, name: str) -> Path:
        """Resolve a gate-relative name (or a pack-root document name) to a file in the pack."""
        for candidate in (f"gates/{self.gate_id}/{name}", name):
            if candidate in self.files:
                return self._root / candidate
        msg = f"gate {self.gate_id}: evidence file {name!r} is missing from the pack"
        raise PackError(msg)

    def exists(self, name: str) -> bool:
        """Return whether the gate recorded a file of that name."""
        return f"gates/{self.gate_id}/{name}" in self.files or name in self.files

    def read_bytes(self, name: str) -> bytes:
        """Return a file's bytes."""
        path = self._path(name)
        try:
            return path.read_bytes()
        except OSError as exc:
            msg = f"gate {self.gate_id}: evidence file {name!r} cannot be read: {exc.strerror}"
            raise PackError(msg) from None

    def read_text(self, name: str) -> str:
        """Return a file's text (UTF-8)."""
        try:
            return self.read_bytes(name).decode("utf-8")
        except UnicodeDecodeError:
            msg = f"gate {self.gate_id}: evidence file {name!r} is not UTF-8 text"
            raise PackError(msg) from None

    def read_json(self, name: str) -> Any:
        """Return a JSON file's parsed content."""
        try:
            return json.loads(self.read_text(name))
        except json.JSONDecodeError as exc:
            msg = f"gate {self.gate_id}: evidence file {name!r} is not valid JSON: {exc}"
            raise PackError(msg) from None


class Gate(ABC):
    """One certification gate; subclasses live one per module under gates/."""

    spec: ClassVar[GateSpec]
    policy_model: ClassVar[type[Policy]]

    def policy_for(self, config: CertifyConfigBase) -> Policy:
        """What `collect` and `evaluate` receive: the gate's certify.toml table from the (effective) config.

        A gate whose verdict also rests on run-level parts of the config (G5: the finding waivers
        the certifier's policy grants) adds them here, so `certify verify` recomputes its verdict
        under whichever policy the auditor brings.
        """
        return cast(Policy, config.policy(self.spec.id))

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Expected wall time of `collect` for the plan printed before a run."""
        del policy, mode
        return 10.0

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """Sub-items printed under the gate in the plan (e.g. load profiles and their durations)."""
        del policy, mode
        return []

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """What certify.toml still lacks for this gate to reach a verdict of its own (printed in the plan).

        The base knows one gap: a service gate without a [service] table. Gates add their own.
        """
        del target_dir
        if self.spec.needs_service and config.service is None:
            return ["no [service] table: how the harness starts one instance of the target"]
        return []

    def run_observer(self, policy: Policy, services: RunServices, planned: tuple[str, ...]) -> Observer | None:
        """An observer to run for the whole run (before any gate starts), or None; `planned` lists gate ids."""
        del policy, services, planned
        return None

    @abstractmethod
    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run the tools and write raw evidence through `ctx.evidence`; raise typed errors."""

    @abstractmethod
    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Judge the stored evidence against the policy; pure: reads only `evidence`."""
