"""The catalogue of gates a certificate can require, and the implementations this version ships."""

from __future__ import annotations

import functools
import importlib
import os
from typing import TYPE_CHECKING

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.gate import Gate

#: Every gate id a certificate may name, with its title and the requirement ids it evidences.
CATALOGUE: dict[str, tuple[str, tuple[str, ...]]] = {
    "ID": ("Target identity and version consistency", ("R4",)),
    "G1": ("Test coverage", ("G1",)),
    "G2": ("Latency under load (p99)", ("G2", "P1", "P2", "P3", "P4", "P5")),
    "G3": ("Error rate under load", ("G3",)),
    "G4": ("Chaos recovery", ("G4", "C1", "C2", "C3", "C4", "C5")),
    "G5": ("Security", ("G5", "S1", "S2", "S3", "S4", "S8")),
    "G6": ("Observability", ("G6", "O1", "O2", "O3", "O4", "O5")),
    "G7": ("Bootstrap time", ("G7", "X1")),
    "G8": ("Docs", ("G8", "D1", "D2", "D3", "D4")),
    "PB": ("Self-healing playbooks", ("H1", "H2", "H5", "H8", "H9", "H10", "H11", "H13")),
    "E2E": ("End-to-end journeys", ("E1", "E2", "E3", "E4")),
    "SOAK": ("Soak: P4 load and the self-healing loop", ("H15",)),
}
GATE_IDS: tuple[str, ...] = tuple(CATALOGUE)
#: Gates a target requires only when it (or the policy) names them: the soak runs for days.
OPT_IN_GATES: tuple[str, ...] = ("SOAK",)
#: What [certificate] required_gates defaults to.
DEFAULT_REQUIRED_GATES: tuple[str, ...] = tuple(gate for gate in GATE_IDS if gate not in OPT_IN_GATES)
PLUGINS_ENV = "CERTIFY_PLUGINS"


def _plugin_gates() -> list[Gate]:
    """Gates from the modules named in $CERTIFY_PLUGINS (comma-separated; each exposes GATES)."""
    gates: list[Gate] = []
    for name in filter(None, (part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            msg = f"{PLUGINS_ENV}: cannot import gate plugin {name!r}: {exc}"
            raise ConfigError(msg) from None
        found = getattr(module, "GATES", None)
        if not isinstance(found, tuple):
            msg = f"{PLUGINS_ENV}: module {name!r} has no GATES tuple"
            raise ConfigError(msg)
        gates.extend(found)
    return gates


@functools.cache
def all_gates() -> tuple[Gate, ...]:
    """The gate implementations available: this version's, in catalogue order, then plugins."""
    from gates import ALL_GATES  # noqa: PLC0415 - gates import the harness; import late to avoid a cycle

    shipped = sorted(ALL_GATES, key=lambda gate: GATE_IDS.index(gate.spec.id))
    return (*shipped, *_plugin_gates())


def catalogue() -> dict[str, tuple[str, tuple[str, ...]]]:
    """The catalogue plus any plugin gates."""
    known = dict(CATALOGUE)
    for gate in all_gates():
        known.setdefault(gate.spec.id, (gate.spec.title, gate.spec.requirements))
    return known


def implemented(gate_id: str) -> Gate | None:
    """The implementation of a catalogue gate, or None when this version has none yet."""
    for gate in all_gates():
        if gate.spec.id == gate_id:
            return gate
    return None
