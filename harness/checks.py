"""Checks inside a gate: the requirement ids each evidences, how its status is read, and its evidence files.

A gate declares its checks next to its code (`GateSpec.checks`), so the traceability matrix cannot
drift from what runs. A check's status is read from the gate's recorded verdict: the measurements
whose names match its patterns and the sub-statuses at its detail paths. A PASS whose declared
evidence is not in the pack's manifest is not a PASS.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.model import Status, Verdict, worst


class CheckSpec(BaseModel):
    """One check of a gate: what it evidences, where its status is read, which files it writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Stable id, `<gate>.<name>`, e.g. `G2.P1`.")
    title: str
    requirements: tuple[str, ...] = Field(min_length=1, description="Catalogue requirement ids it evidences.")
    measurements: tuple[str, ...] = Field((), description="fnmatch patterns over the verdict's measurement names.")
    details: tuple[str, ...] = Field(
        (), description="Dotted paths into the verdict's details to a status, a {status: ...} or a table of statuses."
    )
    evidence: tuple[str, ...] = Field((), description="Glob patterns, relative to the pack, of the files it writes.")


@dataclass(frozen=True)
class CheckOutcome:
    """A check's status in one run, why, and the evidence files (path -> sha256) that back it."""

    status: Status
    reason: str
    files: dict[str, str]


_STATUS_WORDS = {status.value: status for status in Status}


def _detail_statuses(details: Mapping[str, Any], path: str) -> list[Status] | None:
    """The statuses recorded at a dotted detail path (None when the path is absent or holds none)."""
    node: Any = details
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    if isinstance(node, Mapping) and "status" in node:
        node = node["status"]
    if isinstance(node, str):
        return [_STATUS_WORDS[node]] if node in _STATUS_WORDS else None
    if isinstance(node, Mapping):
        found = [_STATUS_WORDS[v] for v in node.values() if isinstance(v, str) and v in _STATUS_WORDS]
        return found or None
    return None


def _observed(check: CheckSpec, verdict: Verdict) -> tuple[list[Status], list[str]]:
    """Statuses from the matched measurements and detail paths, and the names of the failing ones."""
    statuses: list[Status] = []
    failing: list[str] = []
    for measurement in verdict.measurements:
        if measurement.passed is None or not any(fnmatch.fnmatchcase(measurement.name, p) for p in check.measurements):
            continue
        statuses.append(Status.PASS if measurement.passed else Status.FAIL)
        if not measurement.passed:
            failing.append(measurement.name)
    for path in check.details:
        found = _detail_statuses(verdict.details, path)
        if found is not None:
            statuses += found
            if worst(found) is not Status.PASS:
                failing.append(f"{path} {worst(found).value}")
    return statuses, failing


def check_outcome(check: CheckSpec, verdict: Verdict, manifest: Mapping[str, str]) -> CheckOutcome:
    """The status of one check from its gate's verdict and the manifest's file hashes; pure."""
    files = {
        path: digest
        for path, digest in sorted(manifest.items())
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in check.evidence)
    }
    if verdict.status in (Status.NOT_RUN, Status.ERROR):
        return CheckOutcome(verdict.status, f"the gate is {verdict.status.value}", files)
    statuses, failing = _observed(check, verdict)
    status: Status
    if not check.measurements and not check.details:
        status, reason = verdict.status, f"the gate's verdict is {verdict.status.value}"
    elif not statuses:
        status = verdict.status if verdict.status is not Status.PASS else Status.INCONCLUSIVE
        reason = "the gate recorded none of this check's measurements"
    else:
        status = worst(statuses)
        reason = "not met: " + "; ".join(failing[:3]) if failing else f"{len(statuses)} judged value(s) met"
    missing = [pattern for pattern in check.evidence if not any(fnmatch.fnmatchcase(p, pattern) for p in manifest)]
    if status is Status.PASS and missing:
        status = Status.INCONCLUSIVE
        reason = f"declared evidence {', '.join(missing)} is not in the manifest, so this PASS is not evidenced"
    return CheckOutcome(status, reason, files)
