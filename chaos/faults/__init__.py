"""Fault injectors: one small interface, one module per kind of fault (process, proxy, dependency, DNS, disk...).

An injector says whether it can run on this machine (`unavailable` → NOT_RUN with the reason) or is
meaningless here (`not_applicable`), what it needs from the instance (`options`), what it touches
that other experiments' instances share (`resources`, see chaos/schedule.py), and injects and
removes its fault; both return facts that go into the evidence. `remove` is always called, in a
`finally`, once `inject` has started, and must be safe to call when `inject` failed half-way.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from chaos.experiments import Spec
from chaos.instance import ChaosInstance, InstanceOptions


class Injector(ABC):
    """One fault: check, inject, remove."""

    #: A fault that is over as soon as it is injected (a kill): there is no window to wait out.
    instantaneous: ClassVar[bool] = False

    def __init__(self, spec: Spec) -> None:
        """Bind to the fault's config table; `rng` (set per repetition) makes its random choices replayable."""
        self.spec = spec
        self.rng: random.Random | None = None

    def unavailable(self) -> str | None:
        """Why this fault cannot be injected on this machine (the experiment is NOT_RUN), or None."""
        return None

    def not_applicable(self) -> str | None:
        """Why this fault does not apply to this machine at all (nothing to pressure), or None."""
        return None

    def options(self) -> InstanceOptions:
        """What the experiment's instance must be started with."""
        return InstanceOptions()

    def resources(self) -> frozenset[str]:
        """Things beyond its own instance this fault uses or changes: experiments sharing one never overlap."""
        return frozenset()

    @abstractmethod
    def inject(self, inst: ChaosInstance) -> dict[str, Any]:
        """Apply the fault; facts showing it took effect."""

    @abstractmethod
    def remove(self, inst: ChaosInstance) -> dict[str, Any]:
        """Remove the fault (idempotent; also after a failed inject); facts."""


def injector_for(spec: Spec) -> Injector:
    """The injector of a fault table, by its `type`."""
    from chaos.faults import database, dependency, disk, dns, memory, process, proxy  # noqa: PLC0415 - avoid a cycle

    kinds: dict[str, type[Injector]] = {
        "kill": process.KillInjector,
        "toxic": proxy.ToxicInjector,
        "proxy_down": proxy.ProxyDownInjector,
        "http_control": dependency.ControlInjector,
        "dependency_kill": database.DependencyKillInjector,
        "pg_lock": database.PgLockInjector,
        "dns": dns.DnsInjector,
        "disk_full": disk.DiskFullInjector,
        "read_only": disk.ReadOnlyInjector,
        "file_lock": disk.FileLockInjector,
        "memory_limit": memory.MemoryLimitInjector,
        "gpu_pressure": memory.GpuPressureInjector,
    }
    return kinds[str(spec.model_dump()["type"])](spec)
