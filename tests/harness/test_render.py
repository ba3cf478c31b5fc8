"""Tests for harness.render: certificates only when the data says so, and deterministic bytes."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.errors import PackError
from harness.model import GateResult, Measurement, Status, Verdict
from harness.render import render_junit, render_reports, render_summary
from harness.render_rows import InconsistentResultsError, format_number, markdown_text

MANIFEST_DIGEST = "ab" * 32
CONFIG_DIGEST = "cd" * 32
CERTIFICATE_MD = "production_readiness_certificate.md"
CERTIFICATE_HTML = "production_readiness_certificate.html"
HOSTILE = "<script>alert(1)</script>"


def gate(
    gate_id: str,
    status: Status,
    *reasons: str,
    required: bool = True,
    measurements: tuple[Measurement, ...] = (),
) -> dict[str, Any]:
    """Return one gate result as results.json stores it."""
    result = GateResult(
        gate=gate_id,
        title=f"Title of {gate_id}",
        requirements=(f"R-{gate_id}", "R4"),
        required=required,
        verdict=Verdict(status=status, reasons=reasons, measurements=measurements),
        duration_s=12.5,
        evidence=(f"gates/{gate_id}/raw.json",),
    )
    return result.model_dump(mode="json")


def passing_gates() -> list[dict[str, Any]]:
    """Return two required gates that pass, each with a judged measurement."""
    p99 = Measurement.judged("p99_ms", 812.5, "<=", 1000.0, unit="ms")
    return [
        gate(
            "G1",
            Status.PASS,
            measurements=(Measurement.judged("coverage", 91.23456, ">=", 90.0, "%"),),
        ),
        gate("G2", Status.PASS, measurements=(p99,)),
    ]


def overall_of(results: list[dict[str, Any]], *, certified: bool | None = None) -> dict[str, Any]:
    """Return the overall block a consistent runner would write for these results."""
    blocking = [
        {"gate": r["gate"], "status": r["verdict"]["status"], "reasons": r["verdict"]["reasons"]}
        for r in results
        if r["required"] and r["verdict"]["status"] != "PASS"
    ]
    if certified is None:
        certified = not blocking
    return {"exit_code": 0 if not blocking else 1, "certified": certified, "blocking": blocking}


def run_doc(mode: str = "release", state: str = "COMPLETE", **changes: Any) -> dict[str, Any]:
    """Return a run.json for a small target, with `changes` applied."""
    doc: dict[str, Any] = {
        "format": "release-harness-run/1",
        "state": state,
        "harness_version": "0.1.0",
        "mode": mode,
        "target": {
            "name": "guardian",
            "version": "1.4.0",
            "commit": "0123abc",
            "dirty": False,
            "dir": "/t",
        },
        "config_digest": CONFIG_DIGEST,
        "started_at": "2025-03-01T10:00:00Z",
        "ended_at": "2025-03-01T11:30:00Z",
        "host": {
            "os": "Linux",
            "kernel": "6.1",
            "python": "3.11.7",
            "cpu_model": "Xeon",
            "cpu_count": 8,
            "memory_bytes": 17179869184,
            "gpu": "none",
        },
        "tools": {"locust": "2.24", "bandit": "1.7"},
        "env": {"TZ": "UTC"},
        "gates_selected": ["G1", "G2"],
        "scaled_durations": mode == "ci",
        "interrupted": False,
    }
    doc.update(changes)
    return doc


def write_pack(
    root: Path,
    results: list[dict[str, Any]],
    *,
    run: dict[str, Any] | None = None,
    overall: dict[str, Any] | None = None,
    waivers: list[dict[str, Any]] | None = None,
) -> Path:
    """Write run.json, results.json, config.resolved.json and an empty manifest into `root` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    docs = {
        "run.json": run or run_doc(),
        "results.json": {
            "format": "release-harness-results/1",
            "results": results,
            "overall": overall or overall_of(results),
        },
        "config.resolved.json": {
            "certificate": {
                "required_gates": [r["gate"] for r in results if r["required"]],
                "sign_off": ["Release captain", "Service owner"],
            },
            "waivers": waivers or [],
            "target": {"name": "guardian"},
        },
        "manifest.json": {"format": "release-harness-manifest/1", "files": {}},
    }
    for name, doc in docs.items():
        (root / name).write_text(json.dumps(doc, sort_keys=True, indent=2), encoding="utf-8")
    return root


