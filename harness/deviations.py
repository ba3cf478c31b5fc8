"""Deviations of a target's certify.toml and run arguments from the policy; pure, computed before any gate runs.

`deviations(policy, config, run_args)` lists every way the run would be weaker than the policy: a
looser threshold, a required gate left out (of [certificate] required_gates or by --gates in release
mode), a gate declared not applicable where the policy forbids it, a mode the policy does not
accept, a waiver the target wrote for itself. A deviation the policy waives (an honoured waiver:
matching, unexpired) is shown with who waived it until when; any other blocks the certificate.
`effective_config` then gives the gates the bar they are judged against: the stricter of the two.
The policy's `release_gates` (the soak) are required in release mode only: a ci run leaves them
out, and its report names them (`release_only`).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from harness.config import CertifyConfigBase, parse_config, resolved_json
from harness.errors import ConfigError
from harness.policy import LoadedPolicy, PolicyError, PolicyWaiver
from harness.policy_limits import LimitMiss, limit_misses, same_value, value_text
from harness.registry import catalogue
from harness.requirements import requirement_catalogue

DEVIATIONS_FORMAT = "release-harness-deviations/1"
DEVIATIONS_FILE = "deviations.json"
Kind = Literal["limit", "required-gate", "gates-subset", "mode", "not-applicable", "requested-waiver"]


@dataclass(frozen=True)
class RunArgs:
    """The run arguments that matter to the policy: mode, the --gates selection, the run's date."""

    mode: str
    gates: tuple[str, ...] | None
    run_date: dt.date


class WaivedBy(BaseModel):
    """The policy waiver that accepts a deviation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    owner: str
    approved_by: str
    expires: str


class Deviation(BaseModel):
    """One way the run is weaker than the policy; blocking unless `waived_by` is set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    kind: Kind
    gate: str | None
    requirements: tuple[str, ...]
    what: str
    policy_limit: str
    target_value: str
    value: Any = None
    policy_key: str | None = None
    waived_by: WaivedBy | None = None

    @property
    def blocking(self) -> bool:
        """Whether this deviation stands between the run and a certificate."""
        return self.waived_by is None


