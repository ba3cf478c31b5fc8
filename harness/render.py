"""Rendered documents of an evidence pack: certificate or merge-gate report, JUnit XML, job summary.

Everything here is a pure function of the pack's JSON files: no clock, no environment, so the same
pack always renders to the same bytes and `certify verify` can re-render and compare.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jinja2
from pydantic import ValidationError

from harness.errors import PackError
from harness.model import GateResult, Status
from harness.render_index import INDEX, index_context
from harness.render_matrix import traceability_context
from harness.render_policy import junit_policy, policy_context
from harness.render_rows import (
    VERIFY_COMMAND,
    InconsistentResultsError,
    fact_text,
    gate_row,
    host_summary,
    markdown_text,
    run_day,
    target_facts,
    waivers,
    xml_text,
)

RUN_FORMATS = ("release-harness-run/1", "release-harness-run/2")  # 2: judged under a policy (policy.toml)
DEVIATIONS_NAME = "deviations.json"
RESULTS_FORMAT = "release-harness-results/1"
CERTIFICATE_STEM = "production_readiness_certificate"
MERGE_REPORT_STEM = "merge_gate_report"

#: What the exit code recorded in results.json means; the same table as `certify --help` prints.
EXIT_CODE_MEANINGS: dict[int, str] = {
    0: "every required gate passed",
    1: "a gate failed",
    2: "usage or configuration error",
    3: "a required gate is INCONCLUSIVE, NOT_RUN or ERROR, or the target could not be started",
    4: "the run deviates from the policy and no policy waiver accepts it: it cannot certify",
    130: "interrupted: the pack is INCOMPLETE and has no certificate",
}

_DIGEST = re.compile(r"[0-9a-f]{64}")
_BLANK_LINE_RUNS = re.compile(r"\n{3,}")


@dataclasses.dataclass(frozen=True)
class Blocker:
    """A gate that stands between the run and a certificate (or a green merge gate)."""

    gate: str
    status: str
    reasons: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Overall:
    """The `overall` block of results.json, type-checked."""

    exit_code: int
    certified: bool
    blocking: tuple[Blocker, ...]
    deviations: tuple[str, ...] = ()
    matrix_short: tuple[str, ...] = ()  # in-scope requirements not PASS, when the policy lists requirements


def render_reports(pack_root: Path, manifest_digest: str) -> dict[str, bytes]:
    """Render the certificate (release) or merge-gate report (ci) and index.html of a pack; {} if incomplete."""
    if not _DIGEST.fullmatch(manifest_digest):
        msg = f"manifest digest must be 64 lowercase hex digits, got {manifest_digest!r}"
        raise ValueError(msg)
    run_doc = _read_pack_json(pack_root, "run.json", RUN_FORMATS)
    results_doc = _read_pack_json(pack_root, "results.json", RESULTS_FORMAT)
    config_doc = _read_pack_json(pack_root, "config.resolved.json", None)
    _check_run_facts(run_doc)
    if run_doc["state"] != "COMPLETE" or run_doc["interrupted"]:
        return {}
    mode = run_doc["mode"]
    deviations_doc = (
        _read_pack_json(pack_root, DEVIATIONS_NAME, None) if (pack_root / DEVIATIONS_NAME).is_file() else None
    )
    context = _report_context(run_doc, results_doc, config_doc, manifest_digest)
    context.update(policy_context(run_doc, deviations_doc))
    template_stem, file_stem = (
        ("certificate", CERTIFICATE_STEM) if mode == "release" else ("merge_report", MERGE_REPORT_STEM)
    )
    rendered = {
        f"{file_stem}.{ext}": _render(f"{template_stem}.{ext}.j2", context).encode("utf-8") for ext in ("md", "html")
    }
    index = index_context(pack_root, context, _gate_results(results_doc))
    index["pack_files"] += [{"path": name, "href": name} for name in rendered]
    rendered[INDEX] = _render("index.html.j2", index).encode("utf-8")
    return rendered


def render_summary(
    results_doc: dict[str, Any],
    run_doc: dict[str, Any],
    deviations_doc: dict[str, Any] | None = None,
    *,
    index_link: bool = False,
) -> str:
    """Render the GitHub-flavoured Markdown job summary of a run (also for incomplete runs).

    `index_link` adds the link to index.html (complete runs since the index exists; verify passes
    what the recorded summary says, so packs from before the index still re-render byte for byte).
    """
    results = _gate_results(results_doc)
    overall = _overall(results_doc)
    required_ids = _required_gate_ids(results, ())
    blockers = _blockers(results, required_ids, overall)
    refusals = _certificate_refusals(run_doc, overall, required_ids, blockers)
    if run_doc.get("mode") == "release":
        certified = _decide_certified(overall, refusals)
        headline = "CERTIFIED" if certified else "NOT CERTIFIED"
    else:
        headline = f"merge gate: {_merge_gate_status(run_doc, required_ids, blockers, overall)}"
    context = {
        "headline": headline,
        "mode": fact_text(run_doc.get("mode")),
        "state": fact_text(run_doc.get("state")),
        "target": target_facts(run_doc),
        "scaled": run_doc.get("scaled_durations") is not False,
        "rows": [gate_row(result) for result in results],
        "blockers": blockers,
        "refusals": refusals,
        "exit_code": overall.exit_code,
        "exit_meaning": exit_code_meaning(overall.exit_code),
        **policy_context(run_doc, deviations_doc),
        "traceability": traceability_context(results_doc),
        "index_link": index_link,
    }
    return _render("summary.md.j2", context)


def render_junit(
    results_doc: dict[str, Any], run_doc: dict[str, Any], deviations_doc: dict[str, Any] | None = None
) -> bytes:
    """Render JUnit XML, one testcase per gate; INCONCLUSIVE fails so it never looks green.

    A run judged under a policy also names it (properties) and carries one `policy deviations` testcase
    that fails when a deviation is unwaived.
    """
    results = _gate_results(results_doc)
    statuses = [result.verdict.status for result in results]
    suite = ET.Element(
        "testsuite",
        {
            "name": "certify",
            "tests": str(len(results)),
            "failures": str(sum(s in {Status.FAIL, Status.INCONCLUSIVE} for s in statuses)),
            "errors": str(statuses.count(Status.ERROR)),
            "skipped": str(statuses.count(Status.NOT_RUN) + statuses.count(Status.NOT_APPLICABLE)),
            "time": f"{sum(result.duration_s for result in results):.3f}",
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name in ("mode", "state", "harness_version", "scaled_durations"):
        ET.SubElement(properties, "property", {"name": name, "value": xml_text(fact_text(run_doc.get(name)))})
    classname = f"certify.{target_facts(run_doc)['name']}"
    policy = policy_context(run_doc, deviations_doc)
    if policy["policy"] is not None:
        junit_policy(suite, properties, classname, policy)
    for result in results:
        _junit_testcase(suite, classname, result)
    ET.indent(suite)
    payload: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return payload + b"\n"


def exit_code_meaning(exit_code: int) -> str:
    """Explain a certify exit code in one phrase."""
    return EXIT_CODE_MEANINGS.get(exit_code, "not a code this harness version documents")


def _junit_testcase(suite: ET.Element, classname: str, result: GateResult) -> None:
    """Append one gate as a testcase, mapping its status onto JUnit's failure/error/skipped."""
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": xml_text(classname),
            "name": xml_text(f"{result.gate} {result.title}"),
            "time": f"{result.duration_s:.3f}",
        },
    )
    status = result.verdict.status
    if status is Status.PASS:
        return
    first_reason = xml_text(result.verdict.reasons[0]) if result.verdict.reasons else status.value
    if status in {Status.NOT_RUN, Status.NOT_APPLICABLE}:
        ET.SubElement(case, "skipped", {"message": first_reason})
        return
    tag = "error" if status is Status.ERROR else "failure"
    outcome = ET.SubElement(case, tag, {"message": first_reason, "type": status.value})
    lines = [f"status: {status.value}", *result.verdict.reasons]
    lines += [f"{line.text} [{line.mark}]" for line in gate_row(result).measurements]
    outcome.text = xml_text("\n".join(lines))


