"""The Playbook protocol, the playbook model and the registry: the plug point for healing.

A playbook diagnoses one failure mode and repairs it. Each supports ``detect`` (is the fault
present, judged from real state), a side-effect-free ``dry_run`` (the plan), ``execute``,
``verify`` and ``rollback``, plus ``inject`` — how to cause the very fault it heals, so every
playbook can be exercised end to end. Playbooks live one family per module in
:mod:`guardian.healing.book`; :func:`guardian.healing.book.default_registry` lists them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from guardian.errors import GuardianError

if TYPE_CHECKING:
    from guardian.healing.env import HealEnv


class RiskTier(Enum):
    """Governance tier: 1 automatic, 2 needs approval, 3 approval and the change window."""

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


@dataclass(frozen=True)
class ParamSpec:
    """One typed, bounded playbook parameter (the central whitelist checks every value)."""

    name: str
    kind: type  # int or str
    default: int | str
    minimum: int = 0
    maximum: int = 0
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the public JSON shape."""
        return {
            "name": self.name,
            "type": self.kind.__name__,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }


@dataclass(frozen=True)
class PlaybookSpec:
    """What a playbook is: identity, failure mode, tier, parameters and time budget."""

    id: str
    title: str
    failure_mode: str
    tier: RiskTier
    params: tuple[ParamSpec, ...] = ()
    timeout_s: float = 30.0
    verify_timeout_s: float = 10.0
    fault: str = ""
    service: str = "guardian"
    needs_store: bool = True  # False: detect/heal must work while the database is unwritable
    # The privileged actions execute and rollback take (besides the healer's audit entries), in the
    # certifier's S5 vocabulary: signal, restart, file-delete, file-write, file-mode, sqlite-write,
    # config-write (settings rows), process-limit (fsize-limit sets its processes' RLIMIT_FSIZE).
    actions: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        """Return every parameter's default value."""
        return {p.name: p.default for p in self.params}

    def to_json(self) -> dict[str, Any]:
        """Return the public JSON shape."""
        return {
            "id": self.id,
            "title": self.title,
            "failure_mode": self.failure_mode,
            "tier": self.tier.value,
            "params": [p.to_json() for p in self.params],
            "timeout_s": self.timeout_s,
            "verify_timeout_s": self.verify_timeout_s,
            "fault": self.fault,
            "service": self.service,
            "needs_store": self.needs_store,
            "actions": list(self.actions),
        }


@dataclass(frozen=True)
class Detection:
    """A fault found in real state: its diagnosis, the affected subject and the evidence."""

    diagnosis: str
    subject: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What one playbook run may use; ``undo`` is filled by execute for rollback."""

    env: HealEnv
    params: dict[str, Any]
    detection: Detection | None = None
    undo: dict[str, Any] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)


@runtime_checkable
class Playbook(Protocol):
    """One self-healing procedure for one failure mode."""

    @property
    def name(self) -> str:
        """The playbook id."""
        ...

    @property
    def failure_mode(self) -> str:
        """The failure mode it heals."""
        ...

    @property
    def tier(self) -> RiskTier:
        """Its risk tier."""
        ...

    def dry_run(self, context: Any) -> PlaybookOutcome:
        """Describe what ``execute`` would do, without side effects."""
        ...

    def execute(self, context: Any) -> PlaybookOutcome:
        """Apply the repair."""
        ...

    def verify(self, context: Any) -> PlaybookOutcome:
        """Check from real state that the failure mode is gone."""
        ...

    def rollback(self, context: Any) -> PlaybookOutcome:
        """Undo ``execute``."""
        ...


class BasePlaybook:
    """Shared shape of guardian's playbooks: a spec plus detect/plan/execute/rollback/inject."""

    spec: PlaybookSpec
    inject_on_event_loop: ClassVar[bool] = False
    """Whether the API must call ``inject`` on its event loop; else a worker thread runs it, so a
    slow injection (megabytes written) does not stall every request and the supervisor's probe."""

    @property
    def name(self) -> str:
        """The playbook id."""
        return self.spec.id

    @property
    def failure_mode(self) -> str:
        """The failure mode it heals."""
        return self.spec.failure_mode

    @property
    def tier(self) -> RiskTier:
        """Its governance tier."""
        return self.spec.tier

    def detect(self, env: HealEnv, params: dict[str, Any]) -> Detection | None:
        """Return a Detection if the fault is present now, else None."""
        raise NotImplementedError

    def plan(self, ctx: RunContext) -> list[str]:
        """Return the steps ``execute`` would take for ``ctx.detection`` (no side effects)."""
        raise NotImplementedError

    def dry_run(self, context: RunContext) -> PlaybookOutcome:
        """Describe the repair without touching anything."""
        steps = self.plan(context) if context.detection is not None else []
        summary = "; ".join(steps) if steps else "fault not present: nothing to do"
        return PlaybookOutcome(True, summary, {"plan": steps})

    def execute(self, context: RunContext) -> PlaybookOutcome:
        """Apply the repair."""
        raise NotImplementedError

    def verify(self, context: RunContext) -> PlaybookOutcome:
        """Pass when detection no longer finds it."""
        still = self.detect(context.env, context.params)
        if still is None:
            return PlaybookOutcome(True, "fault no longer detected")
        return PlaybookOutcome(False, f"still detected: {still.diagnosis}", still.evidence)

    def rollback(self, context: RunContext) -> PlaybookOutcome:
        """Undo ``execute`` from ``context.undo``."""
        raise NotImplementedError

    def inject(self, env: HealEnv, options: dict[str, Any]) -> dict[str, Any]:
        """Cause the fault this playbook heals in the running instance; return what was done."""
        raise NotImplementedError


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

    def healing(self) -> list[BasePlaybook]:
        """Return the registered playbooks that can detect and inject (all built-in ones)."""
        return [p for _, p in sorted(self._playbooks.items()) if isinstance(p, BasePlaybook)]

    def __len__(self) -> int:
        """Return how many playbooks are registered."""
        return len(self._playbooks)