class NotApplicable(BaseModel):
    """A gate or a catalogue requirement the target declared not applicable, as the policy allows.

    A gate is then not required, not run by default and N/A on every report; a requirement is N/A in the
    traceability matrix.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gate: str  # the gate id, or the requirement id of a requirement-level declaration (the format predates those)
    reason: str
    terms: str


class DeviationReport(BaseModel):
    """Everything the policy check found: deviations, allowed N/A declarations, waivers not honoured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = DEVIATIONS_FORMAT
    policy: dict[str, str]
    required_gates: tuple[str, ...]
    deviations: tuple[Deviation, ...]
    not_applicable: tuple[NotApplicable, ...] = ()
    waivers_not_honoured: tuple[str, ...] = ()
    requested_waivers_granted: tuple[str, ...] = ()
    #: Gates the policy requires in release mode only, left out of this ci run (empty in release mode).
    release_only: tuple[str, ...] = ()

    @model_serializer(mode="wrap")
    def _omit_empty_release_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave `release_only` out when empty, so packs from before it recompute byte for byte."""
        data: dict[str, Any] = handler(self)
        if not data.get("release_only"):
            data.pop("release_only", None)
        return data

    @property
    def blocking(self) -> tuple[Deviation, ...]:
        """The deviations no honoured waiver accepts."""
        return tuple(d for d in self.deviations if d.blocking)

    def lines(self) -> list[str]:
        """Human lines: blocking first, then waived ones, N/A declarations and waivers not honoured."""
        lines = [f"policy {self.policy['name']} {self.policy['version']} (sha256 {self.policy['sha256']})"]
        blocking = self.blocking
        if blocking:
            lines.append(f"NOT CERTIFIABLE: {len(blocking)} unwaived deviation(s) from the policy:")
        lines += [f"  BLOCKING {d.id}: {d.what}" for d in blocking]
        for deviation in self.deviations:
            if deviation.waived_by is not None:
                w = deviation.waived_by
                lines.append(
                    f"  waived   {deviation.id}: {deviation.what}; waived by {w.approved_by} "
                    f"(owner {w.owner}) until {w.expires}: {w.reason}"
                )
        lines += [
            f"  not applicable {na.gate} (allowed on terms: {na.terms}): {na.reason}" for na in self.not_applicable
        ]
        lines += [f"  requested waiver granted by the policy: {text}" for text in self.requested_waivers_granted]
        lines += [f"  policy waiver not honoured: {text}" for text in self.waivers_not_honoured]
        lines += [f"  {release_only_note(gate)}" for gate in self.release_only]
        if not self.deviations:
            lines.append("  no deviation: certify.toml is at least as strict as the policy")
        return lines


def _requirements_of(gate: str | None) -> tuple[str, ...]:
    """The catalogue requirements a gate evidences."""
    known = catalogue()
    return known[gate][1] if gate in known else ()


def _limit_deviations(loaded: LoadedPolicy, data: dict[str, Any]) -> list[tuple[Deviation, LimitMiss]]:
    """Every target value looser than its limit, as a deviation with the miss it comes from."""
    found = []
    for miss in limit_misses(loaded, data):
        limit = miss.limit
        deviation = Deviation(
            id=f"limit:{miss.shown}",
            kind="limit",
            gate=miss.gate,
            requirements=_requirements_of(miss.gate),
            what=f"{miss.shown} = {value_text(miss.value)} is looser than the policy's {limit.text()}"
            + (f" ({limit.why})" if limit.why else ""),
            policy_limit=limit.text(),
            target_value=value_text(miss.value),
            value=miss.value,
            policy_key=miss.key,
        )
        found.append((deviation, miss))
    return found


def _gate_deviation(kind: Kind, gate: str, *, what: str, policy_limit: str, target_value: str) -> Deviation:
    """A deviation about one gate, identified as `kind:gate` and carrying that gate's requirement ids."""
    return Deviation(
        id=f"{kind}:{gate}",
        kind=kind,
        gate=gate,
        requirements=_requirements_of(gate),
        what=what,
        policy_limit=policy_limit,
        target_value=target_value,
    )


def _gate_deviations(
    loaded: LoadedPolicy, config: CertifyConfigBase, args: RunArgs, allowed_na: Container[str]
) -> list[Deviation]:
    """Required gates left out, not-applicable declarations the policy forbids, --gates subsets, the mode."""
    meta = loaded.policy.policy
    found = []
    declared = dict(getattr(config.certificate, "not_applicable", {}) or {})
    for key, reason in sorted(declared.items(), key=lambda item: _catalogue_position(item[0])):
        if key not in allowed_na:
            found.append(_na_deviation(loaded, config, key, reason))
    for gate in meta.required_gates:
        if gate not in config.certificate.required_gates and gate not in allowed_na:
            found.append(
                _gate_deviation(
                    "required-gate",
                    gate,
                    what=f"{gate} is required by the policy but left out of [certificate] required_gates",
                    policy_limit="required",
                    target_value="left out of required_gates",
                )
            )
    if args.mode == "release" and args.gates is not None:
        for gate in effective_required(loaded, config, allowed_na, args.mode):
            if gate not in args.gates:
                found.append(
                    _gate_deviation(
                        "gates-subset",
                        gate,
                        what=f"{gate} is required but left out by --gates {','.join(args.gates)} in a release run",
                        policy_limit="every required gate runs in a release run",
                        target_value=f"--gates {','.join(args.gates)}",
                    )
                )
    if args.mode not in meta.modes:
        found.append(
            Deviation(
                id=f"mode:{args.mode}",
                kind="mode",
                gate=None,
                requirements=(),
                what=f"the run is in {args.mode} mode; the policy accepts {', '.join(meta.modes) or 'no mode'}",
                policy_limit=f"mode one of {', '.join(meta.modes)}",
                target_value=args.mode,
            )
        )
    return found


