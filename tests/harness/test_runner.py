"""The runner: concurrency, timeouts, crashes, interruption and secrets, through the real CLI."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.harness.packs import certify_argv, certify_env

pytestmark = pytest.mark.integration


def _results(pack: Path) -> dict[str, dict[str, object]]:
    """Gate id -> verdict from a pack's results.json."""
    data = json.loads((pack / "results.json").read_text())
    return {item["gate"]: item["verdict"] for item in data["results"]}


def _run(target: Path, out: Path, cache: Path, gates: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run certify to completion."""
    argv = certify_argv("run", "--target", str(target), "--gates", gates, "--out", str(out), "--cache-dir", str(cache))
    return subprocess.run(argv, env=certify_env(**env), capture_output=True, text=True, timeout=240, check=False)


def test_crash_and_timeout_become_verdicts_not_tracebacks(sleepy: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A gate that raises is ERROR with its traceback kept; one past its timeout is INCONCLUSIVE; the run ends."""
    done = _run(sleepy, tmp_path / "pack", cache_dir, "ID,CRASH,SLOWPOKE", SLEEPY_SECONDS="1")
    assert "Traceback" not in done.stdout + done.stderr
    verdicts = _results(tmp_path / "pack")
    assert verdicts["CRASH"]["status"] == "ERROR"
    assert "RuntimeError: boom" in verdicts["CRASH"]["reasons"][0]
    assert "Traceback" in (tmp_path / "pack/gates/CRASH/traceback.txt").read_text()
    assert verdicts["SLOWPOKE"]["status"] == "INCONCLUSIVE"
    assert "timed out after 1 s" in verdicts["SLOWPOKE"]["reasons"][0]


def test_static_gates_run_concurrently(sleepy: Path, cache_dir: Path, tmp_path: Path) -> None:
    """With --jobs 2, two static gates run side by side: the run's own timeline shows them overlapping."""
    argv = certify_argv(
        "run",
        "--target",
        str(sleepy),
        "--gates",
        "SLEEPY,ENVDUMP,ID",
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "pack"),
        "--cache-dir",
        str(cache_dir),
    )
    subprocess.run(argv, env=certify_env(SLEEPY_SECONDS="1.5"), capture_output=True, timeout=120, check=False)
    assert _results(tmp_path / "pack")["SLEEPY"]["status"] == "PASS"
    timeline = {span["gate"]: span for span in json.loads((tmp_path / "pack" / "run.json").read_text())["timeline"]}
    sleepy_span, other = timeline["SLEEPY"], timeline["ENVDUMP"]
    assert other["start_s"] < sleepy_span["end_s"]
    assert sleepy_span["start_s"] < other["end_s"]
    assert "ENVDUMP" in sleepy_span["ran_with"]


def test_gate_running_alone_overlaps_nothing_and_run_json_records_the_timeline(
    sleepy: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """QUIET (runs alone) shares the machine with no gate; AFTERQ starts after it; run.json has every span."""
    out = tmp_path / "pack"
    argv = certify_argv(
        "run", "--target", str(sleepy), "--gates", "SLEEPY,QUIET,AFTERQ,ENVDUMP", "--jobs", "4",
        "--out", str(out), "--cache-dir", str(cache_dir),
    )  # fmt: skip
    subprocess.run(argv, env=certify_env(SLEEPY_SECONDS="0.5"), capture_output=True, timeout=120, check=False)
    assert {gate: v["status"] for gate, v in _results(out).items() if gate != "ID"} == dict.fromkeys(
        ("SLEEPY", "QUIET", "AFTERQ", "ENVDUMP"), "PASS"
    )
    timeline = {span["gate"]: span for span in json.loads((out / "run.json").read_text())["timeline"]}
    assert timeline["QUIET"]["ran_with"] == []
    assert timeline["AFTERQ"]["start_s"] >= timeline["QUIET"]["end_s"]
    assert "ENVDUMP" in timeline["SLEEPY"]["ran_with"]  # the others did share the lanes


def test_planted_secret_appears_nowhere_in_the_pack(sleepy: Path, cache_dir: Path, tmp_path: Path) -> None:
    """A secret in the harness's environment, printed by a tool, is redacted from every pack file."""
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
    _run(
        sleepy,
        tmp_path / "pack",
        cache_dir,
        "ID,ENVDUMP,SVC",
        SLEEPY_SECONDS="0.5",
        AWS_SECRET_ACCESS_KEY=secret,
        GITHUB_TOKEN="ghp_" + "a1B2c3D4" * 5,
    )
    files = [p for p in (tmp_path / "pack").rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data, path
        assert b"a1B2c3D4a1B2c3D4" not in data, path
    assert "[REDACTED]" in (tmp_path / "pack/gates/ENVDUMP/runs/01-env.stdout.txt").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_at_random_moments_leaves_no_child_and_no_certificate(
    sig: signal.Signals, sleepy: Path, cache_dir: Path, tmp_path: Path
) -> None:
    """Interrupted at random moments, every child is gone within 10 s, the pack is INCOMPLETE, no certificate."""
    rng = random.Random(1234 + sig)
    for attempt in range(4):
        out = tmp_path / f"pack{attempt}"
        argv = certify_argv(
            "run",
            "--target",
            str(sleepy),
            "--gates",
            "ID,SLEEPY,SVC",
            "--jobs",
            "2",
            "--out",
            str(out),
            "--cache-dir",
            str(cache_dir),
        )
        # SLEEPY outlasts the latest interrupt, so every attempt interrupts a running run; the random
        # moment counts from the pack directory's creation (the CLI's signal handlers exist by then),
        # as a busy machine may take more than a second just to start Python.
        proc = subprocess.Popen(
            argv, env=certify_env(SLEEPY_SECONDS="12"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started = time.monotonic()
        while not out.exists() and proc.poll() is None and time.monotonic() - started < 60:
            time.sleep(0.02)
        deadline = time.monotonic() + rng.uniform(0.0, 6.0)
        seen: set[int] = set()
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                seen.update(child.pid for child in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"attempt {attempt}: the run ended before it could be interrupted"
        proc.send_signal(sig)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10.0
        assert "Traceback" not in stdout + stderr
        survivors = [
            pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]
        assert survivors == [], f"attempt {attempt}: children still alive: {survivors}"
        assert proc.returncode == 130, stderr
        if (out / "run.json").exists():
            assert json.loads((out / "run.json").read_text())["state"] == "INCOMPLETE"
        else:  # interrupted before the run began (a busy machine's first second or two): no pack at all
            assert not out.exists() or not any(out.iterdir()), f"attempt {attempt}: a pack without run.json"
            assert "certify: interrupted" in stderr
        assert not (out / "production_readiness_certificate.md").exists()
        assert not (out / "merge_gate_report.md").exists()
