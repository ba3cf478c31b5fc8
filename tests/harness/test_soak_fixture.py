"""`certify soak --mode ci` on a real target whose running process leaks and whose healer gives up.

The soak-leaky fixture (tests/fixtures/targets/soak-leaky) keeps one more open file descriptor and
1 MiB more memory per request served, and heals only the first injected fault; its twin is the same
service with those switches off. Both soaks run at once (90 s each, ~2 min wall) through the real CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURE_POLICY, FIXTURE_TARGETS, certify

#: 90 s of P4 load (480/min) beside the healing loop (a fault every 20 s): four faults per soak.
SOAK_HOURS = "0.025"
SOAK_TIMEOUT_S = 240.0
DEFECTS = 'service_args = ["--leak-fds", "1", "--leak-kib", "1024", "--heal-limit", "1"]'


def _start_soak(target: Path, out: Path, cache: Path) -> subprocess.Popen[str]:
    """Start `certify soak --mode ci --hours SOAK_HOURS` on a target, into a new pack."""
    argv = [sys.executable, "-m", "harness.cli", "soak", "--mode", "ci", "--hours", SOAK_HOURS]
    argv += ["--target", str(target), "--out", str(out), "--cache-dir", str(cache), "--policy", str(FIXTURE_POLICY)]
    return subprocess.Popen(
        argv,
        env={**os.environ, "XDG_CACHE_HOME": str(cache / "xdg")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], out: Path) -> tuple[int, str, dict[str, Any]]:
    """Wait for a soak; its exit code, its output and the SOAK verdict recorded in its pack."""
    try:
        stdout, stderr = proc.communicate(timeout=SOAK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"certify soak did not end in {SOAK_TIMEOUT_S:g} s:\n{stdout}\n{stderr}")
    assert "Traceback" not in stdout + stderr, stderr
    (result,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    assert result["gate"] == "SOAK"
    return proc.returncode, stdout + stderr, result["verdict"]


def _measured(verdict: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The one measurement whose name starts with `prefix` (the instance name follows it)."""
    (found,) = [m for m in verdict["measurements"] if m["name"].startswith(prefix)]
    return found


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_a_leaking_target_that_stops_healing_fails_the_soak_and_its_twin_does_not(tmp_path: Path) -> None:
    """A real leak of fds and memory and a healer that gives up fail SOAK by name; the defects off, SOAK PASSes."""
    honest = tmp_path / "soak-honest"
    shutil.copytree(FIXTURE_TARGETS / "soak-leaky", honest)
    toml = honest / "certify.toml"
    text = toml.read_text(encoding="utf-8")
    assert DEFECTS in text
    toml.write_text(text.replace(DEFECTS, "service_args = []"), encoding="utf-8")
    packs = {name: tmp_path / f"pack-{name}" for name in ("leaky", "honest")}
    leaky_proc = _start_soak(FIXTURE_TARGETS / "soak-leaky", packs["leaky"], tmp_path / "cache-leaky")
    honest_proc = _start_soak(honest, packs["honest"], tmp_path / "cache-honest")
    leaky_code, leaky_out, leaky = _finish(leaky_proc, packs["leaky"])
    honest_code, honest_out, fine = _finish(honest_proc, packs["honest"])

    assert leaky_code == 1, leaky_out
    assert "SOAK FAIL" in leaky_out
    assert leaky["status"] == "FAIL"
    checks = leaky["details"]["checks"]
    assert checks["resources"] == "FAIL"
    assert checks["healing"] == "FAIL"
    reasons = "\n".join(leaky["reasons"])
    assert re.search(r"SOAK-\S+: open fds grew \d+", reasons), reasons
    assert re.search(r"SOAK-\S+: RSS grew \d+", reasons), reasons
    assert re.search(r"healing: flag injected at \d+ not healed: no incident of flag reached healed", reasons)
    fds = _measured(leaky, "soak open fds growth")
    rss = _measured(leaky, "soak RSS growth")
    # ~8 requests a second for the ~75 s after the resource warm-up, each one fd and 1 MiB.
    assert fds["value"] > 100
    assert not fds["passed"]
    assert rss["value"] > 100
    assert not rss["passed"]
    assert _measured(leaky, "soak incidents healed")["value"] == 1

    assert honest_code == 0, honest_out
    assert fine["status"] == "PASS", fine["reasons"]
    assert fine["reasons"][0].startswith("shortened soak (ci mode)")
    assert fine["details"]["checks"]["p4_duration"] == fine["details"]["checks"]["h15_duration"] == "INCONCLUSIVE"
    assert _measured(fine, "soak open fds growth")["passed"]
    assert _measured(fine, "soak RSS growth")["passed"]
    assert _measured(fine, "soak process group open fds growth")["passed"]
    assert _measured(fine, "soak faults that took effect")["value"] >= 3
    for pack in packs.values():
        check = certify("verify", pack)
        assert check.returncode == 0, check.stdout + check.stderr