def _finding_waiver_live(waiver: PolicyWaiver, target: str, gate: str, finding: str, day: dt.date) -> bool:
    """Whether a policy finding waiver grants this (gate, finding) to this target on this day."""
    return (
        waiver.finding is not None
        and waiver.finding.casefold() == finding.casefold()
        and (waiver.gate == gate or (waiver.requirement is not None and waiver.requirement in _requirements_of(gate)))
        and waiver.target in (None, target)
        and waiver.expires >= day
    )


def _requested_waivers(
    loaded: LoadedPolicy, config: CertifyConfigBase, day: dt.date
) -> tuple[list[Deviation], list[str]]:
    """certify.toml's own [[waivers]]: a deviation each, unless the policy grants the same waiver."""
    found, granted = [], []
    for own in config.waivers:
        text = f"{own.gate} finding {own.finding} (owner {own.owner}, until {own.expires.isoformat()})"
        if any(_finding_waiver_live(w, config.target.name, own.gate, own.finding, day) for w in loaded.policy.waivers):
            granted.append(text)
            continue
        found.append(
            Deviation(
                id=f"requested-waiver:{own.gate}:{own.finding}",
                kind="requested-waiver",
                gate=own.gate,
                requirements=_requirements_of(own.gate),
                what=f"certify.toml waives {text} itself: a target cannot grant waivers; requested, not honoured",
                policy_limit="waivers come from the policy",
                target_value=f"waiver: {own.reason}",
            )
        )
    return found, granted


def _why_not(waiver: PolicyWaiver, deviation: Deviation | None, target: str, day: dt.date) -> str | None:
    """Why a policy deviation waiver does not accept a deviation; None when it does (first failed check wins)."""
    if waiver.target not in (None, target):
        return f"it is for target {waiver.target}, not {target}"
    if waiver.expires < day:
        return f"it expired on {waiver.expires.isoformat()} (run date {day.isoformat()})"
    if deviation is None:
        return "it matches no deviation of this run"
    checks = [
        (
            waiver.gate is not None and deviation.gate not in (None, waiver.gate),
            f"it names gate {waiver.gate}; the deviation is of gate {deviation.gate}",
        ),
        (
            waiver.requirement is not None
            and deviation.gate is not None
            and waiver.requirement not in deviation.requirements,
            f"it names requirement {waiver.requirement}; the deviation touches {', '.join(deviation.requirements)}",
        ),
        (
            deviation.kind == "limit" and waiver.value is None,
            "a limit waiver must state the exact value it accepts (value = ...)",
        ),
        (
            waiver.value is not None and not same_value(waiver.value, deviation.value),
            f"it accepts value {value_text(waiver.value)}; certify.toml has {deviation.target_value}",
        ),
    ]
    return next((why for failed, why in checks if failed), None)


def _apply_waivers(
    loaded: LoadedPolicy, found: list[Deviation], target: str, day: dt.date
) -> tuple[list[Deviation], list[str]]:
    """Mark deviations the policy's waivers accept; say why every other deviation waiver is not honoured."""
    by_id = {d.id: d for d in found}
    waived: dict[str, WaivedBy] = {}
    notes = []
    for waiver in loaded.policy.waivers:
        if waiver.deviation is None:
            continue
        why = _why_not(waiver, by_id.get(waiver.deviation), target, day)
        if why is None:
            waived.setdefault(
                waiver.deviation,
                WaivedBy(
                    reason=waiver.reason,
                    owner=waiver.owner,
                    approved_by=waiver.approved_by,
                    expires=waiver.expires.isoformat(),
                ),
            )
        else:
            notes.append(f"{waiver.subject} (owner {waiver.owner}, expires {waiver.expires.isoformat()}): {why}")
    return [d.model_copy(update={"waived_by": waived.get(d.id)}) for d in found], notes


