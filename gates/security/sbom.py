"""S3 SBOM: CycloneDX 1.6 JSON of the target's venv by cyclonedx-py, validated against the 1.6 schema."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from gates.security.inventory import INVENTORY, installed_names
from gates.security.policy import EvidenceReader, ScanResult, SecurityPolicy, canonical_name
from gates.security.store import EvidenceStore, run_problem
from harness.model import Measurement, Status

NAME = "SBOM (cyclonedx-bom)"
DOCUMENT = "sbom.json"
RUN = "sbom/run.json"
VALIDATION = "sbom/validation.json"
NOT_RUN = "sbom/not-run.json"
SPEC_VERSION = "1.6"
MAX_ERRORS = 50


def _has_project_table(pyproject: Path) -> bool:
    """Whether pyproject.toml has a [project] table cyclonedx-py can describe the root component from."""
    try:
        return "project" in tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def validation_errors(text: str) -> list[str]:
    """Every CycloneDX 1.6 strict-schema error of a JSON document (empty when valid)."""
    from cyclonedx.schema import SchemaVersion  # noqa: PLC0415 - optional tool, checked before collect
    from cyclonedx.validation.json import JsonStrictValidator  # noqa: PLC0415

    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text, all_errors=True)
    found = []
    for error in errors or []:
        data = getattr(error, "data", None)
        where = "/".join(str(part) for part in getattr(data, "absolute_path", []) or [])
        message = getattr(data, "message", None) or str(error).splitlines()[0]
        found.append(f"{where or '(root)'}: {message}")
    return found


def collect(store: EvidenceStore, policy: SecurityPolicy, python: Path) -> None:
    """Generate the SBOM without the tool's own validation, then validate it here and keep both."""
    ctx = store.ctx
    out = ctx.scratch / "sbom.json"
    argv = [sys.executable, "-m", "cyclonedx_py", "environment", str(python), "--sv", SPEC_VERSION, "--of", "JSON"]
    argv += ["-o", str(out), "--no-validate"]
    if _has_project_table(ctx.target_dir / "pyproject.toml"):
        argv += ["--pyproject", str(ctx.target_dir / "pyproject.toml")]
    store.record_run(RUN, ctx.run("cyclonedx-py", argv, timeout_s=policy.tool_timeout_s))
    if not out.is_file():
        return
    data = out.read_bytes()
    text = data.decode("utf-8", errors="replace")
    try:
        parsed: Any = json.loads(text)
        errors = validation_errors(text)
    except json.JSONDecodeError as exc:
        parsed, errors = None, [f"not JSON: {exc}"]
    store.write_document(DOCUMENT, data, parsed)
    validator = f"cyclonedx-python-lib {importlib.metadata.version('cyclonedx-python-lib')} JsonStrictValidator(1.6)"
    store.write_json(VALIDATION, {"validator": validator, "errors": errors[:MAX_ERRORS], "error_count": len(errors)})


def assess(reader: EvidenceReader, policy: SecurityPolicy, context: dict[str, Any]) -> ScanResult:
    """FAIL on a schema-invalid SBOM; INCONCLUSIVE when missing, empty, or not covering the installed set."""
    del policy
    if reader.exists(NOT_RUN):
        return ScanResult(NAME, Status.NOT_RUN, "not run", reasons=(reader.read_json(NOT_RUN)["reason"],))
    if not reader.exists(VALIDATION):
        why = run_problem(reader.read_json(RUN), "cyclonedx-py") if reader.exists(RUN) else None
        return ScanResult(
            NAME, Status.INCONCLUSIVE, "no SBOM", reasons=(f"no SBOM was produced: {why or 'no output'}",)
        )
    validation = reader.read_json(VALIDATION)
    count = int(validation["error_count"])
    measurements = [Measurement.judged("SBOM schema errors (CycloneDX 1.6)", count, "<=", 0)]
    if count or not reader.exists(DOCUMENT):
        shown = "; ".join(validation["errors"][:3])
        reason = (
            f"sbom.json is not valid CycloneDX {SPEC_VERSION} ({count} error(s), {validation['validator']}): {shown}"
        )
        return ScanResult(NAME, Status.FAIL, "invalid SBOM", (reason,), measurements=tuple(measurements))
    sbom = reader.read_json(DOCUMENT)
    reasons = []
    if sbom.get("specVersion") != SPEC_VERSION:
        reasons.append(f"sbom.json declares specVersion {sbom.get('specVersion')!r}, not {SPEC_VERSION}")
    components = sbom.get("components", [])
    measurements.append(Measurement.judged("SBOM components", len(components), ">", 0))
    if not components:
        reasons.append("the SBOM lists no component: the environment it describes is empty")
    if reader.exists(INVENTORY):
        listed = {canonical_name(str(c.get("name", ""))) for c in components}
        unlisted = sorted(set(installed_names(reader.read_json(INVENTORY), context.get("target_project"))) - listed)
        if unlisted:
            reasons.append(
                f"{len(unlisted)} installed distribution(s) missing from the SBOM: {', '.join(unlisted[:10])}"
            )
    status = (
        Status.FAIL if sbom.get("specVersion") != SPEC_VERSION else (Status.INCONCLUSIVE if reasons else Status.PASS)
    )
    summary = f"CycloneDX {sbom.get('specVersion')} with {len(components)} components, schema-valid"
    return ScanResult(NAME, status, summary, tuple(reasons), (), tuple(measurements), {"components": len(components)})
