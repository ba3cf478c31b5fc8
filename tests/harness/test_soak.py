"""The SOAK gate's judgement from generated soak evidence, its resume check, and `certify soak`'s bad input."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gates.playbooks.config import PlaybookPolicy
from gates.soak import JudgedSoakPolicy, SoakGate
from gates.soak_judge import duration_judgement, heal_outcome
from gates.soak_run import PROGRESS, load_resumable, sha256_bytes
from harness.errors import PackError, UsageError
from harness.gate import Evidence
from harness.model import GateResult, Status
from harness.render import abbreviated_gates
from harness.soak_cli import resume_facts
from load.stats import RAW_FIELDS
from tests.gates.test_playbooks import MINIMAL_API

T0 = 1_800_000_000.0
PB = PlaybookPolicy.model_validate(
    {
        "api": MINIMAL_API,
        "health": [],
        "probes": {"no-stale": {"kind": "file", "path": "stale.pid", "absent": True}},
        "playbooks": {"stale-pid-file": {"probes": ["no-stale"]}},
    }
)


def _policy(**overrides: Any) -> JudgedSoakPolicy:
    """The soak policy as evaluate receives it, with PB's probes and a 100 ms p99 bound."""
    return JudgedSoakPolicy.model_validate({"p4_p99_ms": 100.0, "pb": PB, **overrides})


def _raw(arrivals: int, span_s: float, failing: int = 0) -> bytes:
    """A raw CSV of `arrivals` answered GETs spread over span_s, the first `failing` of them failed."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RAW_FIELDS)
    for seq in range(arrivals):
        planned = seq * span_s / arrivals
        ok = seq >= failing
        writer.writerow(
            ["arrival", seq, "page", planned, planned, planned + 0.004, 200 if ok else 500, int(ok), "", "socket"]
        )
    return gzip.compress(out.getvalue().encode(), mtime=0)


def _proc(span_s: float, rss_growth_kb: float, group_fd_growth: int) -> str:
    """proc.csv samples every 5 s with linear service RSS growth and process-group fd growth."""
    steps = int(span_s // 5)
    lines = ["t,rss_kb,fds,group_rss_kb,group_procs,group_fds"]
    for i in range(steps + 1):
        share = i / steps
        lines.append(f"{i * 5},{int(40000 + rss_growth_kb * share)},10,90000,4,{int(70 + group_fd_growth * share)}")
    return "\n".join(lines) + "\n"


def _heal(healed: bool) -> dict[str, Any]:
    """One injected stale-pid-file fault, healed by the target and seen healthy by the probe, or not."""
    return {
        "playbook": "stale-pid-file",
        "inject_at": T0 + 100,
        "inject_status": 200,
        "inject_error": None,
        "ended_at": T0 + 103,
        "samples": [
            {"at": T0 + 101, "obs": {"no-stale": {"matches": 1}}},
            {"at": T0 + 103, "obs": {"no-stale": {"matches": 0 if healed else 1}}},
        ],
        "incidents": [{"id": 7, "playbook_id": "stale-pid-file", "status": "healed" if healed else "failed"}],
    }


def write_pack(
    root: Path, *, hours: float, mode: str = "ci", leak_kb: float = 0, fd_leak: int = 0, healed: bool = True
) -> Evidence:
    """A pack holding one finished soak segment of `hours` (arrivals every 0.5 s) and its progress file."""
    span_s = hours * 3600
    files = {
        "segments/001/raw.csv.gz": _raw(int(span_s * 2), span_s),
        "segments/001/proc.csv": _proc(span_s, leak_kb, fd_leak).encode(),
        "segments/001/heals.json": json.dumps([_heal(healed)]).encode(),
        "segments/001/segment.json": json.dumps(
            {
                "index": 1,
                "instance": "SOAK-001-1",
                "started_at": T0,
                "load_started_unix": T0,
                "planned_s": span_s,
                "wall_s": span_s,
                "planned_arrivals": int(span_s * 2),
                "warmup_s": 0.0,
                "complete": True,
            }
        ).encode(),
    }
    plan = {"mode": mode, "requested_hours": hours, "started_at": T0}
    segment = {
        "index": 1,
        "soaked_s": span_s,
        "complete": True,
        "files": {k: sha256_bytes(v) for k, v in files.items()},
    }
    files[PROGRESS] = json.dumps({"plan": plan, "segments": [segment]}).encode()
    for name, data in files.items():
        path = root / "gates" / "SOAK" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Evidence(root, "SOAK", tuple(f"gates/SOAK/{name}" for name in files))


def test_a_shortened_ci_soak_passes_its_figures_but_never_evidences_the_soak(tmp_path: Path) -> None:
    """A clean 0.5 h ci soak PASSes load, resources and healing, with P4 and H15 duration INCONCLUSIVE."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5), _policy())
    assert verdict.status is Status.PASS
    checks = verdict.details["checks"]
    assert checks["load"] == checks["resources"] == checks["healing"] == "PASS"
    assert checks["p4_duration"] == checks["h15_duration"] == "INCONCLUSIVE"
    assert verdict.reasons[0].startswith("shortened soak (ci mode)")
    assert any("abbreviated (R5)" in reason for reason in verdict.reasons)


