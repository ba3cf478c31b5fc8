"""The certifier's policy: required gates, every threshold's limit, not-applicable terms and waivers.

A policy is its own TOML file, written by the organisation that certifies, never by the target. The
harness ships a standard one (harness/policies/standard.toml, from the requirement catalogue); an
organisation passes its own with `--policy FILE`. Its identity is name, version and the sha256 of
the file's bytes, and every output names all three.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import __version__
from harness.compare_rules import RegressionRules
from harness.config import format_validation_error, parse_toml, read_settings_file
from harness.errors import ConfigError
from harness.registry import catalogue
from harness.requirements import requirement_catalogue

STANDARD_POLICY = "standard.toml"
POLICY_COPY = "policy.toml"
Scalar = bool | int | float | str


class PolicyError(ConfigError):
    """A policy file is missing, is not TOML, or does not match the policy model (exit 2)."""


class _Table(BaseModel):
    """Base of every policy table: frozen, unknown keys rejected, no NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PolicyMeta(_Table):
    """Identity and the run-level rules of a policy."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="Policy name.")
    version: str = Field(min_length=1, max_length=64, description="Policy version, as its authors number it.")
    description: str = Field("", description="One line on what the policy is for.")
    modes: tuple[str, ...] = Field(("release", "ci"), description="Run modes the policy accepts at all.")
    required_gates: tuple[str, ...] = Field(description="Gates that must PASS for CERTIFIED.")
    release_gates: tuple[str, ...] = Field(
        (),
        description="Gates required in release mode only (hours-long ones such as SOAK): a release run runs them "
        "and cannot certify without their PASS; a ci run neither runs nor requires them, and its plan and "
        "merge-gate report say so. Dropped when every requirement the gate evidences is allowed not applicable.",
    )
    requirements: tuple[str, ...] = Field((), description="Catalogue requirement ids the policy holds a target to.")
    out_of_scope: dict[str, str] = Field(
        default_factory=dict, description="Catalogue requirement ids the policy leaves out, each with the reason."
    )

    @field_validator("requirements", "out_of_scope")
    @classmethod
    def _known_requirements(cls, value: tuple[str, ...] | dict[str, str]) -> tuple[str, ...] | dict[str, str]:
        """Every requirement id must be one of the catalogue the harness ships."""
        known = requirement_catalogue().ids
        unknown = [requirement for requirement in value if requirement not in known]
        if unknown:
            msg = f"unknown requirement id(s) {', '.join(unknown)}; see harness/data/requirements.toml"
            raise ValueError(msg)
        return value

    @field_validator("required_gates", "release_gates")
    @classmethod
    def _known_gates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Every required gate must be one the harness defines."""
        unknown = [gate for gate in value if gate not in catalogue()]
        if unknown:
            msg = f"unknown gate(s) {', '.join(unknown)}; known: {', '.join(catalogue())}"
            raise ValueError(msg)
        return value

    @field_validator("modes")
    @classmethod
    def _known_modes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Only the harness's run modes."""
        unknown = [mode for mode in value if mode not in ("release", "ci")]
        if unknown:
            msg = f"unknown mode(s) {', '.join(unknown)}; known: release, ci"
            raise ValueError(msg)
        return value


KINDS = ("floor", "ceiling", "equals", "one_of", "includes", "subset_of", "not_empty")


