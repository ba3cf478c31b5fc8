"""Host contention of a G2 profile in two packs: when its latency cannot be compared (issue #23).

A within-run bootstrap cannot see contention between runs: a profile that ran while something else
on the host took CPU (or the hypervisor stole it) is slower for reasons that are not the target's.
load/resources.py records the host per sample (host.csv) and the profile's medians over its
measured window (profile.json "host"). Where either pack's profile was above the policy's bounds
([regression] max_host_other_cpu_pct, max_host_steal_pct), its latency figures are classed
HOST_BUSY: not compared, never "no significant change". A pack from before host data compares as
before, with a note. Pure functions of the profile records and the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.compare import Figure
    from harness.compare_rules import RegressionRules

#: The class of a latency figure not compared because a side's host was busy (undecided, not "no change").
HOST_BUSY = "not compared: host busy"
NOT_RECORDED = "host load not recorded"


@dataclass(frozen=True)
class HostLoad:
    """One pack's host figures for one profile: medians over its measured window, in percent of one core."""

    other_cpu_pct: float
    steal_pct: float
    samples: int

    def record(self) -> dict[str, Any]:
        """As compare.json and the baseline check carry it."""
        return {"other_cpu_pct": self.other_cpu_pct, "steal_pct": self.steal_pct, "samples": self.samples}


def host_load(profile_record: dict[str, Any]) -> HostLoad | None:
    """The host figures of a profile.json, or None where the pack recorded none (older packs, no samples)."""
    host = profile_record.get("host")
    if not isinstance(host, dict) or not host.get("samples"):
        return None
    other, steal = host.get("other_cpu_pct_median"), host.get("steal_pct_median")
    if not isinstance(other, int | float) or not isinstance(steal, int | float):
        return None
    return HostLoad(float(other), float(steal), int(host["samples"]))


@dataclass(frozen=True)
class HostVerdict:
    """Whether one profile's latency is compared: busy (with why), quiet, or not recorded (with a note)."""

    profile: str
    base: HostLoad | None
    new: HostLoad | None
    busy: str | None
    note: str | None

    def record(self) -> dict[str, Any]:
        """The profile's row of compare.json's `host` table."""
        state = "busy" if self.busy else "not recorded" if self.note else "quiet"
        return {
            "profile": self.profile,
            "state": state,
            "base": self.base.record() if self.base else None,
            "new": self.new.record() if self.new else None,
            "why": self.busy or self.note or "",
        }


def judge_host(profile: str, base: HostLoad | None, new: HostLoad | None, rules: RegressionRules) -> HostVerdict:
    """Busy when either side's median other-CPU or steal exceeds the policy's bound; pure."""
    if base is None or new is None:
        sides = "either pack" if base is None and new is None else "the base pack" if base is None else "the new pack"
        return HostVerdict(profile, base, new, None, f"{NOT_RECORDED} in {sides}: latency compared without it")
    parts = []
    if max(base.other_cpu_pct, new.other_cpu_pct) > rules.max_host_other_cpu_pct:
        parts.append(
            f"base {base.other_cpu_pct:g} %, new {new.other_cpu_pct:g} % of one core taken outside the run "
            f"(bound {rules.max_host_other_cpu_pct:g} %)"
        )
    if max(base.steal_pct, new.steal_pct) > rules.max_host_steal_pct:
        bound = rules.max_host_steal_pct
        parts.append(f"steal base {base.steal_pct:g} %, new {new.steal_pct:g} % of one core (bound {bound:g} %)")
    busy = f"host busy ({'; '.join(parts)})" if parts else None
    return HostVerdict(profile, base, new, busy, None)


def apply_host(figures: list[Figure], verdict: HostVerdict) -> list[Figure]:
    """A profile's latency figures under its host verdict: busy ones reclassed (what the interval said kept in why)."""
    from harness.compare import NOT_COMPARED  # noqa: PLC0415 - compare imports this module

    busy = verdict.busy
    if busy is not None:
        return [
            f
            if f.verdict == NOT_COMPARED
            else replace(f, verdict=HOST_BUSY, blocks=False, why=f"{busy}; the interval alone: {f.verdict}, {f.why}")
            for f in figures
        ]
    if verdict.note is not None:
        return [replace(f, why=f"{f.why}; {NOT_RECORDED}") for f in figures]
    return figures


def host_lines(host: list[dict[str, Any]]) -> list[str]:
    """One note per busy profile and one per kind of unrecorded host, for the printed summary and compare.md."""
    lines = [f"{row['profile']}: {row['why']}" for row in host if row["state"] == "busy"]
    unrecorded: dict[str, list[str]] = {}
    for row in host:
        if row["state"] == "not recorded":
            unrecorded.setdefault(row["why"], []).append(row["profile"])
    return lines + [f"{', '.join(profiles)}: {why}" for why, profiles in unrecorded.items()]
