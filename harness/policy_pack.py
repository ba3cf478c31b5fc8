"""The policy's place in an evidence pack: its verbatim copy, deviations.json and the run facts naming it.

Pack format 2 (run.json `release-harness-run/2`) carries `policy.toml` (the exact bytes judged
under), `deviations.json` and run.json `policy` / `run_args`; a format-1 pack carries none of them
and is judged as before, from its certify.toml alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import CertifyConfigBase
from harness.decide import not_applicable, not_selected
from harness.deviations import DEVIATIONS_FILE, DeviationReport, RunArgs, deviations, effective_config
from harness.errors import PackError
from harness.evidence import EvidencePack
from harness.model import GateResult
from harness.policy import POLICY_COPY, LoadedPolicy, PolicyError, parse_policy
from harness.registry import catalogue

RUN_FORMAT_V1 = "release-harness-run/1"
RUN_FORMAT = "release-harness-run/2"


def run_facts(loaded: LoadedPolicy, args: RunArgs) -> dict[str, Any]:
    """The run.json keys naming the policy and the run arguments the deviations were computed from."""
    return {
        "policy": {**loaded.identity(), "file": POLICY_COPY},
        "run_args": {
            "mode": args.mode,
            "gates": list(args.gates) if args.gates is not None else None,
            "run_date": args.run_date.isoformat(),
        },
    }


def write_policy_files(pack: EvidencePack, loaded: LoadedPolicy, report: DeviationReport) -> None:
    """Store the policy's exact bytes and the deviations in the pack (both land in the manifest)."""
    pack.write_bytes(POLICY_COPY, loaded.raw)
    pack.write_json(DEVIATIONS_FILE, report.model_dump(mode="json"))


def unselected_results(results: Sequence[GateResult], required: Sequence[str]) -> list[GateResult]:
    """A NOT_RUN result for every required gate the run left out, so no table ever omits one."""
    ran = {result.gate for result in results}
    known = catalogue()
    return [
        GateResult(
            gate=gate,
            title=known[gate][0],
            requirements=known[gate][1],
            required=True,
            verdict=not_selected(gate),
            duration_s=0.0,
        )
        for gate in required
        if gate not in ran and gate in known
    ]


def not_applicable_results(results: Sequence[GateResult], report: DeviationReport) -> list[GateResult]:
    """An N/A result, with the target's reason and the policy's terms, for every allowed N/A gate that did not run."""
    ran = {result.gate for result in results}
    known = catalogue()
    label = f"{report.policy.get('name')} {report.policy.get('version')}"
    return [
        GateResult(
            gate=na.gate,
            title=known[na.gate][0],
            requirements=known[na.gate][1],
            required=False,
            verdict=not_applicable(na.gate, na.reason, na.terms, label),
            duration_s=0.0,
        )
        for na in report.not_applicable
        if na.gate in known and na.gate not in ran
    ]


def not_applicable_requirements(report: DeviationReport) -> dict[str, str]:
    """Requirement id -> why it is N/A (the target's reason, the policy's terms), for the traceability matrix."""
    known = catalogue()
    label = f"{report.policy.get('name')} {report.policy.get('version')}"
    return {
        na.gate: f"not applicable: {na.reason} (policy {label} allows that on the terms: {na.terms})"
        for na in report.not_applicable
        if na.gate not in known
    }


def run_args_of(run_doc: dict[str, Any]) -> RunArgs:
    """The run arguments recorded in a format-2 run.json."""
    raw = run_doc.get("run_args")
    try:
        gates = raw["gates"]  # type: ignore[index]
        return RunArgs(
            mode=str(raw["mode"]),  # type: ignore[index]
            gates=tuple(map(str, gates)) if gates is not None else None,
            run_date=dt.date.fromisoformat(str(raw["run_date"])),  # type: ignore[index]
        )
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"run.json: run_args is missing or malformed: {exc}"
        raise PackError(msg) from None


def pack_policy(root: Path) -> LoadedPolicy | None:
    """The policy copy a pack was judged under; None for a format-1 pack (no policy copy)."""
    path = root / POLICY_COPY
    if not path.is_file():
        return None
    try:
        return parse_policy(path.read_bytes(), f"{root.name}/{POLICY_COPY}")
    except PolicyError as exc:
        msg = f"{POLICY_COPY}: {exc.message}"
        raise PackError(msg) from None


def judge(loaded: LoadedPolicy, config: CertifyConfigBase, args: RunArgs) -> tuple[DeviationReport, CertifyConfigBase]:
    """Deviations of a target under a policy, and the effective config its gates are judged against."""
    report = deviations(loaded, config, args)
    return report, effective_config(loaded, config, report)