def test_an_abbreviated_release_soak_is_inconclusive(tmp_path: Path) -> None:
    """In release mode a soak under the policy's hours is INCONCLUSIVE, never PASS."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5, mode="release"), _policy())
    assert verdict.status is Status.INCONCLUSIVE
    assert verdict.details["abbreviated"] is True


def test_a_full_duration_soak_passes_p4_and_h15(tmp_path: Path) -> None:
    """A soak as long as the policy asks (here set to 0.5 h for both) PASSes the duration checks."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5, mode="release"), _policy(hours=0.5, loop_hours=0.5))
    assert verdict.status is Status.PASS
    assert verdict.details["checks"]["h15_duration"] == "PASS"


def test_memory_growth_beyond_the_limit_fails_naming_the_instance(tmp_path: Path) -> None:
    """RSS growing 20 MiB in half an hour fails the 8 MiB/h limit, the reason naming instance and figure."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5, leak_kb=20 * 1024), _policy())
    assert verdict.status is Status.FAIL
    assert verdict.details["checks"]["resources"] == "FAIL"
    assert any("SOAK-001-1: RSS grew" in reason and "allowed 8MiB/h" in reason for reason in verdict.reasons)


def test_process_group_fd_growth_beyond_the_limit_fails(tmp_path: Path) -> None:
    """The service's process group opening 40 more fds in half an hour fails the 16/h limit, naming the figure."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5, fd_leak=40), _policy())
    assert verdict.details["checks"]["resources"] == "FAIL"
    assert any("process group open fds grew" in r and "allowed 16/h" in r for r in verdict.reasons)


def test_a_fault_the_target_did_not_heal_fails_naming_the_playbook(tmp_path: Path) -> None:
    """An injected fault whose incident ended failed fails healing, naming the playbook."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5, healed=False), _policy())
    assert verdict.details["checks"]["healing"] == "FAIL"
    assert any("stale-pid-file" in reason and "not healed" in reason for reason in verdict.reasons)


def _no_incident(seen: bool) -> dict[str, Any]:
    """One injected fault the target opened no incident for; the probe saw it take effect, or never did."""
    heal = _heal(True)
    heal["incidents"] = []
    heal["samples"] = [
        {"at": T0 + 101, "obs": {"no-stale": {"matches": 1 if seen else 0}}},
        {"at": T0 + 103, "obs": {"no-stale": {"matches": 0}}},
    ]
    return heal


def test_a_fault_without_effect_is_neither_healed_nor_a_failure() -> None:
    """A fault the probes never saw and the target never opened an incident for is counted apart, not healed."""
    outcome = heal_outcome(PB, _no_incident(seen=False))
    assert outcome["no_effect"] is True
    assert outcome["healed"] is False
    assert outcome["why"].startswith("no effect:")


def test_a_fault_the_probes_saw_but_no_incident_opened_is_not_without_effect() -> None:
    """The probe saw the fault take effect: no incident is a failure to heal, even if the probe recovered."""
    outcome = heal_outcome(PB, _no_incident(seen=True))
    assert outcome["no_effect"] is False
    assert outcome["healed"] is False


def test_most_faults_without_effect_leave_healing_inconclusive(tmp_path: Path) -> None:
    """A soak whose faults mostly had no effect did not exercise the loop: healing is INCONCLUSIVE, never PASS."""
    evidence = write_pack(tmp_path, hours=0.5)
    heals = tmp_path / "gates" / "SOAK" / "segments" / "001" / "heals.json"
    heals.write_text(json.dumps([_heal(True), _no_incident(False), _no_incident(False)]), encoding="utf-8")
    progress = tmp_path / "gates" / "SOAK" / PROGRESS
    data = json.loads(progress.read_text(encoding="utf-8"))
    data["segments"][0]["files"]["segments/001/heals.json"] = sha256_bytes(heals.read_bytes())
    progress.write_text(json.dumps(data), encoding="utf-8")
    verdict = SoakGate().evaluate(evidence, _policy())
    assert verdict.details["checks"]["healing"] == "INCONCLUSIVE"
    assert any("2 of 3 fault(s) had no effect" in reason for reason in verdict.reasons)


def test_a_soak_stopped_early_says_so() -> None:
    """A soak stopped before its requested hours is abbreviated even when longer than the policy's soak."""
    judged = duration_judgement(9 * 3600, 10, _policy(), stopped=True)
    assert judged["abbreviated"] is True
    assert judged["p4"] == "INCONCLUSIVE"
    assert judged["notes"][0] == "stopped early: 9.00 h of the 10 h requested"


