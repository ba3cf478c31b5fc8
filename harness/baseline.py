"""A baseline named by the policy (or `certify run --baseline`): G1, G2 and G4 also judge regression against it.

The policy's `[regression] baseline` is a pack directory, or `newest-certified` / `newest-passing`:
the newest such complete run of the same target and mode in the run history. It is resolved
before the gates run and must verify (`certify verify`); its identity (run id, commit, manifest
digest) goes into run.json and the attestation. For each judged gate the runner copies the
baseline's figures of that gate into the gate's own evidence (gates/<G>/baseline/...), so the
regression check is a pure function of the new pack's files and `certify verify` recomputes it
offline, without the baseline pack. A named baseline that cannot be used (missing, not verifying,
no such run in the history) leaves each judged gate INCONCLUSIVE with the reason: the policy asked
for a regression judgement and none was made.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checks import CheckSpec
from harness.compare_rules import JUDGEABLE
from harness.model import Measurement, Status, Verdict, worst

if TYPE_CHECKING:
    from harness.compare_rules import RegressionRules
    from harness.gate import Evidence

#: Where a judged gate keeps the baseline's figures, inside its own evidence directory.
BASELINE_DIR = "baseline"
IDENTITY = f"{BASELINE_DIR}/identity.json"
MEASUREMENTS = f"{BASELINE_DIR}/measurements.json"
#: The history selectors a policy may name instead of a pack path.
SELECTORS = ("newest-certified", "newest-passing")

#: The regression check of each judgeable gate, for the traceability matrix (O8: regression detected
#: automatically); NOT_RUN in a run without a baseline.
REGRESSION_CHECKS = {
    gate: CheckSpec(
        id=f"{gate}.regression",
        title=f"{gate}: no forbidden regression against the policy's baseline",
        requirements=("O8",),
        details=("regression",),
        evidence=(f"gates/{gate}/{BASELINE_DIR}/*",),
    )
    for gate in JUDGEABLE
}


@dataclass(frozen=True)
class Baseline:
    """The resolved baseline: its identity, or why it cannot be used (then `pack` is None)."""

    spec: str
    pack: Path | None
    identity: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None

    def describe(self) -> str:
        """One line for the plan and the run's output."""
        if self.problem is not None:
            return f"baseline {self.spec}: not usable: {self.problem}; the judged gates are INCONCLUSIVE"
        i = self.identity
        return (
            f"baseline: {i['run_id']} ({i['target']} {str(i['commit'])[:10]}, {i['mode']}), "
            f"manifest sha256 {str(i['manifest_sha256'])[:16]}, from {self.pack}"
        )

    def record(self) -> dict[str, Any]:
        """What run.json and the attestation carry of it."""
        return {"spec": self.spec, **self.identity, "problem": self.problem}

    def files_for(self, gate_id: str) -> dict[str, bytes]:
        """The files a judged gate stores of the baseline, by name under its evidence directory."""
        files = {IDENTITY: _dump(self.record())}
        if self.pack is None:
            return files
        results = json.loads((self.pack / "results.json").read_text(encoding="utf-8")).get("results", [])
        own = next((r for r in results if r.get("gate") == gate_id), None)
        measurements = list(((own or {}).get("verdict") or {}).get("measurements") or ())
        files[MEASUREMENTS] = _dump({"gate": gate_id, "status": _status_of(own), "measurements": measurements})
        if gate_id == "G2":
            load = self.pack / "gates" / "G2" / "load"
            if (load / "index.json").is_file():
                files[f"{BASELINE_DIR}/gates/G2/load/index.json"] = (load / "index.json").read_bytes()
                for pid in json.loads((load / "index.json").read_text(encoding="utf-8")).get("profiles", []):
                    for name in ("profile.json", "raw.csv.gz", "host.csv"):
                        if (load / pid / name).is_file():
                            files[f"{BASELINE_DIR}/gates/G2/load/{pid}/{name}"] = (load / pid / name).read_bytes()
        return files