def text_of(files: dict[str, bytes], name: str) -> str:
    """Decode one rendered file."""
    return files[name].decode("utf-8")


def test_certified_only_when_release_complete_and_every_required_gate_passes(
    tmp_path: Path,
) -> None:
    """A complete release run whose required gates all PASS renders a CERTIFIED certificate."""
    files = render_reports(write_pack(tmp_path, passing_gates()), MANIFEST_DIGEST)
    assert sorted(files) == ["index.html", CERTIFICATE_HTML, CERTIFICATE_MD]
    markdown = text_of(files, CERTIFICATE_MD)
    assert "**CERTIFIED**" in markdown
    assert "NOT CERTIFIED" not in markdown
    assert "CERTIFIED</div>" in text_of(files, CERTIFICATE_HTML)
    assert "p99_ms: 812.5 ms <= 1000 ms ✓ pass" in markdown
    assert "coverage: 91.2346 % >= 90 % ✓ pass" in markdown


def test_not_certified_lists_each_blocking_gate_with_its_reasons(tmp_path: Path) -> None:
    """A required FAIL and a required NOT_RUN both appear under NOT CERTIFIED with their reasons."""
    results = [
        *passing_gates(),
        gate("G3", Status.FAIL, "error rate 4.2% > 1%"),
        gate("G5", Status.NOT_RUN, "bandit is not installed"),
    ]
    files = render_reports(write_pack(tmp_path, results), MANIFEST_DIGEST)
    markdown = text_of(files, CERTIFICATE_MD)
    assert "**NOT CERTIFIED**" in markdown
    assert "- **G3** FAIL: error rate 4.2% > 1%" in markdown
    assert "- **G5** NOT\\_RUN: bandit is not installed" not in markdown  # status is not escaped
    assert "- **G5** NOT_RUN: bandit is not installed" in markdown
    html = text_of(files, CERTIFICATE_HTML)
    assert "NOT CERTIFIED" in html
    assert "error rate 4.2% &gt; 1%" in html


def test_required_gate_missing_from_results_blocks_the_certificate(tmp_path: Path) -> None:
    """A gate the config requires but results.json lacks is shown as a NOT_RUN blocker."""
    root = write_pack(
        tmp_path, passing_gates(), overall={"exit_code": 1, "certified": False, "blocking": []}
    )
    config = json.loads((root / "config.resolved.json").read_text())
    config["certificate"]["required_gates"].append("G7")
    (root / "config.resolved.json").write_text(json.dumps(config))
    markdown = text_of(render_reports(root, MANIFEST_DIGEST), CERTIFICATE_MD)
    assert "- **G7** NOT_RUN: no result recorded" in markdown


def test_certified_claim_contradicted_by_a_fail_raises(tmp_path: Path) -> None:
    """overall.certified=true next to a required FAIL raises instead of printing CERTIFIED."""
    results = [*passing_gates(), gate("G3", Status.FAIL, "too slow")]
    overall = {"exit_code": 0, "certified": True, "blocking": []}
    root = write_pack(tmp_path, results, overall=overall)
    with pytest.raises(ValueError, match="refusing"):
        render_reports(root, MANIFEST_DIGEST)
    with pytest.raises(InconsistentResultsError):
        render_summary(json.loads((root / "results.json").read_text()), run_doc())


def test_certified_claim_with_scaled_durations_raises(tmp_path: Path) -> None:
    """A release run whose durations were scaled cannot be certified, whatever results.json says."""
    root = write_pack(tmp_path, passing_gates(), run=run_doc(scaled_durations=True))
    with pytest.raises(InconsistentResultsError, match="scaled"):
        render_reports(root, MANIFEST_DIGEST)


def test_measurement_marked_passed_against_its_own_numbers_raises(tmp_path: Path) -> None:
    """A measurement whose `passed` contradicts value and threshold is refused, not printed."""
    fake = Measurement(
        name="p99_ms", value=2500.0, unit="ms", threshold=1000.0, comparator="<=", passed=True
    )
    root = write_pack(tmp_path, [gate("G2", Status.PASS, measurements=(fake,))])
    with pytest.raises(InconsistentResultsError, match="p99_ms"):
        render_reports(root, MANIFEST_DIGEST)