def _read_pack_json(pack_root: Path, name: str, expected_format: str | tuple[str, ...] | None) -> dict[str, Any]:
    """Read one JSON object from the pack root and check its format tag."""
    path = pack_root / name
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{name} in {pack_root} cannot be read as JSON: {exc}"
        raise PackError(msg) from exc
    if not isinstance(doc, dict):
        msg = f"{name} in {pack_root} is not a JSON object"
        raise PackError(msg)
    allowed = (expected_format,) if isinstance(expected_format, str) else expected_format
    if allowed is not None and doc.get("format") not in allowed:
        msg = f"{name}: format is {doc.get('format')!r}, expected {expected_format!r}"
        raise PackError(msg)
    return doc


def _check_run_facts(run_doc: dict[str, Any]) -> None:
    """Refuse a run.json whose deciding facts are missing or mistyped rather than guess them."""
    expected = {
        "state": ("COMPLETE", "INCOMPLETE"),
        "mode": ("release", "ci"),
        "interrupted": (True, False),
        "scaled_durations": (True, False),
    }
    for key, allowed in expected.items():
        value = run_doc.get(key)
        if not any(value is option or value == option for option in allowed):
            msg = f"run.json: {key} is {value!r}, expected one of {', '.join(map(repr, allowed))}"
            raise PackError(msg)


