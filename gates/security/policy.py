"""G5 policy: thresholds, normalised severities, findings, waivers, and the merge into one verdict (pure)."""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import Field

from harness.gate import Policy
from harness.model import Measurement, Status, Verdict, worst

#: Licences a permissive allow-list accepts by default (SPDX ids; "BSD" is the classifier
#: "BSD License", which does not say which clause variant).
DEFAULT_LICENCE_ALLOW = (
    "MIT",
    "MIT-0",
    "BSD",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "0BSD",
    "Apache-2.0",
    "ISC",
    "PSF-2.0",
    "Python-2.0",
    "MPL-2.0",
    "Unlicense",
    "Zlib",
    "CC0-1.0",
    "HPND",
    "BSL-1.0",
)
MAX_REASONS = 20
SeverityName = Literal["critical", "high", "medium", "low"]


def canonical_name(name: str) -> str:
    """A distribution name normalised as PEP 503 does (Foo_Bar.baz -> foo-bar-baz)."""
    return re.sub(r"[-_.]+", "-", name).lower()


class Severity(enum.StrEnum):
    """The four severities every scanner's ratings are mapped onto."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher is worse: low 1 ... critical 4."""
        return {"low": 1, "medium": 2, "high": 3, "critical": 4}[self.value]


def severity_of(label: str | None, default: Severity) -> Severity:
    """Map a tool's severity word (LOW, Moderate, error, ...) onto the four levels; unknown words give `default`."""
    words = {
        "critical": Severity.CRITICAL,
        "high": Severity.HIGH,
        "error": Severity.HIGH,
        "important": Severity.HIGH,
        "medium": Severity.MEDIUM,
        "moderate": Severity.MEDIUM,
        "warning": Severity.MEDIUM,
        "low": Severity.LOW,
        "note": Severity.LOW,
        "info": Severity.LOW,
    }
    return words.get((label or "").strip().lower(), default)


def severity_of_score(score: float) -> Severity:
    """CVSS base score bands: >=9 critical, >=7 high, >=4 medium, else low."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW


class SecurityPolicy(Policy):
    """Thresholds of gate G5 (`[gates.G5]` in certify.toml)."""

    fail_on: SeverityName = Field(
        "high",
        description="Unwaived findings at or above this severity (critical/high/medium/low) fail the gate.",
    )
    lock_file: str | None = Field(
        None,
        description="X2: the pip lock/constraints file (relative to the target) pinning every installed distribution "
        "with ==; unset: X2 is not judged.",
    )
    lock_hashes: bool = Field(True, description="X2: every pin in lock_file carries a --hash.")
    env_example: str | None = Field(
        None, description="X3: the example environment file (e.g. .env.example); unset: X3 is not judged."
    )
    env_example_ignore: tuple[str, ...] = Field(
        ("tests/",), description="X3: tracked path prefixes whose environment reads need no entry (test code)."
    )
    advisory_db: str | None = Field(
        None,
        description="Directory of OSV advisories (e.g. a pypa/advisory-database checkout), relative to the target or "
        "absolute; served on 127.0.0.1 to pip-audit. Unset: the copy `certify advisory-db update` keeps in "
        "~/.cache/release-harness/advisory-db, else pip-audit's default online service.",
    )
    max_advisory_age_days: int = Field(
        30, ge=0, description="An advisory database older than this many days makes the audit INCONCLUSIVE."
    )
    vuln_default_severity: SeverityName = Field(
        "high", description="Severity of a known vulnerability whose advisory carries no CVSS v3 vector."
    )
    licence_allow: tuple[str, ...] = Field(
        DEFAULT_LICENCE_ALLOW, description="SPDX ids allowed for installed packages (OR: any allowed; AND: all)."
    )
    licence_denied_severity: SeverityName = Field(
        "high", description="Severity of a package whose licence is recognised but not allowed (e.g. GPL)."
    )
    licence_unknown_severity: SeverityName = Field(
        "medium",
        description="Severity of a package whose licence is missing or not recognised (listed for review).",
    )
    sast_exclude: tuple[str, ...] = Field(
        (), description="Paths or globs bandit skips (bandit -x), in addition to its defaults."
    )
    mypy_max_errors: int = Field(
        0, ge=0, description="S1: more mypy errors than this in the target's packages is one high finding."
    )
    secrets_baseline: str = Field(
        ".secrets.baseline",
        description="detect-secrets baseline in the target; its entries audited is_secret=false are false positives.",
    )
    tool_timeout_s: float = Field(600.0, gt=0, description="Time limit of each scanner run.")

    @property
    def threshold(self) -> Severity:
        """fail_on as a Severity."""
        return Severity(self.fail_on)


class GrantedWaiver(Policy):
    """A G5 finding waiver the certifier's policy grants this target (never one from certify.toml)."""

    finding: str = Field(description="Finding id or alias it accepts (case-insensitive).")
    reason: str = Field(description="Why, with who approved it.")
    owner: str = Field(description="Who owns the accepted risk.")
    expires: dt.date = Field(description="Last day it is honoured.")
    rotated: dt.date | None = Field(
        None, description="When the accepted credential was rotated; a secret finding is waived only with it set."
    )


