"""Tests for the G7 developer-experience checks: X4 pre-commit hooks and X5 the import graph (gates/devex/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gates.bootstrap import BootstrapGate, BootstrapPolicy
from gates.devex import import_graph, precommit
from harness.model import Status
from tests.conftest import GitTarget, RunCertify, commit_all, git

LOCAL_HOOKS = [
    {"id": "fmt", "repo": "local", "language": "system", "entry": "ruff format --check", "category": "format"},
    {"id": "lint", "repo": "local", "language": "system", "entry": "ruff check", "category": "lint"},
    {"id": "types", "repo": "local", "language": "system", "entry": "mypy pkg", "category": "type check"},
    {"id": "secrets", "repo": "local", "language": "system", "entry": "detect-secrets-hook", "category": "secret scan"},
]


def precommit_evidence(runs: list[tuple[str, int, str]], **changes: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """precommit.json over LOCAL_HOOKS with the given (hook, exit code, output) runs, and its logs."""
    hooks = [{**hook, "not_offline": None} for hook in LOCAL_HOOKS]
    data: dict[str, Any] = {
        "config": ".pre-commit-config.yaml",
        "present": True,
        "hooks": hooks,
        "tracked": [".pre-commit-config.yaml", "pkg/__init__.py", "pkg/core.py"],
        "runs": [
            {"hook": hook, "returncode": code, "timed_out": False, "log": f"runs/{hook}.out", "stderr_log": "none"}
            for hook, code, _ in runs
        ],
        **changes,
    }
    return data, {f"runs/{hook}.out": output for hook, _, output in runs}


ALL_PASS = [(hook["id"], 0, f"{hook['id']}......Passed") for hook in LOCAL_HOOKS]


def test_hook_category_reads_the_tool_and_its_subcommand() -> None:
    """ruff format is format, ruff check lint, `python -m mypy` type check, detect-secrets-hook secret scan."""
    assert precommit.hook_category("ruff format --check") == "format"
    assert precommit.hook_category("ruff check --fix") == "lint"
    assert precommit.hook_category("python3 -m mypy guardian") == "type check"
    assert precommit.hook_category("/venv/bin/detect-secrets-hook --baseline b.json") == "secret scan"
    assert precommit.hook_category("echo hello") is None


def test_remote_and_installed_languages_are_not_offline() -> None:
    """A remote repo, a local python hook and additional_dependencies each say why they need the network."""
    hooks = precommit.read_hooks(
        "repos:\n"
        "- repo: https://github.com/psf/black\n  rev: 24.1.0\n  hooks: [{id: black}]\n"
        "- repo: local\n  hooks:\n"
        "  - {id: a, name: a, entry: ruff check, language: python}\n"
        "  - {id: b, name: b, entry: mypy x, language: system, additional_dependencies: [types-requests]}\n"
        "  - {id: c, name: c, entry: ruff format, language: system}\n"
    )
    reasons = {hook["id"]: hook["not_offline"] for hook in hooks}
    assert "remote repository https://github.com/psf/black" in reasons["black"]
    assert "language 'python'" in reasons["a"]
    assert "additional_dependencies" in reasons["b"]
    assert reasons["c"] is None


def test_all_four_kinds_passing_is_a_pass() -> None:
    """Four local/system hooks covering every kind, each Passed, make X4 PASS."""
    status, reasons, hooks = precommit.judge(*precommit_evidence(ALL_PASS))
    assert status is Status.PASS, reasons
    assert set(hooks.values()) == {"PASS"}


def test_missing_config_fails_naming_the_file() -> None:
    """No tracked .pre-commit-config.yaml is a FAIL naming the file."""
    data, logs = precommit_evidence([], present=False)
    status, reasons, _ = precommit.judge(data, logs)
    assert status is Status.FAIL
    assert reasons == ["X4: .pre-commit-config.yaml is not in the target's tracked files"]


def test_a_config_without_hooks_is_never_a_pass() -> None:
    """A config that declares no hooks FAILs."""
    status, reasons, _ = precommit.judge(*precommit_evidence([], hooks=[]))
    assert status is Status.FAIL
    assert "declares no hooks" in reasons[0]


def test_an_uninstallable_target_venv_is_inconclusive() -> None:
    """When the target's venv (the hooks' tools) cannot be installed, X4 is INCONCLUSIVE with the reason."""
    data, logs = precommit_evidence([], tools_error="installing pkg: step 'install' exited 1")
    status, reasons, _ = precommit.judge(data, logs)
    assert status is Status.INCONCLUSIVE
    assert reasons == [
        "X4: the hooks' tools (the target's venv) are not there: installing pkg: step 'install' exited 1"
    ]


def test_a_missing_kind_fails_naming_it() -> None:
    """Without a secret-scan hook X4 FAILs, naming the missing kind."""
    data, logs = precommit_evidence(ALL_PASS[:3])
    data["hooks"] = data["hooks"][:3]
    status, reasons, _ = precommit.judge(data, logs)
    assert status is Status.FAIL
    assert "no secret scan hook" in reasons[0]


def test_a_hook_that_matched_no_file_is_inconclusive() -> None:
    """A hook pre-commit skipped for lack of files checked nothing, so X4 is not PASS."""
    runs = [*ALL_PASS[:3], ("secrets", 0, "detect-secrets-hook....(no files to check)Skipped")]
    status, reasons, hooks = precommit.judge(*precommit_evidence(runs))
    assert status is Status.INCONCLUSIVE
    assert hooks["secrets"] == "INCONCLUSIVE"
    assert "hook 'secrets' of .pre-commit-config.yaml matched no file" in reasons[0]


def test_a_failing_hook_fails_naming_the_hook_and_the_file() -> None:
    """A hook exiting 1 is a FAIL naming its id and the tracked file its output names."""
    output = "ruff check....Failed\n- hook id: lint\npkg/core.py:3:8: F401 [*] `os` imported but unused"
    runs = [ALL_PASS[0], ("lint", 1, output), *ALL_PASS[2:]]
    status, reasons, hooks = precommit.judge(*precommit_evidence(runs))
    assert status is Status.FAIL
    assert hooks == {"fmt": "PASS", "lint": "FAIL", "types": "PASS", "secrets": "PASS"}
    assert reasons[0].startswith("X4: hook 'lint' failed on pkg/core.py: ")


def graph_evidence(**changes: Any) -> dict[str, Any]:
    """import_graph.json of a two-module package with one kept layers contract."""
    return {
        "packages": ["pkg"],
        "contracts_file": ".importlinter",
        "modules": ["pkg", "pkg.api", "pkg.store"],
        "imports": [{"importer": "pkg.api", "imported": "pkg.store", "line_numbers": [3]}],
        "imported_target_modules": [],
        "svg_error": None,
        "contract_error": None,
        "contracts": [{"name": "layers", "type": "LayersContract", "kept": True, "broken_imports": []}],
        **changes,
    }


def test_kept_contracts_with_the_graph_pass() -> None:
    """A graph with its SVG and every contract kept is a PASS."""
    status, reasons = import_graph.judge(graph_evidence())
    assert status is Status.PASS
    assert reasons == [
        "X5: import graph of 3 module(s), 1 direct import(s) (grimp)",
        "X5: 1 import contract(s) of .importlinter kept",
    ]


def test_a_broken_contract_fails_naming_it_and_the_import() -> None:
    """A broken contract FAILs naming the contract, the importer, the imported module and the line."""
    broken = {"name": "api above store", "type": "LayersContract", "kept": False}
    broken["broken_imports"] = [{"importer": "pkg.store", "imported": "pkg.api", "line_numbers": [5]}]
    status, reasons = import_graph.judge(graph_evidence(contracts=[broken]))
    assert status is Status.FAIL
    assert reasons[1] == "X5: contract 'api above store' (.importlinter) is broken: pkg.store -> pkg.api (l.5)"


def test_no_contracts_is_inconclusive_with_the_graph_still_counted() -> None:
    """Without declared contracts X5 is INCONCLUSIVE: nothing checked the graph."""
    status, reasons = import_graph.judge(graph_evidence(contracts_file=None, contracts=None))
    assert status is Status.INCONCLUSIVE
    assert "declares no import-linter contracts" in reasons[1]


def test_no_svg_or_an_imported_target_is_not_a_pass() -> None:
    """A missing SVG is INCONCLUSIVE; target modules imported while building the graph FAIL."""
    assert import_graph.judge(graph_evidence(svg_error="graphviz `dot` is not installed"))[0] is Status.INCONCLUSIVE
    assert import_graph.judge(graph_evidence(imported_target_modules=["pkg"]))[0] is Status.FAIL


def test_contracts_file_follows_import_linters_lookup(tmp_path: Path) -> None:
    """setup.cfg with [importlinter], .importlinter, then pyproject's [tool.importlinter]; else None."""
    assert import_graph.contracts_file(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[tool.importlinter]\nroot_package = "x"\n', encoding="utf-8")
    assert import_graph.contracts_file(tmp_path) == tmp_path / "pyproject.toml"
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = x\n", encoding="utf-8")
    (tmp_path / ".importlinter").write_text("[importlinter]\nroot_package = x\n", encoding="utf-8")
    assert import_graph.contracts_file(tmp_path) == tmp_path / ".importlinter"


def run_g7(run_certify: RunCertify, target: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run G7 alone in ci mode; the verdict and the pack's traceability rows of X4 and X5."""
    proc = run_certify("run", "--target", target, "--gates", "G7", "--mode", "ci", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == 1, proc.stdout + proc.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (result,) = [item for item in results["results"] if item["gate"] == "G7"]
    matrix = json.loads((out / "traceability.json").read_text(encoding="utf-8"))
    rows = {row["id"]: row for row in matrix["requirements"] if row["id"] in ("X4", "X5")}
    return result["verdict"], rows


@pytest.mark.integration
def test_failing_hook_and_broken_contract_fail_g7(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """devex-lintfail: ruff-check FAILs on shop/store.py, its layers contract breaks at l.5, shop is not imported."""
    target = git_target("devex-lintfail")
    config = target / "certify.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("TOOLS_BIN", str(Path(sys.executable).parent)))
    commit_all(target, "tools")
    verdict, rows = run_g7(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "FAIL"
    assert verdict["details"]["devex"]["X4"] == {
        "status": "FAIL",
        "hooks": {"ruff-format": "PASS", "ruff-check": "FAIL", "mypy": "PASS", "detect-secrets": "PASS"},
    }
    reasons = verdict["reasons"]
    assert any(r.startswith("X4: hook 'ruff-check' failed on shop/store.py: ") for r in reasons), reasons
    assert "X5: contract 'api above store' (.importlinter) is broken: shop.store -> shop.api (l.5)" in reasons
    graph = json.loads((tmp_path / "pack" / "gates" / "G7" / "import_graph.json").read_text(encoding="utf-8"))
    assert graph["modules"] == ["shop", "shop.api", "shop.store"]
    assert graph["imported_target_modules"] == []
    assert '"shop.store" -> "shop.api";' in (tmp_path / "pack" / "gates" / "G7" / "import_graph.dot").read_text()
    assert [(c["id"], c["status"]) for c in rows["X4"]["checks"]] == [("G7.precommit", "FAIL")]
    assert [(c["id"], c["status"]) for c in rows["X5"]["checks"]] == [("G7.import_graph", "FAIL")]


@pytest.mark.integration
def test_remote_hooks_fail_and_no_contracts_is_inconclusive(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """devex-remote: remote-repo hooks FAIL X4 without running anything; no contracts leave X5 INCONCLUSIVE."""
    verdict, rows = run_g7(run_certify, git_target("devex-remote"), tmp_path / "pack")
    reasons = verdict["reasons"]
    assert any(
        "hook 'ruff': it comes from the remote repository https://github.com/astral-sh/ruff-pre-commit" in r
        for r in reasons
    ), reasons
    assert verdict["details"]["devex"]["X5"]["status"] == "INCONCLUSIVE"
    assert (tmp_path / "pack" / "gates" / "G7" / "import_graph.dot").is_file()
    assert not list((tmp_path / "pack" / "gates" / "G7" / "runs").glob("*pre-commit-*"))
    assert rows["X4"]["checks"][0]["status"] == "FAIL"
    assert rows["X5"]["checks"][0]["status"] == "INCONCLUSIVE"


@pytest.mark.integration
def test_no_precommit_config_fails_naming_it(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A target asked for X4 without a tracked .pre-commit-config.yaml FAILs naming the file."""
    target = git_target("devex-remote")
    git(target, "rm", "-q", ".pre-commit-config.yaml")
    commit_all(target, "no hooks")
    verdict, _ = run_g7(run_certify, target, tmp_path / "pack")
    assert "X4: .pre-commit-config.yaml is not in the target's tracked files" in verdict["reasons"]


def test_dot_names_every_module_and_edge() -> None:
    """to_dot writes one quoted node per module and one edge per import."""
    dot = import_graph.to_dot(["a", "a.b"], [{"importer": "a", "imported": "a.b", "line_numbers": [1]}])
    assert '  "a";\n  "a.b";\n  "a" -> "a.b";\n}' in dot


def test_the_plan_shows_x4_and_x5_with_their_expected_time() -> None:
    """Configured X4/X5 add their lines and expected seconds to G7's plan; unconfigured they add nothing."""
    gate = BootstrapGate()
    policy = BootstrapPolicy(precommit_config=".pre-commit-config.yaml", import_graph=True)
    assert gate.plan_lines(policy, "ci") == [
        "X4 pre-commit hooks of .pre-commit-config.yaml, offline (~30 s)",
        "X5 import graph (grimp) and import-linter contracts (~5 s)",
    ]
    assert gate.planned_duration_s(policy, "ci") == 155.0
    assert gate.plan_lines(BootstrapPolicy(), "ci") == []
    assert gate.planned_duration_s(BootstrapPolicy(), "ci") == 120.0