def _gate_results(results_doc: dict[str, Any]) -> tuple[GateResult, ...]:
    """Validate every gate result against the model; a gate listed twice is an error."""
    try:
        results = tuple(GateResult.model_validate(raw) for raw in results_doc.get("results", ()))
    except (ValidationError, TypeError) as exc:
        msg = f"results.json: a gate result does not match the model: {exc}"
        raise PackError(msg) from exc
    gate_ids = [result.gate for result in results]
    duplicates = sorted({gate for gate in gate_ids if gate_ids.count(gate) > 1})
    if duplicates:
        msg = f"results.json lists gate(s) {', '.join(duplicates)} more than once"
        raise PackError(msg)
    return results


def _overall(results_doc: dict[str, Any]) -> Overall:
    """Type-check the `overall` block; a missing or mistyped field is a pack error, not a guess."""
    raw = results_doc.get("overall")
    if not isinstance(raw, dict):
        raise PackError("results.json has no `overall` object")
    exit_code, certified, blocking = raw.get("exit_code"), raw.get("certified"), raw.get("blocking")
    deviations = raw.get("deviations", [])
    if not isinstance(deviations, list):
        raise PackError("results.json: overall.deviations is not a list")
    if isinstance(exit_code, bool) or not isinstance(exit_code, int):
        raise PackError("results.json: overall.exit_code is not an integer")
    if not isinstance(certified, bool) or not isinstance(blocking, list):
        raise PackError("results.json: overall.certified or overall.blocking is missing")
    try:
        blockers = tuple(
            Blocker(str(item["gate"]), Status(item["status"]).value, tuple(map(str, item["reasons"])))
            for item in blocking
        )
    except (KeyError, TypeError, ValueError) as exc:
        msg = f"results.json: an overall.blocking entry is malformed: {exc}"
        raise PackError(msg) from exc
    return Overall(
        exit_code=exit_code,
        certified=certified,
        blocking=blockers,
        deviations=tuple(map(str, deviations)),
        matrix_short=_matrix_short(raw.get("traceability")),
    )


def _matrix_short(facts: Any) -> tuple[str, ...]:
    """The in-scope requirements not PASS when the policy lists requirements (so they block), else ()."""
    if not isinstance(facts, dict) or not facts.get("scope_listed"):
        return ()
    return tuple(str(item) for item in facts.get("not_passed") or ())


def _required_gate_ids(results: tuple[GateResult, ...], configured: tuple[str, ...]) -> tuple[str, ...]:
    """Gates that must PASS: those the config requires, then any result marked required."""
    required = list(configured)
    required += [result.gate for result in results if result.required and result.gate not in required]
    return tuple(required)


def _blockers(results: tuple[GateResult, ...], required_ids: tuple[str, ...], overall: Overall) -> tuple[Blocker, ...]:
    """Blocking gates as results.json lists them, plus any required gate it forgot to list."""
    by_id = {result.gate: result for result in results}
    blockers = list(overall.blocking)
    listed = {blocker.gate for blocker in blockers}
    for gate_id in required_ids:
        result = by_id.get(gate_id)
        if gate_id in listed or (result is not None and result.verdict.status is Status.PASS):
            continue
        if result is None:
            blockers.append(Blocker(gate_id, Status.NOT_RUN.value, ("no result recorded",)))
        else:
            blockers.append(Blocker(gate_id, result.verdict.status.value, result.verdict.reasons))
    return tuple(blockers)


def _certificate_refusals(
    run_doc: dict[str, Any],
    overall: Overall,
    required_ids: tuple[str, ...],
    blockers: tuple[Blocker, ...],
) -> list[str]:
    """Every reason the data does not support a certificate; empty only when it does."""
    checks = [
        (run_doc.get("mode") == "release", "the run is not in release mode"),
        (run_doc.get("state") == "COMPLETE", "the run is not COMPLETE"),
        (run_doc.get("interrupted") is False, "the run was interrupted (or does not say)"),
        (run_doc.get("scaled_durations") is False, "durations were scaled (or it is not recorded)"),
        (bool(required_ids), "no gate is required"),
        (not blockers, "gate(s) " + ", ".join(f"{b.gate} {b.status}" for b in blockers)),
        (not overall.deviations, "unwaived deviation(s) from the policy: " + ", ".join(overall.deviations)),
        (
            not (run_doc.get("mode") == "release" and overall.matrix_short),
            "traceability matrix not complete; in-scope requirement(s) not PASS: " + ", ".join(overall.matrix_short),
        ),
        (overall.exit_code == 0, f"the exit code is {overall.exit_code}, not 0"),
    ]
    return [refusal for holds, refusal in checks if not holds]