class JudgedSecurityPolicy(SecurityPolicy):
    """What G5's collect and evaluate receive: the `[gates.G5]` thresholds plus the policy's granted waivers.

    The waivers come from the policy the verdict is computed under, not from the evidence, so
    `certify verify --policy AUDITOR` re-judges the same findings against the auditor's waivers.
    """

    waivers: tuple[GrantedWaiver, ...] = Field((), description="Finding waivers granted by the certifier's policy.")

    def waiver_entries(self) -> list[dict[str, Any]]:
        """The waivers as apply_waivers reads them."""
        return [waiver.model_dump(mode="json") for waiver in self.waivers]


@dataclass(frozen=True)
class Finding:
    """One problem a scanner reported, normalised; never holds a secret's value."""

    scanner: str
    rule: str
    id: str
    severity: Severity
    title: str
    keys: tuple[str, ...] = ()
    location: str | None = None
    line: int | None = None
    help_uri: str | None = None
    needs_rotation: bool = False
    commit: str | None = None

    def waiver_keys(self) -> set[str]:
        """Every string a waiver's `finding` may use to name this finding (case-insensitive)."""
        return {key.casefold() for key in (self.id, *self.keys)}


@dataclass(frozen=True)
class ScanResult:
    """What one scanner's evidence says: whether it really ran on something, and its findings."""

    scanner: str
    status: Status
    summary: str
    reasons: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    table: tuple[dict[str, Any], ...] = ()

    @property
    def tool(self) -> str:
        """The tool's distribution name, written in parentheses at the end of the scanner name."""
        return self.scanner.rsplit("(", 1)[-1].rstrip(")")


class EvidenceReader(Protocol):
    """The part of harness.gate.Evidence the scanners' pure `assess` functions use."""

    def exists(self, name: str) -> bool:
        """Whether the gate recorded a file of that name."""

    def read_json(self, name: str) -> Any:
        """A JSON file's parsed content."""


@dataclass(frozen=True)
class WaiverUse:
    """A G5 waiver granted by the policy and what it did in this run."""

    finding: str
    reason: str
    owner: str
    expires: str
    expired: bool
    matched: tuple[str, ...]
    rotated: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form for Verdict.details and the report."""
        return {
            "finding": self.finding,
            "reason": self.reason,
            "owner": self.owner,
            "expires": self.expires,
            "expired": self.expired,
            "matched": list(self.matched),
            "rotated": self.rotated,
        }


@dataclass(frozen=True)
class Judgement:
    """Findings split by waiver state, plus the waivers' use; input of the verdict and the report."""

    unwaived: tuple[Finding, ...]
    waived: tuple[tuple[Finding, WaiverUse], ...]
    waivers: tuple[WaiverUse, ...]


def _accepts(use: WaiverUse, finding: Finding) -> bool:
    """Whether a live waiver accepts a finding: it names it, and for a secret it records the rotation."""
    return use.finding.casefold() in finding.waiver_keys() and (use.rotated is not None or not finding.needs_rotation)


def _unrotated(use: WaiverUse, findings: list[Finding]) -> Finding | None:
    """A medium finding for a live waiver naming a secret without recording its rotation."""
    named = [f.id for f in findings if f.needs_rotation and use.finding.casefold() in f.waiver_keys()]
    if use.expired or use.rotated is not None or not named:
        return None
    return Finding(
        scanner="waivers",
        rule="waiver-without-rotation",
        id=f"waiver:{use.finding}",
        severity=Severity.MEDIUM,
        title=f"waiver for {use.finding!r} (owner {use.owner}) names a secret but records no rotation "
        "(rotated = DATE): a committed credential is accepted only once it has been rotated",
    )