def test_ci_mode_renders_a_merge_gate_report_and_never_a_certificate(tmp_path: Path) -> None:
    """A ci run yields merge_gate_report.* only, says it is not a certificate and marks scaling."""
    root = write_pack(tmp_path, passing_gates(), run=run_doc(mode="ci"))
    files = render_reports(root, MANIFEST_DIGEST)
    assert sorted(files) == ["index.html", "merge_gate_report.html", "merge_gate_report.md"]
    for name in ("merge_gate_report.html", "merge_gate_report.md"):
        text = text_of(files, name)
        head = text[: text.index("Merge gate: ")]
        assert "not a production-readiness certificate" in " ".join(head.split())
        assert "Durations were scaled down" in head
        assert "(scaled)" in text
        assert "CERTIFIED" not in text
    assert "## Merge gate: **PASS**" in text_of(files, "merge_gate_report.md")


def test_ci_merge_gate_is_blocked_by_inconclusive_and_failed_by_fail(tmp_path: Path) -> None:
    """An INCONCLUSIVE required gate blocks the merge gate; a FAIL fails it."""
    inconclusive = [*passing_gates(), gate("G4", Status.INCONCLUSIVE, "too few samples")]
    files = render_reports(
        write_pack(tmp_path / "a", inconclusive, run=run_doc(mode="ci")), MANIFEST_DIGEST
    )
    assert "## Merge gate: **BLOCKED**" in text_of(files, "merge_gate_report.md")
    failing = [*inconclusive, gate("G3", Status.FAIL, "too slow")]
    files = render_reports(
        write_pack(tmp_path / "b", failing, run=run_doc(mode="ci")), MANIFEST_DIGEST
    )
    assert "## Merge gate: **FAIL**" in text_of(files, "merge_gate_report.md")


@pytest.mark.parametrize("changes", [{"state": "INCOMPLETE"}, {"interrupted": True}])
def test_incomplete_or_interrupted_run_renders_nothing(
    tmp_path: Path, changes: dict[str, Any]
) -> None:
    """An INCOMPLETE or interrupted run gets no certificate and no report at all."""
    root = write_pack(tmp_path, passing_gates(), run=run_doc(**changes))
    assert render_reports(root, MANIFEST_DIGEST) == {}


def test_rerender_gives_identical_bytes(tmp_path: Path) -> None:
    """Rendering the same pack twice, in either mode, gives byte-identical documents."""
    results = [*passing_gates(), gate("G3", Status.FAIL, "slow", measurements=())]
    for mode in ("release", "ci"):
        root = write_pack(tmp_path / mode, results, run=run_doc(mode=mode))
        assert render_reports(root, MANIFEST_DIGEST) == render_reports(root, MANIFEST_DIGEST)
    results_doc = json.loads((tmp_path / "ci" / "results.json").read_text())
    assert render_junit(results_doc, run_doc()) == render_junit(results_doc, run_doc())
    assert render_summary(results_doc, run_doc()) == render_summary(results_doc, run_doc())


def test_html_escapes_a_hostile_reason(tmp_path: Path) -> None:
    """A reason holding a script tag is escaped in HTML, and cannot open raw HTML in Markdown."""
    root = write_pack(tmp_path, [gate("G3", Status.FAIL, HOSTILE)])
    files = render_reports(root, MANIFEST_DIGEST)
    html = text_of(files, CERTIFICATE_HTML)
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in text_of(files, CERTIFICATE_MD)


def test_markdown_table_survives_pipes_and_newlines_in_a_reason(tmp_path: Path) -> None:
    """A reason with `|` and newlines stays inside one cell of one table row."""
    reason = "left | right\nsecond line\r\nthird"
    root = write_pack(tmp_path, [gate("G3", Status.FAIL, reason)])
    markdown = text_of(render_reports(root, MANIFEST_DIGEST), CERTIFICATE_MD)
    rows = [line for line in markdown.splitlines() if line.startswith("| G3 |")]
    assert len(rows) == 1
    header = next(line for line in markdown.splitlines() if line.startswith("| Gate | Title |"))
    unescaped_pipes = re.compile(r"(?<!\\)\|")
    assert len(unescaped_pipes.findall(rows[0])) == len(unescaped_pipes.findall(header))
    assert "left \\| right<br>second line<br>third" in rows[0]