def test_resume_refuses_a_segment_that_differs_from_its_recorded_sha256(tmp_path: Path) -> None:
    """A resumed pack's segment file changed after it was recorded is refused, naming the file."""
    write_pack(tmp_path, hours=0.1)
    assert len(load_resumable(tmp_path)["segments"]) == 1
    (tmp_path / "gates/SOAK/segments/001/proc.csv").write_text("t,rss_kb,fds\n")
    with pytest.raises(PackError, match=r"segments/001/proc\.csv is missing or differs"):
        load_resumable(tmp_path)


def test_resume_of_a_directory_that_is_no_pack_is_a_usage_error(tmp_path: Path) -> None:
    """--resume of a directory without run.json is a UsageError (exit code 2) naming it."""
    with pytest.raises(UsageError, match=r"no run\.json; not an evidence pack"):
        resume_facts(tmp_path)


def test_certify_soak_bad_hours_is_one_line_and_exit_2() -> None:
    """A bad --hours gives exit code 2 and a one-line error, never a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "soak", "--hours", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--hours: expected a number of hours > 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_interrupted_segment_leaves_out_its_last_seconds(tmp_path: Path) -> None:
    """A segment cut short by an interrupt leaves out its last 10 s, where the harness's shutdown refuses requests."""
    evidence = write_pack(tmp_path, hours=0.1)
    meta_path = tmp_path / "gates/SOAK/segments/001/segment.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "complete": False}))
    raw_path = tmp_path / "gates/SOAK/segments/001/raw.csv.gz"
    rows = gzip.decompress(raw_path.read_bytes()).decode().splitlines()
    last = rows[-1].split(",")
    rows[-1] = ",".join([*last[:6], "", "0", "ConnectionRefusedError", ""])
    raw_path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    verdict = SoakGate().evaluate(evidence, _policy())
    hour = verdict.details["hours"][0]
    assert hour["errors"] == 0
    assert hour["cut_tail_s"] == 10.0
    assert hour["requests"] == 720 - 20


def test_requests_failing_inside_a_fault_window_are_reported_not_judged(tmp_path: Path) -> None:
    """Polls failing while an injected fault lasts count in the during-faults figure, not in the judged rate."""
    evidence = write_pack(tmp_path, hours=0.5)
    raw_path = tmp_path / "gates/SOAK/segments/001/raw.csv.gz"
    extra = [f"poll,{9000 + i},page,{101 + i},{101 + i},,0,0,ConnectionRefusedError,\n" for i in range(5)]
    raw_path.write_bytes(gzip.compress(gzip.decompress(raw_path.read_bytes()) + "".join(extra).encode()))
    verdict = SoakGate().evaluate(evidence, _policy())
    assert verdict.details["checks"]["load"] == "PASS"
    during = next(m for m in verdict.measurements if m.name == "soak request error rate during fault windows")
    assert float(during.value or 0) > 0


def test_the_certificate_names_an_abbreviated_soak(tmp_path: Path) -> None:
    """A gate result whose verdict says abbreviated is listed for the certificate's R5 banner with its reason."""
    verdict = SoakGate().evaluate(write_pack(tmp_path, hours=0.5, mode="release"), _policy())
    result = GateResult(gate="SOAK", title="Soak", requirements=("H15",), required=False, verdict=verdict, duration_s=1)
    assert abbreviated_gates((result,)) == [("SOAK", "abbreviated (R5): 0.50 h soaked of the 8 h the P4 soak requires")]