def apply_waivers(findings: list[Finding], waivers: list[dict[str, Any]], run_date: dt.date) -> Judgement:
    """Match G5 waivers to findings; an expired waiver waives nothing and is itself a medium finding if unused.

    A secret (needs_rotation) is only waived by a waiver that records when it was rotated.
    """
    uses: list[WaiverUse] = []
    active: list[WaiverUse] = []
    for raw in waivers:
        expires = dt.date.fromisoformat(str(raw["expires"]))
        key = str(raw["finding"]).casefold()
        rotated = raw.get("rotated")
        matched = tuple(sorted(f.id for f in findings if key in f.waiver_keys() and (rotated or not f.needs_rotation)))
        use = WaiverUse(
            finding=str(raw["finding"]),
            reason=str(raw["reason"]),
            owner=str(raw["owner"]),
            expires=expires.isoformat(),
            expired=expires < run_date,
            matched=matched,
            rotated=str(rotated) if rotated else None,
        )
        uses.append(use)
        if not use.expired:
            active.append(use)
    unwaived: list[Finding] = []
    waived: list[tuple[Finding, WaiverUse]] = []
    for finding in findings:
        applied = next((u for u in active if _accepts(u, finding)), None)
        if applied is None:
            unwaived.append(finding)
        else:
            waived.append((finding, applied))
    unwaived += filter(None, (_unrotated(use, findings) for use in uses))
    for use in uses:
        if use.expired:
            what = f"matches {len(use.matched)} finding(s) that now count" if use.matched else "matches no finding"
            unwaived.append(
                Finding(
                    scanner="waivers",
                    rule="expired-waiver",
                    id=f"waiver:{use.finding}",
                    severity=Severity.MEDIUM,
                    title=f"waiver for {use.finding!r} (owner {use.owner}) expired on {use.expires}; {what}",
                )
            )
    return Judgement(unwaived=tuple(unwaived), waived=tuple(waived), waivers=tuple(uses))


def blocking(judgement: Judgement, policy: SecurityPolicy) -> list[Finding]:
    """Unwaived findings at or above the policy's fail_on severity, worst first."""
    found = [f for f in judgement.unwaived if f.severity.rank >= policy.threshold.rank]
    return sorted(found, key=lambda f: (-f.severity.rank, f.id))


def severity_counts(findings: list[Finding] | tuple[Finding, ...]) -> dict[str, int]:
    """How many findings of each severity."""
    return {level.value: sum(1 for f in findings if f.severity is level) for level in Severity}


def finding_sentence(finding: Finding) -> str:
    """A reason line naming severity, scanner, finding id and what it is."""
    return f"{finding.severity.value}: {finding.title} [{finding.id}]"


def judge(results: list[ScanResult], judgement: Judgement, policy: SecurityPolicy) -> Verdict:
    """The gate's verdict: FAIL on blocking findings, else the worst scanner status; PASS only if all ran."""
    failing = blocking(judgement, policy)
    status = worst([Status.FAIL if failing else Status.PASS, *(r.status for r in results)])
    reasons: list[str] = [finding_sentence(f) for f in failing[:MAX_REASONS]]
    if len(failing) > MAX_REASONS:
        reasons.append(f"... and {len(failing) - MAX_REASONS} more blocking finding(s) (see security_report.md)")
    for result in results:
        reasons.extend(f"{result.scanner}: {reason}" for reason in result.reasons)
    if status is Status.PASS:
        reasons = [f"{r.scanner}: {r.summary}" for r in results]
        reasons.append(
            f"0 unwaived findings at or above {policy.fail_on}; {len(judgement.waived)} waived, "
            f"{len(judgement.unwaived)} below the threshold"
        )
    measurements = [
        Measurement.judged(f"unwaived findings at or above {policy.fail_on}", len(failing), "<=", 0),
        *(m for r in results for m in r.measurements),
    ]
    details = {
        "scanners": {r.scanner: r.status.value for r in results},
        "unwaived": severity_counts(judgement.unwaived),
        "waived": len(judgement.waived),
        "waivers": [u.as_dict() for u in judgement.waivers if not u.expired],
        "expired_waivers": [u.as_dict() for u in judgement.waivers if u.expired],
        "facts": {r.scanner: r.facts for r in results if r.facts},
    }
    return Verdict(status=status, reasons=tuple(reasons), measurements=tuple(measurements), details=details)
