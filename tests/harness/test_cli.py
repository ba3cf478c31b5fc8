"""Tests for the `certify` command line, run as a real subprocess: exit codes, output, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness import __version__
from harness.registry import CATALOGUE
from tests.conftest import FIXTURE_TARGETS, GitTarget, RunCertify
from tests.harness.packs import certify_argv, certify_env

CERTIFICATE = "production_readiness_certificate.md"
MERGE_REPORT = "merge_gate_report.md"


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    """Neither output stream shows a Python traceback."""
    assert "Traceback" not in proc.stdout
    assert "Traceback" not in proc.stderr


def assert_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2 with exactly one error line (argparse's usage lines and a hint line aside) naming the problem."""
    assert proc.returncode == 2, proc.stderr
    assert_no_traceback(proc)
    errors = [line for line in proc.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--help",), ["usage: certify", "run", "verify", "schema", "gates", "exit codes:"]),
        (("run", "--help"), ["usage: certify run", "--target", "--gates", "--mode", "--out", "--jobs", "130"]),
        (("verify", "--help"), ["usage: certify verify", "pack", "exit codes:"]),
        (("--version",), [f"release-harness {__version__}"]),
    ],
    ids=["help", "run-help", "verify-help", "version"],
)
def test_informational_commands_exit_0(run_certify: RunCertify, args: tuple[str, ...], expected: list[str]) -> None:
    """Help and version output exits 0 and mentions what the user needs."""
    proc = run_certify(*args)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    for text in expected:
        assert text in proc.stdout


def test_schema_prints_json_schema(run_certify: RunCertify) -> None:
    """`certify schema` exits 0 and prints a JSON Schema object for certify.toml."""
    proc = run_certify("schema")
    assert proc.returncode == 0
    assert_no_traceback(proc)
    schema = json.loads(proc.stdout)
    assert schema["title"] == "certify.toml"
    assert "target" in schema["properties"]


def test_gates_lists_the_catalogue(run_certify: RunCertify) -> None:
    """`certify gates` lists every catalogue gate once, with ID marked implemented."""
    proc = run_certify("gates")
    assert proc.returncode == 0
    assert_no_traceback(proc)
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(CATALOGUE)
    identity = next(line for line in lines if line.startswith("ID "))
    assert identity.rstrip().endswith("implemented")
    assert "not implemented yet" not in identity


def test_no_command_is_a_usage_error(run_certify: RunCertify) -> None:
    """`certify` with no sub-command exits 2 with a usage error."""
    assert_usage_error(run_certify())


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--gates", "NOPE"), ["--gates", "unknown gate NOPE"]),
        (("--gates", ""), ["--gates", "empty list"]),
        (("--gates", " , "), ["--gates", "empty list"]),
        (("--jobs", "0"), ["--jobs", "'0'"]),
        (("--jobs", "x"), ["--jobs", "'x'"]),
        (("--jobs", "-3"), ["--jobs", "'-3'"]),
        (("--mode", "prod"), ["--mode", "prod"]),
    ],
    ids=["unknown-gate", "empty-gates", "blank-gates", "jobs-0", "jobs-x", "jobs-negative", "bad-mode"],
)
def test_bad_run_arguments_are_usage_errors(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, args: tuple[str, ...], needles: list[str]
) -> None:
    """A bad `certify run` argument exits 2 with one error line naming it, and writes no pack."""
    target = git_target("tiny")
    out = tmp_path / "pack"
    assert_usage_error(run_certify("run", "--target", target, "--out", out, *args), *needles)
    assert not out.exists()


def test_nonexistent_target_is_a_usage_error(run_certify: RunCertify, tmp_path: Path) -> None:
    """--target pointing nowhere exits 2 with one line naming the path."""
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", "/nonexistent", "--out", out)
    assert_usage_error(proc, "certify: error: ", "/nonexistent", "not a directory")
    assert not out.exists()


def test_target_without_certify_toml_is_a_config_error_with_hint(run_certify: RunCertify, tmp_path: Path) -> None:
    """A target directory without certify.toml exits 2 with the missing path and a hint line."""
    target = tmp_path / "empty-target"
    target.mkdir()
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", target, "--out", out)
    assert_usage_error(proc, f"{target / 'certify.toml'}: not found")
    assert proc.stderr.splitlines()[-1].startswith("hint: ")
    assert not out.exists()


def test_verify_nonexistent_pack_is_a_usage_error(run_certify: RunCertify) -> None:
    """`certify verify` on a missing path exits 2 with one line naming it."""
    assert_usage_error(run_certify("verify", "/nonexistent"), "certify: error: ", "/nonexistent")


def test_verify_directory_that_is_not_a_pack(run_certify: RunCertify, tmp_path: Path) -> None:
    """`certify verify` on an ordinary directory exits 2 saying it is not an evidence pack."""
    (tmp_path / "notes.txt").write_text("hello\n", encoding="utf-8")
    assert_usage_error(run_certify("verify", tmp_path), "certify: error: ", "not an evidence pack")


def test_verify_pack_with_broken_manifest(run_certify: RunCertify, tmp_path: Path) -> None:
    """A manifest.json that is not JSON exits 2 with one line, not a JSONDecodeError traceback."""
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    assert_usage_error(run_certify("verify", tmp_path), "certify: error: ", "manifest.json")