def _na_deviation(loaded: LoadedPolicy, config: CertifyConfigBase, key: str, reason: str) -> Deviation:
    """The deviation of a not-applicable declaration (of a gate or a requirement) the policy does not allow."""
    terms = loaded.policy.not_applicable.get(key)
    if terms is None:
        what = f"{key} is declared not applicable ({reason}); the policy does not allow that for {key}"
        limit = "may not be declared not applicable"
    else:
        keys = configured_keys(config, key)
        what = (
            f"{key} is declared not applicable ({reason}), but certify.toml configures [gates.{key}] "
            f"({', '.join(keys[:5])}); the policy allows N/A only for a gate the target configures nothing for"
        )
        limit = f"not applicable only on the terms: {terms.terms}; [gates.{key}] unconfigured"
    if key in catalogue():
        value = f"not applicable: {reason}"
        return _gate_deviation("not-applicable", key, what=what, policy_limit=limit, target_value=value)
    return Deviation(
        id=f"not-applicable:{key}",
        kind="not-applicable",
        gate=None,
        requirements=(key,),
        what=what,
        policy_limit=limit,
        target_value=f"not applicable: {reason}",
    )


def configured_keys(config: CertifyConfigBase, gate: str) -> list[str]:
    """The keys of a gate's [gates.<id>] table whose value differs from the default (empty: unconfigured)."""
    table = config.policy(gate)
    try:
        default = type(table)()
    except ValueError:  # a table with required keys cannot be left at its defaults
        return sorted(table.model_fields_set) or ["its required keys"]
    now, base = table.model_dump(mode="json"), default.model_dump(mode="json")
    return sorted(key for key in now if now[key] != base.get(key))


def release_gates(loaded: LoadedPolicy, allowed_na: Container[str]) -> tuple[str, ...]:
    """The policy's release-only gates that apply: not N/A, and evidencing some requirement that is not N/A.

    SOAK evidences only H15, which falls with an allowed N/A of PB: a service without playbooks has no
    healing loop to soak, so the soak is not demanded of it.
    """
    return tuple(
        gate
        for gate in loaded.policy.policy.release_gates
        if gate not in allowed_na and not all(r in allowed_na for r in _requirements_of(gate))
    )


def effective_required(
    loaded: LoadedPolicy, config: CertifyConfigBase, allowed_na: Container[str], mode: str
) -> tuple[str, ...]:
    """Gates that must PASS: the policy's (release mode: and its release-only ones), any certify.toml adds, less N/A.

    In catalogue order.
    """
    wanted = set(loaded.policy.policy.required_gates) | set(config.certificate.required_gates)
    if mode == "release":
        wanted |= set(release_gates(loaded, allowed_na))
    return tuple(gate for gate in catalogue() if gate in wanted and gate not in allowed_na)


def release_only_note(gate: str) -> str:
    """What a ci run's report says of a gate the policy requires in release mode only."""
    evidenced = ", ".join(_requirements_of(gate)) or gate
    return (
        f"{gate} is required in release mode only (policy release_gates): this ci run does not run or require it, "
        f"so it evidences nothing of {evidenced}; `certify run --mode release` runs it"
    )


def _catalogue_position(key: str) -> tuple[int, int, str]:
    """Where a gate or requirement id sits: gates first in catalogue order, then requirements in theirs."""
    gates = list(catalogue())
    if key in gates:
        return 0, gates.index(key), key
    ids = [requirement.id for requirement in requirement_catalogue().requirements]
    return 1, ids.index(key) if key in ids else len(ids), key