def _status_of(result: dict[str, Any] | None) -> str | None:
    """The baseline gate's recorded status (None when the baseline did not run it)."""
    return None if result is None else str((result.get("verdict") or {}).get("status"))


def _dump(data: Any) -> bytes:
    """Stable JSON bytes."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _identity_of(pack: Path) -> dict[str, Any]:
    """Run id, target, commit, mode, start time and manifest digest of a pack, as the run history names it."""
    from harness.history import read_record  # noqa: PLC0415

    entry = read_record(pack)
    return {
        "run_id": entry.run_id,
        "target": entry.target,
        "commit": entry.commit,
        "mode": entry.mode,
        "started_at": entry.started_at,
        "pack": entry.pack,
        "manifest_sha256": entry.manifest_sha256,
    }


def _from_history(spec: str, store: Path, target: str, mode: str) -> Path | str:
    """The pack of the newest certified (or exit-0) complete run of target and mode, or why there is none."""
    if not store.is_file():
        return f"no run history at {store}"
    where = "certified = 1" if spec == "newest-certified" else "exit_code = 0"
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
            row = db.execute(
                f"SELECT pack FROM runs WHERE target = ? AND mode = ? AND state = 'COMPLETE' AND {where} "  # noqa: S608 - where is one of two constants
                "ORDER BY started_at DESC LIMIT 1",
                (target, mode),
            ).fetchone()
    except sqlite3.Error as exc:
        return f"the run history {store} cannot be read: {exc}"
    if row is None:
        kind = "certified" if spec == "newest-certified" else "passing (exit 0)"
        return f"no {kind} complete {mode} run of {target} in {store}"
    return Path(row[0])


def resolve_baseline(spec: str, *, store: Path, target: str, mode: str) -> Baseline:
    """Find and verify the baseline a policy or --baseline names; never raises for a bad one."""
    from harness.evidence import MANIFEST  # noqa: PLC0415
    from harness.verify import verify_pack  # noqa: PLC0415 - the verifier imports every gate

    found = _from_history(spec, store, target, mode) if spec in SELECTORS else Path(spec)
    if isinstance(found, str):
        return Baseline(spec, None, problem=found)
    pack = found.resolve()
    if not (pack / MANIFEST).is_file():
        return Baseline(spec, None, problem=f"{pack} is not an evidence pack (no {MANIFEST})")
    report = verify_pack(pack)
    if not report.ok:
        first = report.problems[0] if report.problems else "it does not verify"
        return Baseline(spec, None, problem=f"{pack} does not verify: {first}")
    identity = _identity_of(pack)
    if identity["target"] != target or identity["mode"] != mode:
        problem = f"{pack} is a {identity['mode']} run of {identity['target']}, not a {mode} run of {target}"
        return Baseline(spec, None, identity, problem)
    return Baseline(spec, pack, identity)


def _figures(
    gate_id: str, evidence: Evidence, verdict: Verdict, rules: RegressionRules
) -> tuple[list[Any], list[dict[str, Any]]]:
    """A gate's compared figures (G2's from the raw samples, others' from the measurements), and G2's host rows."""
    from harness.compare import profile_figures, single_figures  # noqa: PLC0415 - numpy/scipy only when judged

    if gate_id == "G2":
        stored_pack = evidence.root / "gates" / "G2" / BASELINE_DIR
        figures, _only_in_one, host = profile_figures(stored_pack, evidence.root, rules)
        return figures, host
    stored = evidence.read_json(MEASUREMENTS)
    base = {(gate_id, str(m["name"])): m for m in stored.get("measurements", [])}
    new = {(gate_id, m.name): m.model_dump(mode="json") for m in verdict.measurements}
    return single_figures(_numeric(base), _numeric(new), rules), []


def _numeric(measurements: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], tuple[float, str]]:
    """The numeric ones, as `certify compare` reads them."""
    return {
        key: (float(m["value"]), str(m.get("unit") or ""))
        for key, m in measurements.items()
        if isinstance(m.get("value"), int | float) and not isinstance(m.get("value"), bool)
    }


def regression_check(gate_id: str, evidence: Evidence, verdict: Verdict, rules: RegressionRules) -> dict[str, Any]:
    """The regression check of a gate against the baseline its evidence holds; pure.

    A G2 profile whose host was busy in either run has its latency not compared: the check is then
    INCONCLUSIVE (FAIL still wins where another figure blocks), never PASS.
    """
    from harness.compare import NOT_COMPARED  # noqa: PLC0415
    from harness.compare_host import HOST_BUSY, host_lines  # noqa: PLC0415

    identity = evidence.read_json(IDENTITY)
    name = f"baseline {identity.get('run_id') or identity.get('spec')}"
    if identity.get("problem"):
        reason = f"regression against the baseline not judged: {identity['problem']}"
        return {"status": Status.INCONCLUSIVE.value, "reason": reason, "baseline": identity, "figures": []}
    figures, host = _figures(gate_id, evidence, verdict, rules)
    compared = [f for f in figures if f.verdict not in (NOT_COMPARED, HOST_BUSY)]
    blocking = [f for f in figures if f.blocks]
    busy = "; ".join(f"{row['profile']} {row['why']}" for row in host if row["state"] == "busy")
    if blocking:
        status = Status.FAIL
        listed = "; ".join(f"{f.name} {f.base:g} -> {f.new:g} {f.unit} ({f.change})" for f in blocking[:5])
        reason = f"regression against the {name}: {listed}" + (" ..." if len(blocking) > 5 else "")
        reason += f" (latency not compared where the host was busy: {busy})" if busy else ""
    elif busy:
        status = Status.INCONCLUSIVE
        reason = f"regression against the {name} not judged for every profile: latency not compared, {busy}"
    elif not compared:
        status = Status.INCONCLUSIVE
        reason = f"regression against the {name} not judged: no figure of {gate_id} is comparable in both runs"
    else:
        status = Status.PASS
        reason = f"no forbidden regression against the {name}: {len(compared)} figure(s) compared"
    # packs from before host data (no host figure on either side) keep the check they recorded, so
    # `certify verify` of such a pack still recomputes the same verdict
    recorded = any(row["base"] is not None or row["new"] is not None for row in host)
    host_keys = {
        "undecided": [f.name for f in figures if f.verdict == HOST_BUSY],
        "host": host,
        "notes": host_lines([row for row in host if row["state"] == "not recorded"]),
    }
    return {
        "status": status.value,
        "reason": reason,
        "baseline": identity,
        "compared": len(compared),
        "blocking": [f.name for f in blocking],
        **(host_keys if recorded else {}),
        "figures": [
            {k: getattr(f, k) for k in ("name", "base", "new", "unit", "change", "interval", "verdict", "blocks")}
            for f in figures
        ],
    }


def with_regression(gate_id: str, verdict: Verdict, evidence: Evidence, rules: RegressionRules | None) -> Verdict:
    """The gate's verdict with its regression check merged in, when its evidence holds a baseline."""
    if rules is None or gate_id not in rules.judge_gates or not evidence.exists(IDENTITY):
        return verdict
    # JSON-normal (tuples become lists), so the verdict equals the one `certify verify` reads back
    check = json.loads(json.dumps(regression_check(gate_id, evidence, verdict, rules)))
    status = Status(check["status"])
    measurements = verdict.measurements
    if "compared" in check:
        count = Measurement.judged("blocking regressions against the baseline", len(check["blocking"]), "<=", 0)
        measurements = (*measurements, count)
    reasons = verdict.reasons if status is Status.PASS else (*verdict.reasons, check["reason"])
    return verdict.model_copy(
        update={
            "status": worst([verdict.status, status]),
            "reasons": reasons,
            "measurements": measurements,
            "details": {**verdict.details, "regression": check},
        }
    )