def test_release_run_on_tiny_certifies(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A release run on a clean committed tiny target exits 0, prints CERTIFIED and writes a certificate."""
    target = git_target("tiny")
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", target, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    assert f"pack: {out}" in proc.stdout
    assert "CERTIFIED" in proc.stdout.splitlines()
    assert (out / CERTIFICATE).is_file()
    assert (out / "manifest.json").is_file()
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    traceability = results["overall"].pop("traceability")
    assert results["overall"] == {"exit_code": 0, "certified": True, "blocking": []}
    # The fixture policy lists no requirements: the matrix is recorded, CERTIFIED does not rest on it.
    assert traceability["scope_listed"] is False
    assert traceability["in_scope"] == 68


def test_ci_run_writes_merge_gate_report_not_certificate(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """A ci-mode run prints a merge-gate line and writes merge_gate_report.md and no certificate."""
    target = git_target("tiny")
    out = tmp_path / "pack"
    proc = run_certify("run", "--target", target, "--out", out, "--mode", "ci")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    assert "merge gate: PASS (see merge_gate_report.md)" in proc.stdout
    assert "CERTIFIED" not in proc.stdout
    assert (out / MERGE_REPORT).is_file()
    assert not (out / CERTIFICATE).exists()
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["overall"]["certified"] is False


def test_pack_of_a_run_verifies(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """`certify verify` on a fresh pack exits 0 and reports that files and verdicts match."""
    out = tmp_path / "pack"
    assert run_certify("run", "--target", git_target("tiny"), "--out", out).returncode == 0
    proc = run_certify("verify", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    assert proc.stdout.startswith("ok: ")


def test_non_empty_output_directory_is_refused_and_untouched(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """An existing non-empty --out exits 2 with a hint and leaves its files exactly as they were."""
    target = git_target("tiny")
    out = tmp_path / "pack"
    out.mkdir()
    keep = out / "keep.txt"
    keep.write_text("precious\n", encoding="utf-8")
    proc = run_certify("run", "--target", target, "--out", out)
    assert_usage_error(proc, "certify: error: ", str(out), "not empty")
    assert proc.stderr.splitlines()[-1].startswith("hint: ")
    assert keep.read_text(encoding="utf-8") == "precious\n"
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


def test_empty_output_directory_is_accepted(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """An existing but empty --out directory is used for the pack."""
    out = tmp_path / "pack"
    out.mkdir()
    proc = run_certify("run", "--target", git_target("tiny"), "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "results.json").is_file()


def test_plan_prints_the_release_soak_up_front_and_writes_nothing(run_certify: RunCertify, tmp_path: Path) -> None:
    """`run --plan` prints every gate and the reference target's 8-hour soak, and creates no pack."""
    proc = run_certify("run", "--plan", "--mode", "release", "--out", str(tmp_path / "never"))
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert "P4 Soak" in proc.stdout
    total = re.search(r"expected total: ~([0-9.]+) h", proc.stdout)
    assert total is not None, proc.stdout
    assert float(total.group(1)) >= 8
    assert not (tmp_path / "never").exists()
    assert "GAP" not in proc.stdout  # the reference target configures every gate


def test_plan_names_each_gap_of_a_config_that_configures_little(run_certify: RunCertify) -> None:
    """tiny has no [service], requests, experiments or journeys: the plan names each gap under its gate."""
    proc = run_certify("run", "--target", FIXTURE_TARGETS / "tiny", "--plan", "--mode", "ci",
                       "--gates", "ID,G2,G4,E2E")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    gaps = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("GAP:")]
    assert gaps == [
        "GAP: no [service] table: how the harness starts one instance of the target",
        "GAP: no [gates.G2.requests.<name>]: the load profiles have nothing to send",
        "GAP: no [service] table: how the harness starts one instance of the target",
        "GAP: no [[gates.G4.experiments]] and no [gates.G4.rollback]: no fault to inject",
        "GAP: no [service] table: how the harness starts one instance of the target",
        "GAP: no journey: no test_*.py under e2e/ and no [[gates.E2E.cli]]",
    ]
    assert "6 configuration gap(s)" in proc.stdout


@pytest.mark.parametrize("delay_s", [0.5, 1.0, 1.5])
def test_sigterm_while_the_cli_starts_is_an_interruption(delay_s: float, tmp_path: Path) -> None:
    """SIGTERM during the CLI's imports or config reading exits 130 with one line, not death by signal.

    Not earlier than 0.5 s: before cli.py's first lines run (the interpreter's own start, ~0.1-0.3 s
    on a busy machine) no handler can be installed, and the default SIGTERM action applies.
    """
    import signal  # noqa: PLC0415
    import time  # noqa: PLC0415

    from tests.harness.packs import FIXTURES, certify_argv, certify_env  # noqa: PLC0415

    target = FIXTURES / "targets" / "sleepy"
    argv = certify_argv("run", "--target", str(target), "--gates", "ID", "--out", str(tmp_path / "pack"))
    proc = subprocess.Popen(argv, env=certify_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stdout + stderr
    assert proc.returncode in (130, 0), (proc.returncode, stderr)  # 0: the one-gate run had already finished


def test_stdout_closed_by_its_reader_is_exit_141_without_a_traceback() -> None:
    """`certify policy show` writing into a pipe whose reader has gone exits 141 and prints no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            certify_argv("policy", "show"),
            env=certify_env(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr
