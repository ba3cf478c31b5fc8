"""The policy block of the rendered documents: which policy judged the run, and the deviations table.

Pure functions of run.json's `policy` and deviations.json. A format-1 pack (no policy) gives
`policy: None`, and the templates then render exactly what they rendered before policies existed.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

from harness.deviations import release_only_note
from harness.errors import PackError
from harness.render_rows import fact_text, xml_text


@dataclasses.dataclass(frozen=True)
class DeviationRow:
    """One row of the deviations table, every cell formatted."""

    id: str
    what: str
    policy_limit: str
    target_value: str
    status: str
    blocking: bool


def _row(raw: dict[str, Any]) -> DeviationRow:
    """Format one deviation of deviations.json."""
    waived = raw.get("waived_by")
    if waived is None:
        status = "BLOCKING"
    else:
        status = (
            f"waived by {fact_text(waived.get('approved_by'))} (owner {fact_text(waived.get('owner'))}) "
            f"until {fact_text(waived.get('expires'))}: {fact_text(waived.get('reason'))}"
        )
    return DeviationRow(
        id=str(raw["id"]),
        what=str(raw["what"]),
        policy_limit=str(raw["policy_limit"]),
        target_value=str(raw["target_value"]),
        status=status,
        blocking=waived is None,
    )


def policy_context(run_doc: dict[str, Any], deviations_doc: dict[str, Any] | None) -> dict[str, Any]:
    """What the templates print about the policy; `policy` is None for a pack judged without one."""
    policy = run_doc.get("policy")
    if not isinstance(policy, dict):
        return {"policy": None, "deviation_rows": [], "blocking_count": 0, "policy_notes": []}
    if deviations_doc is None:
        raise PackError("run.json names a policy but the pack has no deviations.json")
    try:
        rows = [_row(raw) for raw in deviations_doc.get("deviations", [])]
        notes = [
            f"not applicable {na['gate']} (allowed on terms: {na['terms']}): {na['reason']}"
            for na in deviations_doc.get("not_applicable", [])
        ]
    except (KeyError, TypeError, AttributeError) as exc:
        msg = f"deviations.json: a deviation is malformed: {exc}"
        raise PackError(msg) from exc
    granted = deviations_doc.get("requested_waivers_granted", [])
    notes += [f"requested waiver granted by the policy: {text}" for text in granted]
    notes += [f"policy waiver not honoured: {text}" for text in deviations_doc.get("waivers_not_honoured", [])]
    notes += [release_only_note(str(gate)) for gate in deviations_doc.get("release_only", [])]
    rows.sort(key=lambda row: not row.blocking)  # blocking first, each group in the policy check's order
    return {
        "policy": {key: fact_text(policy.get(key)) for key in ("name", "version", "sha256", "source")},
        "deviation_rows": rows,
        "blocking_count": sum(row.blocking for row in rows),
        "policy_notes": notes,
    }


def junit_policy(suite: ET.Element, properties: ET.Element, classname: str, context: dict[str, Any]) -> None:
    """Name the policy in the suite's properties and add the `policy deviations` testcase."""
    policy = context["policy"]
    for key in ("name", "version", "sha256"):
        ET.SubElement(properties, "property", {"name": f"policy_{key}", "value": xml_text(policy[key])})
    case = ET.SubElement(
        suite, "testcase", {"classname": xml_text(classname), "name": "policy deviations", "time": "0.000"}
    )
    suite.set("tests", str(int(suite.get("tests", "0")) + 1))
    blocking = [row for row in context["deviation_rows"] if row.blocking]
    if blocking:
        suite.set("failures", str(int(suite.get("failures", "0")) + 1))
        message = f"{len(blocking)} unwaived deviation(s) from policy {policy['name']} {policy['version']}"
        failure = ET.SubElement(case, "failure", {"message": xml_text(message), "type": "DEVIATION"})
        failure.text = xml_text("\n".join(f"{row.id}: {row.what} [{row.status}]" for row in context["deviation_rows"]))
