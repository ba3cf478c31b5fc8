"""A repetition's record in the shape of a Chaos Toolkit journal (chaostoolkit-lib `run.py`).

Keys follow `initialize_run_journal`: experiment (version 0.1.0, title, description,
steady-state-hypothesis, method, rollbacks), start/end/duration, status (completed | failed | aborted),
deviated (the steady state after was not met), steady_states {before, after, during}, run, rollbacks.
Each activity run record has activity, status (succeeded | failed), output, start, end, duration.
Times are ISO 8601 UTC derived from the repetition's wall-clock start plus its monotonic offsets.
"""

from __future__ import annotations

import datetime as dt
import platform
from typing import Any

from chaos.experiments import Experiment

JOURNAL_VERSION = "release-harness chaos journal (chaostoolkit-lib 1.44 journal shape)"


def _iso(start: dt.datetime, offset_s: float | None) -> str | None:
    """Wall-clock time of an offset into the repetition."""
    if offset_s is None:
        return None
    return (start + dt.timedelta(seconds=offset_s)).isoformat()


def _hypothesis(exp: Experiment, settings: dict[str, Any]) -> dict[str, Any]:
    """The steady-state hypothesis: readiness 2xx and a fresh task completing in time."""
    return {
        "title": "the service is ready and fresh work completes end to end",
        "probes": [
            {
                "type": "probe",
                "name": "readiness-and-fresh-task",
                "tolerance": True,
                "provider": {
                    "type": "python",
                    "module": "chaos.probe",
                    "func": "probe_once",
                    "arguments": {"readiness": settings["readiness"], "work": exp.work},
                },
            }
        ],
    }


def _run(  # noqa: PLR0917 - mirrors the journal record's fields one to one
    name: str, kind: str, ok: bool, output: Any, start: dt.datetime, t0: float | None, t1: float | None
) -> dict[str, Any]:
    """One activity run record."""
    return {
        "activity": {"type": kind, "name": name},
        "status": "succeeded" if ok else "failed",
        "output": output,
        "start": _iso(start, t0),
        "end": _iso(start, t1),
        "duration": None if t0 is None or t1 is None else round(t1 - t0, 3),
    }


def _steady(block: dict[str, Any], start: dt.datetime) -> dict[str, Any]:
    """A steady-state block: met or not, with each probe run."""
    probes = [
        _run("readiness-and-fresh-task", "probe", s.get("done_s") is not None, s, start, s["t_s"], s.get("done_s"))
        for s in block["samples"]
    ]
    return {"steady_state_met": block["met"], "probes": probes}


def build_journal(
    exp: Experiment, record: dict[str, Any], analysis: dict[str, Any], started: dt.datetime
) -> dict[str, Any]:
    """The journal of one repetition."""
    fault = record["fault"]
    ran = record["outcome"] == "ran"
    injected_ok = ran and fault.get("error") is None
    method = [
        {
            "type": "action",
            "name": f"inject-{exp.fault.type}",
            "provider": {
                "type": "python",
                "module": "chaos.faults",
                "func": "inject",
                "arguments": exp.fault.model_dump(mode="json"),
            },
        },
        {
            "type": "probe",
            "name": "recovery-probes",
            "background": True,
            "provider": {
                "type": "python",
                "module": "chaos.probe",
                "func": "Prober",
                "arguments": {"interval_s": record["settings"]["probe_interval_s"]},
            },
        },
        {
            "type": "probe",
            "name": "ledger-reconciliation",
            "provider": {"type": "python", "module": "chaos.ledger", "func": "reconcile", "arguments": {}},
        },
    ]
    rollback = {
        "type": "action",
        "name": f"remove-{exp.fault.type}",
        "provider": {"type": "python", "module": "chaos.faults", "func": "remove", "arguments": {}},
    }
    runs = []
    if ran:
        runs.append(
            _run(
                f"inject-{exp.fault.type}",
                "action",
                injected_ok,
                fault.get("inject") or fault.get("error"),
                started,
                fault["injected_at_s"],
                fault["removed_at_s"],
            )
        )
        runs.append(
            _run(
                "recovery-probes",
                "probe",
                analysis["recovered_at_s"] is not None,
                {k: analysis[k] for k in ("impact_s", "detect_s", "recovery_from_start_s", "recovery_from_removal_s")},
                started,
                fault["injected_at_s"],
                analysis["recovered_at_s"],
            )
        )
        runs.append(
            _run(
                "ledger-reconciliation",
                "probe",
                analysis["lost"] == 0 and analysis["not_completed"] == 0 and not analysis["duplicated"],
                {k: analysis[k] for k in ("accepted", "completed", "lost", "not_completed", "duplicated")},
                started,
                None,
                None,
            )
        )
    rollbacks = []
    if ran and fault.get("removed_at_s") is not None:
        rollbacks.append(
            _run(
                f"remove-{exp.fault.type}",
                "action",
                "rollback_error" not in fault,
                fault.get("remove") or fault.get("rollback_error"),
                started,
                fault["removed_at_s"],
                fault["removed_at_s"],
            )
        )
    end_s = max(
        [s["t_s"] for s in record["steady_after"]["samples"] + record["samples"] + record["steady_before"]["samples"]]
        or [0.0]
    )
    status = "completed" if injected_ok else ("aborted" if not ran else "failed")
    if ran and not record["steady_before"]["met"]:
        status = "failed"
    return {
        "chaoslib-version": JOURNAL_VERSION,
        "platform": platform.platform(),
        "node": platform.node(),
        "experiment": {
            "version": "0.1.0",
            "title": exp.title,
            "description": f"{exp.requirement}: {exp.title} (release-harness gate G4, experiment {exp.id})",
            "tags": ["release-harness", "G4", exp.requirement],
            "steady-state-hypothesis": _hypothesis(exp, record["settings"]),
            "method": method,
            "rollbacks": [rollback],
        },
        "start": started.isoformat(),
        "end": _iso(started, end_s),
        "duration": round(end_s, 3),
        "status": status,
        "deviated": ran and not record["steady_after"]["met"],
        "steady_states": {
            "before": _steady(record["steady_before"], started),
            "after": _steady(record["steady_after"], started) if ran else None,
            "during": [],
        },
        "run": runs,
        "rollbacks": rollbacks,
    }