def _allowed_na(loaded: LoadedPolicy, config: CertifyConfigBase) -> dict[str, tuple[str, str]]:
    """Not-applicable declarations the policy allows on its terms: id -> (the target's reason, the terms).

    A requirement the policy lets fall with an allowed gate (`requirements` of its terms) is included.
    """
    declared = dict(getattr(config.certificate, "not_applicable", {}) or {})
    allowed: dict[str, tuple[str, str]] = {}
    # Catalogue order, not the file's: config.resolved.json stores tables sorted, and `certify verify`
    # must recompute the same deviations.json from it.
    for key, reason in sorted(declared.items(), key=lambda item: _catalogue_position(item[0])):
        terms = loaded.policy.not_applicable.get(key)
        if terms is not None and not (terms.unconfigured and configured_keys(config, key)):
            allowed[key] = (reason, terms.terms)
    implied: dict[str, tuple[str, str]] = {}
    for gate, (reason, terms_text) in allowed.items():
        for requirement in loaded.policy.not_applicable[gate].requirements:
            implied.setdefault(requirement, (f"falls with {gate}: {reason}", terms_text))
    for requirement in sorted(set(implied) - set(allowed), key=_catalogue_position):
        allowed[requirement] = implied[requirement]
    return allowed


def deviations(loaded: LoadedPolicy, config: CertifyConfigBase, args: RunArgs) -> DeviationReport:
    """Every deviation of (certify.toml, run arguments) from the policy, waivers applied; pure."""
    allowed = _allowed_na(loaded, config)
    found = [d for d, _ in _limit_deviations(loaded, resolved_json(config))]
    found += _gate_deviations(loaded, config, args, allowed)
    requested, granted = _requested_waivers(loaded, config, args.run_date)
    found += requested
    marked, notes = _apply_waivers(loaded, found, config.target.name, args.run_date)
    required = effective_required(loaded, config, allowed, args.mode)
    left_to_release = () if args.mode == "release" else release_gates(loaded, allowed)
    return DeviationReport(
        policy={key: value for key, value in loaded.identity().items() if key != "source"},
        required_gates=required,
        deviations=tuple(marked),
        not_applicable=tuple(
            NotApplicable(gate=key, reason=reason, terms=terms) for key, (reason, terms) in allowed.items()
        ),
        waivers_not_honoured=tuple(notes),
        requested_waivers_granted=tuple(granted),
        release_only=tuple(gate for gate in left_to_release if gate not in required),
    )


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set a value at a concrete path in nested dicts and lists."""
    for step in path[:-1]:
        data = data[step]
    data[path[-1]] = value


def effective_config(loaded: LoadedPolicy, config: CertifyConfigBase, report: DeviationReport) -> CertifyConfigBase:
    """The config the gates are judged against, never looser than the policy.

    Every unwaived looser value is replaced by the policy's bound, the required gates are the
    report's, and the only waivers are the policy's finding waivers for this target.
    """
    data = copy.deepcopy(resolved_json(config))
    waived = {d.id for d in report.deviations if not d.blocking}
    clamped = {key for key, limit in loaded.policy.limits.items() if limit.clamp}
    for deviation, miss in _limit_deviations(loaded, resolved_json(config)):
        if deviation.id not in waived and deviation.policy_key in clamped:
            _set(data, miss.path, miss.strict)
    data["certificate"]["required_gates"] = list(report.required_gates)
    data["waivers"] = [
        {
            "gate": gate,
            "finding": w.finding,
            "reason": f"{w.reason} (approved by {w.approved_by})",
            "owner": w.owner,
            "expires": w.expires.isoformat(),
            **({"rotated": w.rotated.isoformat()} if w.rotated else {}),
        }
        for w in loaded.policy.waivers
        if w.finding is not None and w.target in (None, config.target.name)
        for gate in ([w.gate] if w.gate else [g for g in catalogue() if w.requirement in _requirements_of(g)])
    ]
    try:
        return parse_config(data, f"certify.toml under policy {loaded.name} {loaded.version}")
    except ConfigError as exc:
        msg = f"{loaded.source}: a limit's bound is not a valid certify.toml value: {exc.message}"
        raise PolicyError(msg) from None