def test_junit_maps_every_status_and_parses(tmp_path: Path) -> None:
    """JUnit has a testcase per gate: FAIL/INCONCLUSIVE fail, ERROR errors, NOT_RUN is skipped."""
    del tmp_path
    results = [
        gate("G1", Status.PASS),
        gate("G2", Status.FAIL, "p99 too high", "second reason"),
        gate("G3", Status.ERROR, "gate crashed"),
        gate("G4", Status.NOT_RUN, "no toxiproxy"),
        gate("G5", Status.INCONCLUSIVE, "too few samples"),
    ]
    results_doc = {
        "format": "release-harness-results/1",
        "results": results,
        "overall": overall_of(results),
    }
    payload = render_junit(results_doc, run_doc())
    assert payload.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    suite = ET.fromstring(payload)  # noqa: S314 - parses XML this test just rendered
    assert suite.tag == "testsuite"
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("certify", "5", "2")
    assert (suite.get("errors"), suite.get("skipped"), suite.get("time")) == ("1", "1", "62.500")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert len(cases) == 5
    assert all(case.get("classname") == "certify.guardian" for case in cases.values())
    assert list(cases["G1 Title of G1"]) == []
    failure = cases["G2 Title of G2"].find("failure")
    assert failure is not None
    assert failure.get("message") == "p99 too high"
    assert "second reason" in (failure.text or "")
    error = cases["G3 Title of G3"].find("error")
    assert error is not None
    assert error.get("message") == "gate crashed"
    skipped = cases["G4 Title of G4"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "no toxiproxy"
    inconclusive = cases["G5 Title of G5"].find("failure")
    assert inconclusive is not None
    assert inconclusive.get("type") == "INCONCLUSIVE"


def test_junit_stays_parseable_with_control_characters_in_a_reason() -> None:
    """Control characters from tool output are escaped so the XML still parses."""
    results = [gate("G2", Status.FAIL, "ansi \x1b[31mred\x1b[0m and nul \x00")]
    results_doc = {
        "format": "release-harness-results/1",
        "results": results,
        "overall": overall_of(results),
    }
    suite = ET.fromstring(render_junit(results_doc, run_doc()))  # noqa: S314 - our own output
    failure = suite.find("testcase/failure")
    assert failure is not None
    assert failure.get("message") == "ansi \\x1b[31mred\\x1b[0m and nul \\x00"


def test_summary_has_a_row_for_every_gate_and_the_exit_code() -> None:
    """The job summary lists every gate, the overall verdict and what the exit code means."""
    results = [
        *passing_gates(),
        gate("G3", Status.FAIL, "a | b"),
        gate("G9", Status.PASS, required=False),
    ]
    results_doc = {
        "format": "release-harness-results/1",
        "results": results,
        "overall": overall_of(results),
    }
    summary = render_summary(results_doc, run_doc())
    for gate_id in ("G1", "G2", "G3", "G9"):
        assert f"| {gate_id} Title of {gate_id} |" in summary
    assert "## certify: NOT CERTIFIED" in summary
    assert "a \\| b" in summary
    assert "Exit code 1: a gate failed." in summary


def test_summary_in_ci_mode_gives_the_merge_gate_and_scaled_marking() -> None:
    """In ci mode the summary headline is the merge gate, never CERTIFIED, and notes scaling."""
    results = passing_gates()
    results_doc = {
        "format": "release-harness-results/1",
        "results": results,
        "overall": overall_of(results),
    }
    summary = render_summary(results_doc, run_doc(mode="ci"))
    assert "## certify: merge gate: PASS" in summary
    assert "Durations were scaled down" in summary
    assert "CERTIFIED" not in summary


def test_waivers_appear_with_owner_and_expiry(tmp_path: Path) -> None:
    """Waivers in force on the run date are listed with owner and expiry; expired ones apart."""
    waivers = [
        {
            "gate": "G5",
            "finding": "CVE-2024-0001",
            "reason": "not reachable",
            "owner": "alice",
            "expires": "2025-06-30",
        },
        {
            "gate": "G5",
            "finding": "CVE-2023-9999",
            "reason": "old",
            "owner": "bob",
            "expires": "2025-01-01",
        },
    ]
    files = render_reports(write_pack(tmp_path, passing_gates(), waivers=waivers), MANIFEST_DIGEST)
    markdown = text_of(files, CERTIFICATE_MD)
    active, expired = markdown.split("Expired before the run started")
    assert "| G5 | CVE-2024-0001 | not reachable | alice | 2025-06-30 |" in active
    assert "| G5 | CVE-2023-9999 | old | bob | 2025-01-01 |" in expired
    assert "alice" in text_of(files, CERTIFICATE_HTML)


def test_no_waivers_prints_none(tmp_path: Path) -> None:
    """Without waivers the section says `none` instead of disappearing."""
    markdown = text_of(
        render_reports(write_pack(tmp_path, passing_gates()), MANIFEST_DIGEST), CERTIFICATE_MD
    )
    assert "## Waivers in force on the run date\n\nnone\n" in markdown


def test_certificate_shows_digests_verify_command_sign_off_and_run_facts(tmp_path: Path) -> None:
    """Manifest and config digests, the verify command, sign-off lines and run facts are printed."""
    run = run_doc(
        target={
            "name": "guardian",
            "version": "1.4.0",
            "commit": "0123abc",
            "dirty": True,
            "dir": "/t",
        }
    )
    files = render_reports(write_pack(tmp_path, passing_gates(), run=run), MANIFEST_DIGEST)
    for name in (CERTIFICATE_HTML, CERTIFICATE_MD):
        text = text_of(files, name)
        assert f"sha256 of manifest.json: <code>{MANIFEST_DIGEST}" in text or (
            f"sha256 of manifest.json: `{MANIFEST_DIGEST}`" in text
        )
        assert CONFIG_DIGEST in text
        assert "certify verify" in text
        assert "dirty working tree" in text
        assert "2025-03-01T10:00:00Z" in text
        assert "Release captain" in text
        assert "Service owner" in text
    markdown = text_of(files, CERTIFICATE_MD)
    assert "- Release captain: name ___" in markdown
    assert "| G1 | Title of G1 | R-G1, R4 | yes |" in markdown


def test_missing_host_facts_read_missing(tmp_path: Path) -> None:
    """Host facts absent from run.json are printed as `missing`, never as a made-up value."""
    run = run_doc(host={"os": "Linux"})
    markdown = text_of(
        render_reports(write_pack(tmp_path, passing_gates(), run=run), MANIFEST_DIGEST),
        CERTIFICATE_MD,
    )
    assert (
        "Linux (kernel missing), Python missing, CPU missing x missing, memory missing" in markdown
    )


def test_missing_results_file_is_a_pack_error(tmp_path: Path) -> None:
    """A pack without results.json raises PackError with the file named."""
    root = write_pack(tmp_path, passing_gates())
    (root / "results.json").unlink()
    with pytest.raises(PackError, match=r"results\.json"):
        render_reports(root, MANIFEST_DIGEST)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (812.5, "812.5"),
        (1000.0, "1000"),
        (0.1 + 0.2, "0.3"),
        (91.23456, "91.2346"),
        (0.0000123, "1.23e-05"),
        (-0.0, "0"),
        (7, "7"),
        (None, "missing"),
        ("n/a", "n/a"),
    ],
)
def test_format_number_is_fixed_and_free_of_float_noise(value: object, expected: str) -> None:
    """Numbers print with at most four decimals and no float noise; tiny values stay non-zero."""
    assert format_number(value) == expected