class Limit(_Table):
    """The bound of one certify.toml key: exactly one kind (KINDS: floor, ceiling, equals, one_of, ...)."""

    floor: float | None = Field(None, description="The target's value must be at least this.")
    ceiling: float | None = Field(None, description="The target's value must be at most this.")
    equals: Scalar | None = Field(None, description="The target's value must be exactly this.")
    one_of: tuple[Scalar, ...] | None = Field(None, min_length=1, description="Allowed values, loosest last.")
    includes: tuple[Scalar, ...] | None = Field(None, min_length=1, description="A list holding all of these.")
    subset_of: tuple[Scalar, ...] | None = Field(None, min_length=1, description="A list holding only these.")
    not_empty: Literal[True] | None = Field(
        None,
        description="The target's string or list may not be empty (an empty one turns a check off); "
        "there is no bound to judge at, so the deviation always blocks.",
    )
    exempt: tuple[str, ...] = Field(
        (),
        description="For a key with `*`: items (by id or name) the limit does not bound, e.g. the experiments "
        "the policy lets a target mark optional.",
    )
    gate: str | None = Field(None, description="Gate the key belongs to; default: from the key (gates.<id>.).")
    why: str = Field("", description="The requirement figure behind the limit, in words.")
    clamp: bool = Field(
        default=True,
        description="Judge a looser target value at the policy's bound (thresholds); false for run shapes such as "
        "durations: the run keeps the target's value and the deviation blocks "
        "(an abbreviated soak is never stretched).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Limit:
        """A limit is exactly one kind of bound."""
        kinds = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            msg = f"a limit needs exactly one of {', '.join(KINDS)} (got {kinds or 'none'})"
            raise ValueError(msg)
        return self

    @property
    def kind(self) -> str:
        """Which bound this is."""
        return next(k for k in KINDS if getattr(self, k) is not None)

    def text(self) -> str:
        """The bound in words, e.g. `>= 75`, `one of low, medium, high` or `== false (except C4-gpu)`."""
        bound = getattr(self, self.kind)
        words = {
            "floor": ">=",
            "ceiling": "<=",
            "equals": "==",
            "one_of": "one of",
            "includes": "includes",
            "subset_of": "only of",
            "not_empty": "not empty",
        }
        shown = ", ".join(map(_scalar_text, bound)) if isinstance(bound, tuple) else _scalar_text(bound)
        text = words[self.kind] if self.kind == "not_empty" else f"{words[self.kind]} {shown}"
        return text + (f" (except {', '.join(self.exempt)})" if self.exempt else "")


class NotApplicableTerms(_Table):
    """A gate the target may declare not applicable, and the terms under which it may."""

    terms: str = Field(min_length=1, description="When the declaration is acceptable, in words.")
    unconfigured: bool = Field(
        False,
        description="Gates only: the declaration holds only while certify.toml configures nothing for the gate "
        "(its [gates.<id>] table absent or at its defaults); a target that configures it is not N/A.",
    )
    requirements: tuple[str, ...] = Field(
        (),
        description="Gates only: catalogue requirements that are N/A together with the gate, beyond the ones "
        "the gate names as its own (e.g. those only its checks evidence).",
    )


class PolicyWaiver(_Table):
    """An exception the certifier grants: what it accepts, why, who owns and approved it, until when."""

    gate: str | None = Field(None, description="Gate the waiver is for (or give `requirement`).")
    requirement: str | None = Field(None, description="Catalogue requirement the waiver is for.")
    finding: str | None = Field(None, description="Exact finding id accepted (e.g. a G5 advisory id).")
    deviation: str | None = Field(None, description="Exact deviation id accepted (see `certify policy check`).")
    value: Scalar | tuple[Scalar, ...] | None = Field(None, description="For a limit deviation: the exact value.")
    target: str | None = Field(None, description="Target name the waiver applies to; unset: any target.")
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    approved_by: str = Field(min_length=1)
    expires: dt.date
    rotated: dt.date | None = Field(
        None, description="For a G5 secret finding: the day the credential was rotated (required to accept one)."
    )

    @model_validator(mode="after")
    def _names_what(self) -> PolicyWaiver:
        """A waiver names a gate or requirement, and exactly one finding or deviation."""
        if (self.gate is None) == (self.requirement is None):
            raise ValueError("a waiver names exactly one of gate or requirement")
        if (self.finding is None) == (self.deviation is None):
            raise ValueError("a waiver names exactly one of finding or deviation")
        return self

    @property
    def subject(self) -> str:
        """What the waiver is for, e.g. `G5 finding PYSEC-1` or `deviation limit:gates.G1.min_critical_pct`."""
        scope = self.gate or f"requirement {self.requirement}"
        return f"{scope} finding {self.finding}" if self.finding else f"{scope} deviation {self.deviation}"


class Policy(_Table):
    """A whole policy file."""

    policy: PolicyMeta
    limits: dict[str, Limit] = Field(default_factory=dict, description="Dotted certify.toml key -> its bound.")
    not_applicable: dict[str, NotApplicableTerms] = Field(
        default_factory=dict, description="Gates that may be declared not applicable, with their terms."
    )
    waivers: tuple[PolicyWaiver, ...] = Field((), description="Waivers the certifier grants.")
    regression: RegressionRules = Field(
        default_factory=RegressionRules, description="When a difference between two packs is a regression."
    )

    @field_validator("limits")
    @classmethod
    def _exempt_needs_a_wildcard(cls, value: dict[str, Limit]) -> dict[str, Limit]:
        """`exempt` names items of a `*`; on a key without one it would exempt nothing."""
        bad = [key for key, limit in value.items() if limit.exempt and "*" not in key.split(".")]
        if bad:
            msg = f"limit {bad[0]!r}: exempt needs a key with `*` (it names items of that list or table)"
            raise ValueError(msg)
        return value

    @field_validator("not_applicable")
    @classmethod
    def _known_na_gates(cls, value: dict[str, NotApplicableTerms]) -> dict[str, NotApplicableTerms]:
        """Only known gates and catalogue requirements may be given not-applicable terms."""
        requirements = {r.id for r in requirement_catalogue().requirements}
        unknown = [key for key in value if key not in catalogue() and key not in requirements]
        if unknown:
            msg = f"unknown gate(s) or requirement(s) {', '.join(unknown)}"
            raise ValueError(msg)
        bad = [
            key for key, terms in value.items() if (terms.unconfigured or terms.requirements) and key not in catalogue()
        ]
        if bad:
            msg = f"not_applicable.{bad[0]}: unconfigured and requirements apply to gates only"
            raise ValueError(msg)
        unknown = [r for terms in value.values() for r in terms.requirements if r not in requirements]
        if unknown:
            msg = f"not_applicable: unknown requirement(s) {', '.join(unknown)}"
            raise ValueError(msg)
        return value


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy with its identity: the exact bytes it was read from, their sha256, and where from."""

    policy: Policy
    raw: bytes
    sha256: str
    source: str

    @property
    def name(self) -> str:
        """The policy's name."""
        return self.policy.policy.name

    @property
    def version(self) -> str:
        """The policy's version."""
        return self.policy.policy.version

    def identity(self) -> dict[str, str]:
        """Name, version, sha256 and source, as recorded in run.json and printed everywhere."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "source": self.source}

    def label(self) -> str:
        """One line naming the policy: `standard 1 (sha256 ab12...)`."""
        return f"{self.name} {self.version} (sha256 {self.sha256})"


def _na_terms_text(terms: NotApplicableTerms) -> str:
    """The terms of a not-applicable declaration in one line, with what the harness checks of them."""
    text = terms.terms
    if terms.unconfigured:
        text += " (checked: certify.toml configures nothing for it)"
    if terms.requirements:
        text += f"; N/A with it: {', '.join(terms.requirements)}"
    return text


def _scalar_text(value: object) -> str:
    """A bound's value as printed (booleans in TOML spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_policy(raw: bytes, source: str) -> LoadedPolicy:
    """Parse and validate a policy from its bytes; every problem is one PolicyError line naming source and key."""
    data = parse_toml(raw, source, PolicyError)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(format_validation_error(source, exc)) from None
    return LoadedPolicy(policy=policy, raw=raw, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def standard_policy() -> LoadedPolicy:
    """The standard policy shipped with the harness."""
    raw = importlib.resources.files("harness").joinpath("policies", STANDARD_POLICY).read_bytes()
    return parse_policy(
        raw, f"the standard policy shipped with release-harness {__version__} (harness/policies/{STANDARD_POLICY})"
    )


def load_policy(path: Path | None) -> LoadedPolicy:
    """The policy in `path`, or the standard policy when `path` is None."""
    if path is None:
        return standard_policy()
    hint = "--policy names the certifier's policy file (see `certify policy show`)"
    return parse_policy(read_settings_file(path, hint, PolicyError), str(path))


def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors."""
    schema = Policy.model_json_schema()
    schema["title"] = "release-harness policy"
    return schema


def describe(loaded: LoadedPolicy) -> list[str]:
    """The effective policy in human lines, for `certify policy show`."""
    meta = loaded.policy.policy
    lines = [
        f"policy {loaded.label()}",
        f"  source: {loaded.source}",
        *([f"  {meta.description}"] if meta.description else []),
        f"  modes accepted: {', '.join(meta.modes)} (only release can certify)",
        f"  required gates: {', '.join(meta.required_gates)}",
        *([f"  required in release mode only: {', '.join(meta.release_gates)}"] if meta.release_gates else []),
        f"  requirements in scope: {', '.join(meta.requirements) or 'none listed'}",
    ]
    if meta.out_of_scope:
        lines.append("  requirements out of scope:")
        lines += [f"    {requirement}: {reason}" for requirement, reason in meta.out_of_scope.items()]
    lines.append("  may be declared not applicable:")
    lines += [f"    {gate}: {_na_terms_text(terms)}" for gate, terms in loaded.policy.not_applicable.items()] or [
        "    none"
    ]
    lines.append("  limits (certify.toml may be stricter, never looser):")
    for key, limit in loaded.policy.limits.items():
        lines.append(f"    {key} {limit.text()}" + (f"  ({limit.why})" if limit.why else ""))
    lines.append("  waivers:")
    for waiver in loaded.policy.waivers:
        lines.append(
            f"    {waiver.subject}{f' = {waiver.value}' if waiver.value is not None else ''}"
            f"{f' for target {waiver.target}' if waiver.target else ''}: {waiver.reason} "
            f"(owner {waiver.owner}, approved by {waiver.approved_by}, expires {waiver.expires.isoformat()})"
        )
    if not loaded.policy.waivers:
        lines.append("    none")
    lines += ["  regression (certify compare):", *(f"    {line}" for line in loaded.policy.regression.describe())]
    return lines


def policy_json(loaded: LoadedPolicy) -> dict[str, Any]:
    """The parsed policy as JSON-ready data (defaults filled in)."""
    return loaded.policy.model_dump(mode="json")
