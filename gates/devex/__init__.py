"""Developer-experience checks of the bootstrap gate G7: pre-commit hooks (X4) and the import graph (X5)."""

from __future__ import annotations

from typing import Any

from gates.devex import import_graph, precommit
from harness.checks import CheckSpec
from harness.gate import Evidence
from harness.model import Status

#: What these checks evidence (the traceability matrix); the gate reads their status at details.devex.
DEVEX_CHECKS = (
    CheckSpec(
        id="G7.precommit",
        title="the target's pre-commit hooks (format, lint, type check, secret scan) run offline by pre-commit",
        requirements=("X4",),
        details=("devex.X4",),
        evidence=("gates/G7/precommit.json", "gates/G7/runs/*-pre-commit-*.stdout.txt"),
    ),
    CheckSpec(
        id="G7.import_graph",
        title="the target's import graph (grimp) as DOT and SVG, its import-linter contracts checked",
        requirements=("X5",),
        details=("devex.X5",),
        evidence=("gates/G7/import_graph.json", "gates/G7/import_graph.dot", "gates/G7/import_graph.svg"),
    ),
)

#: One check's verdict: status, reasons, extra details for the gate's verdict.
DevexVerdict = tuple[Status, list[str], dict[str, Any]]


def judge_devex(evidence: Evidence, precommit_config: str | None, *, judge_graph: bool) -> dict[str, DevexVerdict]:
    """The X4 and X5 verdicts the policy asks for, from their evidence files (a missing file: NOT_RUN)."""
    judged: dict[str, DevexVerdict] = {}
    if precommit_config:
        if not evidence.exists(precommit.EVIDENCE):
            judged["X4"] = (Status.NOT_RUN, ["X4: the pre-commit hooks were not run"], {})
        else:
            data = evidence.read_json(precommit.EVIDENCE)
            logs = {name: evidence.read_text(name) for run in data["runs"] for name in (run["log"], run["stderr_log"])}
            status, reasons, hooks = precommit.judge(data, logs)
            judged["X4"] = (status, reasons, {"hooks": hooks})
    if judge_graph:
        if not evidence.exists(import_graph.EVIDENCE):
            judged["X5"] = (Status.NOT_RUN, ["X5: the import graph was not built"], {})
        else:
            status, reasons = import_graph.judge(evidence.read_json(import_graph.EVIDENCE))
            judged["X5"] = (status, reasons, {})
    return judged
