"""Tests for gate G8 (gates/docs.py): CLI runs on the docs-* fixture targets, and evaluate on hand-written evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest

from gates.docs import DocsGate, DocsPolicy, github_slug, parse_markdown, quickstart_script, runnable_blocks
from harness.gate import Evidence
from harness.model import Status
from tests.conftest import GitTarget, RunCertify, commit_all


def run_g8(run_certify: RunCertify, target: Path, out: Path) -> dict[str, Any]:
    """Run gate G8 alone on target; assert no traceback and that `certify verify` accepts the pack."""
    proc = run_certify("run", "--target", target, "--gates", "G8", "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr
    check = run_certify("verify", out)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (result,) = [item for item in results["results"] if item["gate"] == "G8"]
    verdict: dict[str, Any] = result["verdict"]
    verdict["exit_code"] = proc.returncode
    return verdict


def findings_of(out: Path) -> dict[str, Any]:
    """The pack's docs_findings.json."""
    data: dict[str, Any] = json.loads((out / "gates" / "G8" / "docs_findings.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.integration
def test_honest_docs_pass(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """docs-ok PASSes: docs complete, links resolve, alerts covered, three quickstart blocks ran; no-run skipped."""
    target = git_target("docs-ok")
    out = tmp_path / "pack"
    verdict = run_g8(run_certify, target, out)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert verdict["exit_code"] == 0
    total_s = verdict["details"]["quickstart"]["total_s"]
    assert verdict["reasons"][0] == (
        "7 document(s) and 2 runbook(s) complete; 10 relative link(s) resolve (1 external listed, not fetched); "
        f"2 alert(s) name existing runbooks; 3 quickstart block(s) ran in {total_s:.1f} s"
    )
    assert (out / "readme_quickstart.md").read_bytes() == (target / "docs" / "quickstart.md").read_bytes()
    report = findings_of(out)
    assert report["findings"] == []
    assert [link["href"] for link in report["links"] if link["kind"] == "external"] == ["https://example.org/docs-ok"]
    assert {link["status"] for link in report["links"] if link["kind"] != "external"} == {"ok"}
    assert [block["line"] for block in report["quickstart"]["blocks"]] == [7, 13, 20]
    assert [alert["resolved"] for alert in report["alerts"]] == [
        "docs/runbooks/service-down.md",
        "docs/runbooks/high-error-rate.md",
    ]
    log = (out / "gates" / "G8" / report["quickstart"]["log"]).read_text(encoding="utf-8")
    assert "self-check ok: port 8000" in log


@pytest.mark.integration
def test_broken_docs_fail_with_every_finding(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """docs-broken FAILs with one finding per breakage, each at its file and line; block 3 never runs."""
    out = tmp_path / "pack"
    verdict = run_g8(run_certify, git_target("docs-broken"), out)
    assert verdict["status"] == "FAIL"
    assert verdict["exit_code"] == 1
    found = {(f["file"], f["line"], f["kind"]) for f in findings_of(out)["findings"]}
    assert found == {
        ("docs/configuration-matrix.md", 0, "missing_document"),
        ("docs/runbooks/service-down.md", 18, "thin_section"),
        ("README.md", 4, "dead_link"),
        ("README.md", 5, "dead_link"),
        ("docs/quickstart.md", 37, "dead_link"),
        ("docs/troubleshooting.md", 15, "placeholder"),
        ("observability/alerts.yml", 18, "alert_runbook_missing"),
        ("docs/quickstart.md", 13, "quickstart_failed"),
    }
    reasons = "\n".join(verdict["reasons"])
    assert "docs/runbooks/service-down.md:18: section 'Rollback' has 2 word(s), fewer than 15" in reasons
    assert "no heading or id 'service-wont-start' in docs/troubleshooting.md" in reasons
    assert "docs/troubleshooting.md:15: placeholder text 'TODO'" in reasons
    assert "alert 'DiskFull' names runbook 'disk-full', which does not exist" in reasons
    assert "quickstart block 2 of 3 failed (exit code 1)" in reasons
    assert "cannot stat 'config.sample.ini'" in reasons
    steps = findings_of(out)["quickstart"]["steps"]
    assert [step["name"] for step in steps] == ["block 1 (docs/quickstart.md:7)", "block 2 (docs/quickstart.md:13)"]


@pytest.mark.integration
def test_hanging_block_times_out_and_is_stopped(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A quickstart block that runs a server in the foreground FAILs after block_timeout_s, and nothing survives."""
    target = git_target("docs-ok")
    config = target / "certify.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("block_timeout_s = 30", "block_timeout_s = 2"), "utf-8"
    )
    quickstart = target / "docs" / "quickstart.md"
    text = quickstart.read_text(encoding="utf-8").replace("```sh no-run\n", "```sh\nsleep 3172 &\n")
    text = text.replace(".venv/bin/python service.py --serve", "sleep 3173")
    quickstart.write_text(text, encoding="utf-8")
    commit_all(target, "a block that never ends")
    out = tmp_path / "pack"
    verdict = run_g8(run_certify, target, out)
    assert verdict["status"] == "FAIL"
    (finding,) = findings_of(out)["findings"]
    assert (finding["line"], finding["kind"]) == (28, "quickstart_timeout")
    assert finding["message"] == "quickstart block 4 of 4 did not finish within 2 s"
    names = [(p.info["cmdline"] or [])[:2] for p in psutil.process_iter(["cmdline"])]
    assert ["sleep", "3172"] not in names
    assert ["sleep", "3173"] not in names


@pytest.mark.integration
def test_quickstart_without_runnable_blocks_is_inconclusive(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """When every block opts out, nothing shows the quickstart works: INCONCLUSIVE, not PASS."""
    target = git_target("docs-ok")
    quickstart = target / "docs" / "quickstart.md"
    text = quickstart.read_text(encoding="utf-8").replace("```sh\n", "```sh no-run\n").replace("```bash\n", "```text\n")
    quickstart.write_text(text, encoding="utf-8")
    commit_all(target, "nothing runnable")
    verdict = run_g8(run_certify, target, tmp_path / "pack")
    assert verdict["status"] == "INCONCLUSIVE"
    assert "docs/quickstart.md has no runnable sh/bash block" in verdict["reasons"][0]


@pytest.mark.integration
def test_untracked_docs_do_not_count(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """A document that exists only in the working copy is missing for a clean clone, so G8 FAILs."""
    target = git_target("docs-ok")
    matrix = target / "docs" / "configuration-matrix.md"
    matrix.rename(target / "matrix-draft.md")
    commit_all(target, "drop the matrix")
    matrix.write_text("# Configuration matrix\n\nLocal draft.\n", encoding="utf-8")
    out = tmp_path / "pack"
    verdict = run_g8(run_certify, target, out)
    assert verdict["status"] == "FAIL"
    kinds = {(f["file"], f["kind"]) for f in findings_of(out)["findings"]}
    assert ("docs/configuration-matrix.md", "missing_document") in kinds


@pytest.mark.integration
def test_quickstart_written_for_the_repository_root(
    git_target: GitTarget, run_certify: RunCertify, tmp_path: Path
) -> None:
    """With repo_subdir, blocks run from above the copy, and a `cd` in one block carries over to the next."""
    target = git_target("docs-ok")
    config = target / "certify.toml"
    config.write_text(config.read_text(encoding="utf-8") + 'repo_subdir = "services/docs-ok"\n', encoding="utf-8")
    quickstart = target / "docs" / "quickstart.md"
    text = quickstart.read_text(encoding="utf-8")
    quickstart.write_text(text.replace("## 1. Create", "```sh\ncd services/docs-ok\n```\n\n## 1. Create"), "utf-8")
    commit_all(target, "quickstart from the repository root")
    out = tmp_path / "pack"
    verdict = run_g8(run_certify, target, out)
    assert verdict["status"] == "PASS", verdict["reasons"]
    assert len(findings_of(out)["quickstart"]["steps"]) == 4


@pytest.mark.integration
def test_not_a_git_repo_is_inconclusive(git_target: GitTarget, run_certify: RunCertify, tmp_path: Path) -> None:
    """Without git there is no telling what a clean clone holds: INCONCLUSIVE and no quickstart run."""
    out = tmp_path / "pack"
    verdict = run_g8(run_certify, git_target("docs-ok", init_git=False), out)
    assert verdict["status"] == "INCONCLUSIVE"
    assert verdict["reasons"][0].startswith("the target is not a git work tree")
    assert not (out / "readme_quickstart.md").exists()


def test_github_slugs() -> None:
    """Heading anchors follow GitHub: lower case, punctuation dropped, spaces to hyphens, duplicates numbered."""
    assert github_slug("1. Create the environment") == "1-create-the-environment"
    assert github_slug("What's `config.ini`?") == "whats-configini"
    assert github_slug("Rollback / undo") == "rollback--undo"
    doc = parse_markdown('# Setup\n\n## Setup\n\n## Setup\n\n<a id="custom"></a>\n')
    assert [h.slug for h in doc.headings] == ["setup", "setup-1", "setup-2"]
    assert "custom" in doc.anchors


def test_runnable_blocks_respect_both_opt_outs() -> None:
    """sh/bash/shell fences run; `sh no-run`, a preceding <!-- no-run --> comment and other languages do not."""
    text = (
        "```sh\necho one\n```\n\n```sh no-run\necho two\n```\n\n<!-- no-run -->\n```bash\necho three\n```\n\n"
        "```python\nprint(4)\n```\n\n```shell\necho five\n```\n"
    )
    blocks = runnable_blocks(parse_markdown(text))
    assert [b.content for b in blocks] == ["echo one\n", "echo five\n"]
    script = quickstart_script(blocks, "docs/q.md")
    assert script.splitlines() == [
        "set -e",
        "echo '==> step: block 1 (docs/q.md:1)'",
        "echo one",
        "echo '==> step: block 2 (docs/q.md:18)'",
        "echo five",
    ]


RUNBOOK = """# Runbook: disk full

## Symptoms

Writes fail with ENOSPC and the DiskFull alert fires on the node that holds the data directory of the service.

## Diagnosis

Run df -h on the data volume and du -sh on the data directory to see which files grew and since when exactly.

## Remediation

Delete rotated logs older than seven days, then compact the store with the maintenance command from the guide.

## Rollback

Restore the files you deleted from last night's snapshot if the service reports missing segments afterwards.

## Verification

The DiskFull alert resolves, df shows more than twenty percent free, and writes succeed again from the client.
"""
RUN_CONFIGURATION = {
    "os": "Debian GNU/Linux 12 (bookworm)",
    "os_id": "debian",
    "os_name": "Debian GNU/Linux",
    "os_version": "12",
    "python": "3.11.7",
    "machine": "x86_64",
}
QUICKSTART = "# Quickstart\n\nRead the [runbook](runbooks/disk-full.md#diagnosis).\n\n```sh\necho hi\n```\n"
RULES = (
    "groups:\n  - name: g\n    rules:\n      - alert: DiskFull\n        annotations:\n          runbook: disk-full\n"
)


def docs_evidence(tmp_path: Path, files: dict[str, str], returncode: int = 0) -> Evidence:
    """Hand-written G8 evidence: a snapshot of the files, and a one-block quickstart run that exited returncode."""
    gate = tmp_path / "gates" / "G8"
    for path, text in files.items():
        (gate / "snapshot" / path).parent.mkdir(parents=True, exist_ok=True)
        (gate / "snapshot" / path).write_text(text, encoding="utf-8")
    (gate / "runs").mkdir(parents=True)
    (gate / "runs" / "02-quickstart.stdout.txt").write_text(
        "[     0.001] ==> step: block 1 (docs/quickstart.md:5)\n[     0.002] hi\n", encoding="utf-8"
    )
    run = {
        "returncode": returncode,
        "timed_out": False,
        "cancelled": False,
        "duration_s": 0.1,
        "elapsed_s": 0.05,
        "spawn_error": None,
        "step_timed_out": None,
        "left_running": [],
        "log": "runs/02-quickstart.stdout.txt",
    }
    inputs = {
        "mode": "ci",
        "copy": {"git_error": None, "files": len(files)},
        "tracked": sorted(files),
        "snapshot": sorted(files),
        "quickstart_run": run,
        "leftovers": [],
        "run_configuration": RUN_CONFIGURATION,
    }
    (gate / "docs_inputs.json").write_text(json.dumps(inputs), encoding="utf-8")
    names = tuple(str(p.relative_to(tmp_path)) for p in gate.rglob("*") if p.is_file())
    return Evidence(tmp_path, "G8", names)


POLICY = DocsPolicy(required_docs=(), alert_rules=("alerts.yml",), required_runbooks=("disk-full",))
MATRIX = "# Known-good configurations\n\n| OS | Python |\n|---|---|\n| Debian 12 | 3.11 |\n"
TROUBLESHOOTING = "# Troubleshooting\n\n" + "When the service does not answer, read its log and restart it. " * 6 + "\n"
GOOD = {
    "docs/quickstart.md": QUICKSTART,
    "docs/runbooks/disk-full.md": RUNBOOK,
    "alerts.yml": RULES,
    "docs/configuration-matrix.md": MATRIX,
    "docs/troubleshooting.md": TROUBLESHOOTING,
}


def test_evaluate_passes_complete_hand_written_docs(tmp_path: Path) -> None:
    """A complete runbook, a resolving anchor link, a covered alert and a passing block evaluate to PASS."""
    verdict = DocsGate().evaluate(docs_evidence(tmp_path, GOOD), POLICY)
    assert verdict.status is Status.PASS, verdict.reasons


@pytest.mark.parametrize(
    ("path", "old", "new", "expected"),
    [
        (
            "docs/runbooks/disk-full.md",
            "Restore the files you deleted from last night's snapshot if the service "
            "reports missing segments afterwards.",
            "",
            "docs/runbooks/disk-full.md:15: section 'Rollback' has 0 word(s)",
        ),
        ("docs/runbooks/disk-full.md", "## Verification", "## Checks", "runbook has no 'verification' section"),
        ("docs/runbooks/disk-full.md", "Delete rotated", "TBD: delete rotated", "placeholder text 'TBD'"),
        ("docs/quickstart.md", "#diagnosis", "#triage", "dead anchor: no heading or id 'triage'"),
        ("docs/quickstart.md", "runbooks/disk-full.md", "runbooks/disk.md", "dead: docs/runbooks/disk.md is not a"),
        ("alerts.yml", "runbook: disk-full", "runbook: docs/runbooks/memory.md", "names runbook 'docs/runbooks/memory"),
        ("alerts.yml", "        annotations:\n          runbook: disk-full\n", "", "has no annotations.runbook"),
        ("docs/quickstart.md", "echo hi", "echo hi >/tmp/hi.txt", "docs/quickstart.md:6: writes under the real /tmp"),
        (
            "docs/configuration-matrix.md",
            "| Debian 12 | 3.11 |",
            "| Debian 12 | 3.12 |",
            "docs/configuration-matrix.md: no row of the known-good configuration matrix (D3) names this run's "
            "OS 'Debian GNU/Linux 12 (bookworm)', Python 3.11.7",
        ),
        (
            "docs/configuration-matrix.md",
            "| Debian 12 | 3.11 |",
            "| Ubuntu 24.04 | 3.11 |",
            "no row of the known-good configuration matrix (D3)",
        ),
        (
            "docs/troubleshooting.md",
            TROUBLESHOOTING,
            "# Troubleshooting\n\nRestart it.\n",
            "docs/troubleshooting.md: the troubleshooting guide (D4) has 3 words, fewer than 50",
        ),
    ],
)
def test_evaluate_fails_each_kind_of_defect(tmp_path: Path, path: str, old: str, new: str, expected: str) -> None:
    """One defect in otherwise complete docs FAILs with a reason naming it."""
    assert old in GOOD[path]
    files = {**GOOD, path: GOOD[path].replace(old, new)}
    verdict = DocsGate().evaluate(docs_evidence(tmp_path, files), POLICY)
    assert verdict.status is Status.FAIL
    assert any(expected in reason for reason in verdict.reasons), verdict.reasons


def test_evaluate_passes_a_block_writing_under_tmpdir(tmp_path: Path) -> None:
    """A block that writes under "${TMPDIR:-/tmp}" (the gate's private TMPDIR when it runs) is no finding."""
    files = {**GOOD, "docs/quickstart.md": QUICKSTART.replace("echo hi", 'echo hi >"${TMPDIR:-/tmp}/hi.txt"')}
    verdict = DocsGate().evaluate(docs_evidence(tmp_path, files), POLICY)
    assert verdict.status is Status.PASS, verdict.reasons


def test_evaluate_fails_a_failed_quickstart_block(tmp_path: Path) -> None:
    """A quickstart run that exited non-zero FAILs naming the block and its line."""
    verdict = DocsGate().evaluate(docs_evidence(tmp_path, GOOD, returncode=2), POLICY)
    assert verdict.status is Status.FAIL
    assert verdict.reasons[0].startswith("docs/quickstart.md:5: quickstart block 1 of 1 failed (exit code 2)")


def test_evaluate_follows_the_policy_not_collect(tmp_path: Path) -> None:
    """The same evidence judged with a higher min_section_words FAILs: findings are recomputed from the snapshot."""
    evidence = docs_evidence(tmp_path, GOOD)
    strict = POLICY.model_copy(update={"min_section_words": 25})
    verdict = DocsGate().evaluate(evidence, strict)
    assert verdict.status is Status.FAIL
    assert len(verdict.reasons) == 5


def test_evaluate_fails_without_a_configuration_matrix_or_guide(tmp_path: Path) -> None:
    """Docs without the D3 matrix and the D4 guide FAIL, each reason naming the missing file."""
    files = {k: v for k, v in GOOD.items() if k not in ("docs/configuration-matrix.md", "docs/troubleshooting.md")}
    verdict = DocsGate().evaluate(docs_evidence(tmp_path, files), POLICY)
    assert verdict.status is Status.FAIL
    assert any("docs/configuration-matrix.md: the known-good configuration matrix (D3)" in r for r in verdict.reasons)
    assert any("docs/troubleshooting.md: the troubleshooting guide (D4) is not" in r for r in verdict.reasons)


def test_evaluate_is_inconclusive_without_the_runs_configuration(tmp_path: Path) -> None:
    """Evidence that records no run configuration cannot show D3's row for this run: INCONCLUSIVE."""
    evidence = docs_evidence(tmp_path, GOOD)
    inputs_path = tmp_path / "gates" / "G8" / "docs_inputs.json"
    inputs = json.loads(inputs_path.read_text(encoding="utf-8"))
    del inputs["run_configuration"]
    inputs_path.write_text(json.dumps(inputs), encoding="utf-8")
    verdict = DocsGate().evaluate(evidence, POLICY)
    assert verdict.status is Status.INCONCLUSIVE
    assert any("records no run configuration" in reason for reason in verdict.reasons)