def test_markdown_text_keeps_comparators_but_neutralises_tags() -> None:
    """`<=` survives Markdown escaping while `<tag` and `|` are neutralised."""
    assert markdown_text("p99 <= 5 | <b>x</b>") == "p99 <= 5 \\| &lt;b>x&lt;/b>"


def test_all_pass_without_a_certified_claim_stays_not_certified(tmp_path: Path) -> None:
    """Render never upgrades a run: certified=false prints NOT CERTIFIED even when all pass."""
    results = passing_gates()
    root = write_pack(tmp_path, results, overall=overall_of(results, certified=False))
    markdown = text_of(render_reports(root, MANIFEST_DIGEST), CERTIFICATE_MD)
    assert "**NOT CERTIFIED**" in markdown
    assert "results.json does not certify this run" in markdown


def test_release_run_with_scaled_durations_is_marked(tmp_path: Path) -> None:
    """A release run that scaled its durations says so under the verdict and in the gate table."""
    results = passing_gates()
    run = run_doc(scaled_durations=True)
    root = write_pack(tmp_path, results, run=run, overall=overall_of(results, certified=False))
    markdown = text_of(render_reports(root, MANIFEST_DIGEST), CERTIFICATE_MD)
    assert "Durations were scaled down in this run" in markdown
    assert "12.5 (scaled)" in markdown


def test_run_json_without_the_interrupted_fact_is_a_pack_error(tmp_path: Path) -> None:
    """A run.json that does not say whether it was interrupted is refused, not assumed complete."""
    run = run_doc()
    del run["interrupted"]
    root = write_pack(tmp_path, passing_gates(), run=run)
    with pytest.raises(PackError, match="interrupted"):
        render_reports(root, MANIFEST_DIGEST)
