"""The requirement catalogue this harness version ships (harness/data/requirements.toml), loaded and checked."""

from __future__ import annotations

import functools
import importlib.resources
import tomllib
from dataclasses import dataclass

from harness.errors import ConfigError

CATALOGUE_FILE = "requirements.toml"


@dataclass(frozen=True)
class Requirement:
    """One catalogue requirement: its stable id, group, text and the catalogue's figure (empty if none)."""

    id: str
    group: str
    text: str
    figure: str


@dataclass(frozen=True)
class RequirementCatalogue:
    """Every requirement id, in catalogue order, and the catalogue's version."""

    version: str
    requirements: tuple[Requirement, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """The requirement ids in catalogue order."""
        return tuple(requirement.id for requirement in self.requirements)

    def get(self, requirement_id: str) -> Requirement | None:
        """The requirement of that id, or None."""
        return next((r for r in self.requirements if r.id == requirement_id), None)


def parse_catalogue(raw: bytes, source: str) -> RequirementCatalogue:
    """A catalogue from its TOML bytes; a malformed one is a ConfigError naming the source and id."""
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        msg = f"{source}: not a TOML requirement catalogue: {exc}"
        raise ConfigError(msg) from None
    entries = data.get("requirements")
    if not isinstance(entries, dict) or not entries:
        msg = f"{source}: no [requirements.<id>] tables"
        raise ConfigError(msg)
    requirements = []
    for requirement_id, entry in entries.items():
        fields = {key: entry.get(key) if isinstance(entry, dict) else None for key in ("group", "text", "figure")}
        if not all(isinstance(value, str) for value in fields.values()) or not fields["text"]:
            msg = f"{source}: requirements.{requirement_id} needs string group, text and figure"
            raise ConfigError(msg)
        requirements.append(Requirement(id=requirement_id, **fields))  # type: ignore[arg-type]
    version = str((data.get("catalogue") or {}).get("version", ""))
    return RequirementCatalogue(version=version, requirements=tuple(requirements))


@functools.cache
def requirement_catalogue() -> RequirementCatalogue:
    """The catalogue shipped with this harness version."""
    raw = importlib.resources.files("harness").joinpath("data", CATALOGUE_FILE).read_bytes()
    return parse_catalogue(raw, f"harness/data/{CATALOGUE_FILE}")