def _decide_certified(overall: Overall, refusals: list[str]) -> bool:
    """Re-check results.json's claim against the refusals; a certificate the data does not support raises instead."""
    if overall.certified and refusals:
        msg = "results.json says certified, but " + "; ".join(refusals) + "; refusing to render it"
        raise InconsistentResultsError(msg, hint=f"run `{VERIFY_COMMAND}` to recompute the verdicts")
    return overall.certified


def _merge_gate_status(
    run_doc: dict[str, Any],
    required_ids: tuple[str, ...],
    blockers: tuple[Blocker, ...],
    overall: Overall,
) -> str:
    """PASS only when every required gate passed; FAIL when one failed; BLOCKED otherwise."""
    if any(blocker.status == Status.FAIL.value for blocker in blockers):
        return "FAIL"
    complete = run_doc.get("state") == "COMPLETE" and run_doc.get("interrupted") is False
    if blockers or not required_ids or overall.exit_code != 0 or not complete:
        return "BLOCKED"
    return "PASS"


def abbreviated_gates(results: tuple[GateResult, ...]) -> list[tuple[str, str]]:
    """Gates whose verdict says their run was abbreviated (the soak, R5), each with its first reason."""
    return [
        (result.gate, result.verdict.reasons[0] if result.verdict.reasons else "abbreviated")
        for result in results
        if result.verdict.details.get("abbreviated") is True
    ]


def _report_context(
    run_doc: dict[str, Any],
    results_doc: dict[str, Any],
    config_doc: dict[str, Any],
    manifest_digest: str,
) -> dict[str, Any]:
    """Collect what the certificate and merge-report templates print, decided and formatted."""
    certificate_section = config_doc.get("certificate") or {}
    results = _gate_results(results_doc)
    overall = _overall(results_doc)
    required_ids = _required_gate_ids(results, tuple(certificate_section.get("required_gates") or ()))
    blockers = _blockers(results, required_ids, overall)
    refusals = _certificate_refusals(run_doc, overall, required_ids, blockers)
    waiver_lines = waivers(config_doc, run_day(run_doc))
    tools = run_doc.get("tools") or {}
    release = run_doc.get("mode") == "release"
    return {
        # Only a release run can claim a certificate, so only there is the claim re-checked.
        "certified": release and _decide_certified(overall, refusals),
        "merge_status": _merge_gate_status(run_doc, required_ids, blockers, overall),
        "blockers": blockers,
        "refusals": refusals,
        "required_ids": required_ids,
        "target": target_facts(run_doc),
        "started_at": fact_text(run_doc.get("started_at")),
        "ended_at": fact_text(run_doc.get("ended_at")),
        "mode": fact_text(run_doc.get("mode")),
        "harness_version": fact_text(run_doc.get("harness_version")),
        "host": host_summary(run_doc),
        "tools": [(str(name), fact_text(tools[name])) for name in sorted(tools)],
        "scaled": run_doc.get("scaled_durations") is not False,
        "abbreviated": abbreviated_gates(results),
        "rows": [gate_row(result) for result in results],
        "active_waivers": [waiver for waiver in waiver_lines if waiver.active],
        "expired_waivers": [waiver for waiver in waiver_lines if not waiver.active],
        "sign_off": [str(role) for role in certificate_section.get("sign_off") or ()],
        "manifest_digest": manifest_digest,
        "config_digest": fact_text(run_doc.get("config_digest")),
        "verify_command": VERIFY_COMMAND,
        "exit_code": overall.exit_code,
        "exit_meaning": exit_code_meaning(overall.exit_code),
        "traceability": traceability_context(results_doc),
    }


@functools.cache
def _environment() -> jinja2.Environment:
    """Build the Jinja2 environment: HTML autoescaped, Markdown escaped by the `md` filter."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("release", "templates"),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2"),
            default_for_string=True,
            default=False,
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["md"] = markdown_text
    return environment


def render_template(template_name: str, context: dict[str, Any]) -> str:
    """Render one template of release/templates with the reports' environment (the context as `c`)."""
    return _render(template_name, context)


def _render(template_name: str, context: dict[str, Any]) -> str:
    """Render one template with the shared environment."""
    text = _environment().get_template(template_name).render(c=context)
    if template_name.endswith(".md.j2"):
        # Block macros end in a newline and the templates add one; keep single blank lines. Pack
        # text never carries a raw newline into Markdown (the `md` filter turns it into <br>).
        text = _BLANK_LINE_RUNS.sub("\n\n", text)
    return text
