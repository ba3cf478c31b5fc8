"""Guardian's approvals journeys under the E2E gate, run against the e2e-approvals stand-in.

e2e-approvals links guardian's own journey file (examples/guardian/e2e/test_self_healing.py) and
answers its approvals surface; its `--fault` breaks the Approve button or makes the page claim a
decision that was never recorded. The instance gets `--healer --enable-fault-injection` only through
[gates.E2E] service_args. Every run shares one venv cache (pytest and Playwright installed once).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from e2e.runner import check_placeholders
from gates.e2e import E2EPolicy, parse_junit
from tests.conftest import GitTarget, RunCertify, commit_all

APPROVE = "journey e2e.test_self_healing::test_approve_pending_request failed"
REJECT = "e2e.test_self_healing::test_reject_pending_request"


@pytest.fixture(scope="module")
def approvals_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv cache for every run of this module."""
    return tmp_path_factory.mktemp("e2e-approvals-venvs")


def stand_in(git_target: GitTarget, fault: str = "none") -> Path:
    """A committed copy of e2e-approvals with the given fault."""
    target = git_target("e2e-approvals")
    if fault != "none":
        config = target / "certify.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('"--fault", "none"', f'"--fault", "{fault}"'), encoding="utf-8")
        commit_all(target, f"fault {fault}")
    return target


def run_e2e(run_certify: RunCertify, target: Path, out: Path, cache: Path) -> dict[str, Any]:
    """Run the E2E gate in ci mode; assert no traceback and that `certify verify` accepts the pack."""
    proc = run_certify("run", "--target", target, "--gates", "E2E", "--mode", "ci", "--out", out, "--cache-dir", cache)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    verdict: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"][0]["verdict"]
    verdict["exit"] = proc.returncode
    return verdict


def cases(out: Path) -> dict[str, str]:
    """Outcome of every live journey, by test id."""
    text = (out / "gates" / "E2E" / "junit-live.xml").read_text(encoding="utf-8")
    return {case["id"]: case["outcome"] for case in parse_junit(text)}


@pytest.mark.integration
def test_approvals_journeys_pass_on_a_working_surface(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, approvals_cache: Path
) -> None:
    """Approve and reject journeys both pass; the instance got the service_args the policy names."""
    out = tmp_path / "pack"
    verdict = run_e2e(run_certify, stand_in(git_target), out, approvals_cache)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["reasons"][0].startswith("2 journeys passed in headless Chromium")
    context = json.loads((out / "gates" / "E2E" / "context.json").read_text(encoding="utf-8"))
    assert context["service_args"] == ["--healer", "--enable-fault-injection"]
    assert (out / "e2e" / "approve-pending-request" / "02-request-approved.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.integration
def test_dead_approve_button_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, approvals_cache: Path
) -> None:
    """An Approve button that does nothing fails the approve journey (trace kept); rejecting still passes."""
    out = tmp_path / "pack"
    verdict = run_e2e(run_certify, stand_in(git_target, "dead-approve"), out, approvals_cache)
    assert verdict["status"] == "FAIL"
    assert verdict["exit"] == 1
    assert any(reason.startswith(APPROVE) for reason in verdict["reasons"]), verdict["reasons"]
    assert cases(out)[REJECT] == "passed"
    assert (out / "e2e" / "approve-pending-request" / "trace.zip").read_bytes().startswith(b"PK")


@pytest.mark.integration
def test_page_claiming_an_unrecorded_approval_fails(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, approvals_cache: Path
) -> None:
    """A page that shows "approved" while the API still has the request pending fails on the API check."""
    out = tmp_path / "pack"
    verdict = run_e2e(run_certify, stand_in(git_target, "page-only-approve"), out, approvals_cache)
    assert verdict["status"] == "FAIL"
    (reason,) = [reason for reason in verdict["reasons"] if reason.startswith(APPROVE)]
    assert "page: approved; API: ('pending'" in reason


def test_service_args_default_keeps_the_command() -> None:
    """Without service_args the policy adds nothing to the [service] command."""
    assert E2EPolicy().service_args == ()


@pytest.mark.parametrize("argument", ["--port={port}", "{data_dir}/x", "--up={upstream_url}", "--plain"])
def test_service_args_accept_service_placeholders(argument: str) -> None:
    """Arguments may use the placeholders [service] fills, dependency ones included."""
    assert E2EPolicy(service_args=(argument,)).service_args == (argument,)


@pytest.mark.parametrize(
    ("argument", "message"),
    [("", "empty argument"), ("{nosuch}", "unknown placeholder {nosuch}"), ("{port!r}", "unknown placeholder")],
)
def test_service_args_reject_bad_arguments(argument: str, message: str) -> None:
    """An empty argument or a placeholder [service] cannot fill is a config error, not a failed start."""
    with pytest.raises(ValueError, match=re.escape(message)):
        E2EPolicy(service_args=(argument,))


def test_unbalanced_brace_is_named() -> None:
    """A stray brace is reported as an invalid template naming the argument."""
    with pytest.raises(ValueError, match=re.escape("'--x={' is not a valid template")):
        check_placeholders("--x={")


def test_bad_service_args_are_a_config_error(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A bad service argument in certify.toml is a one-line config error (exit 2) before anything runs."""
    target = git_target("e2e-approvals")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('"--enable-fault-injection"]', '"--x={nosuch}"]'),
        encoding="utf-8",
    )
    commit_all(target, "bad service_args")
    proc = run_certify("run", "--target", target, "--gates", "E2E", "--mode", "ci", "--out", tmp_path / "pack")
    assert proc.returncode == 2
    assert "gates.E2E.service_args" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.integration
def test_placeholder_of_a_missing_dependency_is_an_error(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path, approvals_cache: Path
) -> None:
    """A dependency placeholder [service] cannot fill stops the gate with ERROR naming it, before any start."""
    target = git_target("e2e-approvals")
    config = target / "certify.toml"
    text = config.read_text(encoding="utf-8").replace('"--enable-fault-injection"]', '"--up={cache_url}"]')
    config.write_text(text, encoding="utf-8")
    commit_all(target, "service_args naming a dependency that does not exist")
    verdict = run_e2e(run_certify, target, tmp_path / "pack", approvals_cache)
    assert verdict["status"] == "ERROR"
    assert "{cache_url} names no dependency of [service]" in verdict["reasons"][0]
