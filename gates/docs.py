"""Gate G8: the docs exist, are complete, their links resolve, and the quickstart really works (D1-D4).

What is checked, on the target's tracked files only (a clean clone has nothing else):
- the quickstart and every `required_docs` path exist; the runbooks dir holds at least one runbook and
  every `required_runbooks` name;
- every runbook (each `*.md` under `runbooks_dir` except README.md/index.md) has a heading naming each of
  `runbook_sections` (case-insensitive, word-bounded) whose section holds at least `min_section_words`;
- no checked document (quickstart, required docs, runbooks, `checked_docs` globs) contains a placeholder
  phrase outside code (word-bounded, case-insensitive; HTML comments are scanned too);
- every relative link and image resolves to a tracked file or directory, and every `#fragment` names a
  heading (GitHub-style slug) or an HTML id/name in the target Markdown file; external links
  (http, https, mailto, ...) are listed in the evidence, never fetched;
- every alert rule (`groups[].rules[].alert` in the `alert_rules` YAML files) has an `annotations.runbook`
  or `annotations.runbook_url` naming a runbook that exists (a path, a runbook name, or a URL whose last
  path part is a runbook's file name);
- the quickstart's runnable shell blocks succeed. Runnable: fenced with ```` ```sh ````, ```` ```bash ```` or
  ```` ```shell ````. Opt out with ```` ```sh no-run ```` or an HTML comment `<!-- no-run -->` on the line
  right before the fence. The blocks run in order as one bash script with `set -e` (so `cd` and
  variables carry over) from the root of a sandboxed copy of the tracked files (or from above it, when
  `repo_subdir` says where the target sits in its repository), with an empty HOME and a minimal
  environment (as gate G7), each block bounded by `block_timeout_s`; whatever they leave running is
  stopped and recorded. Each block is a step of the stamped log (`==> step: block N (FILE:LINE)`).

Evidence: `snapshot/` (every tracked Markdown file and rules file, as read), `docs_inputs.json` (tracked
files, how the quickstart run ended), `quickstart.sh` and its stamped log under `runs/`, and
`docs_findings.json` (every finding with file, line, kind, message; the links inventory; the alerts).
`evaluate` recomputes every finding from the snapshot, so `certify verify` re-derives them.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from gates.bootstrap import (
    copy_tracked,
    kill_leftovers,
    leftover_note,
    new_sandbox,
    run_record,
    sandbox_env,
    stamped_argv,
)
from harness.checks import CheckSpec
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict

if TYPE_CHECKING:
    pass

from gates.docs_checks import (
    FINDINGS,
    INPUTS,
    MAX_REASONS,
    QUICKSTART_DOC,
    Assessment,
    DocsPolicy,
    Fence,
    assess,
    github_slug,
    markdown_parser,
    matches_any,
    parse_markdown,
    quickstart_script,
    runnable_blocks,
)
from gates.docs_config import DocCheck, judge_configuration_matrix, judge_troubleshooting, run_configuration

__all__ = ["DocsGate", "DocsPolicy", "github_slug", "parse_markdown", "quickstart_script", "runnable_blocks"]


#: What this gate evidences (the traceability matrix).
CHECKS = (
    CheckSpec(
        id="G8.docs",
        title="required docs present, links and anchors resolve, no placeholder text",
        requirements=("G8",),
        measurements=("docs findings",),
        evidence=("gates/G8/docs_findings.json",),
    ),
    CheckSpec(
        id="G8.quickstart",
        title="the quickstart's shell blocks run in a sandbox within the budget",
        requirements=("D1",),
        measurements=("quickstart duration",),
        evidence=("gates/G8/quickstart.sh", "readme_quickstart.md"),
    ),
    CheckSpec(
        id="G8.configuration-matrix",
        title="the known-good configuration matrix lists this run's OS and Python",
        requirements=("D3",),
        measurements=("configuration matrix rows for this run",),
        evidence=("gates/G8/snapshot/*configuration-matrix*.md", "gates/G8/docs_inputs.json"),
    ),
    CheckSpec(
        id="G8.troubleshooting",
        title="a troubleshooting guide of substance",
        requirements=("D4",),
        measurements=("troubleshooting guide words",),
        evidence=("gates/G8/snapshot/*troubleshooting*.md",),
    ),
    CheckSpec(
        id="G8.runbooks",
        title="runbooks with the required sections, one per alert rule",
        requirements=("D2",),
        measurements=("docs findings",),
        details=("runbooks",),
        evidence=("gates/G8/docs_findings.json",),
    ),
)


class DocsGate(Gate):
    """Checks quickstart, runbooks, configuration matrix and troubleshooting docs, and runs the quickstart."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G8",
        title="Docs",
        requirements=("G8", "D1", "D2", "D3", "D4"),
        timeout_s=1800,
        documents=(QUICKSTART_DOC,),
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = DocsPolicy

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Static checks take a second; the quickstart run takes what it takes (bounded by its budget)."""
        del mode
        return 30.0 if not isinstance(policy, DocsPolicy) else min(60.0, policy.quickstart_budget_s)

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """The D3 and D4 checks, which read the docs snapshot (under a second)."""
        del mode
        assert isinstance(policy, DocsPolicy)  # noqa: S101 - the registry pairs gate and policy
        return [
            f"D3 this run's row in {policy.configuration_matrix} (< 1 s)",
            f"D4 troubleshooting guide {policy.troubleshooting} (< 1 s)",
        ]

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Snapshot the tracked docs, run the quickstart in a sandbox, and write the findings."""
        assert isinstance(policy, DocsPolicy)  # noqa: S101 - the registry pairs gate and policy
        markdown_parser()
        ctx.record_tool("markdown-it-py", metadata.version("markdown-it-py"))
        if policy.alert_rules:
            try:
                ctx.record_tool("PyYAML", metadata.version("PyYAML"))
            except metadata.PackageNotFoundError:
                raise ToolMissingError(
                    "PyYAML is not installed: alert rules cannot be read", hint="pip install 'PyYAML>=6'"
                ) from None
        box = new_sandbox(ctx)
        copy = copy_tracked(ctx, box.copy / policy.repo_subdir)
        inputs: dict[str, Any] = {"mode": ctx.mode, "copy": {k: v for k, v in copy.items() if k != "tracked"}}
        inputs.update(tracked=copy["tracked"], snapshot=[], quickstart_run=None, leftovers=[])
        texts: dict[str, str] = {}
        if copy["git_error"] is None:
            for path in copy["tracked"]:
                if path.endswith(".md") or matches_any(path, policy.alert_rules):
                    data = (box.copy / policy.repo_subdir / path).read_bytes()
                    ctx.write_bytes(f"snapshot/{path}", data)
                    texts[f"snapshot/{path}"] = data.decode("utf-8", errors="replace")
                    inputs["snapshot"].append(path)
            if policy.quickstart in inputs["snapshot"]:
                ctx.write_document(QUICKSTART_DOC, (box.copy / policy.repo_subdir / policy.quickstart).read_bytes())
                blocks = runnable_blocks(parse_markdown(texts[f"snapshot/{policy.quickstart}"]))
                if blocks:
                    inputs.update(self._run_quickstart(ctx, box, blocks, policy, texts))
        inputs["run_configuration"] = run_configuration()
        ctx.write_json(INPUTS, inputs)
        ctx.write_json(FINDINGS, assess(inputs, texts.__getitem__, policy).report())

    @staticmethod
    def _run_quickstart(
        ctx: GateContext, box: Any, blocks: list[Fence], policy: DocsPolicy, texts: dict[str, str]
    ) -> dict[str, Any]:
        """Run the runnable blocks as one script in the sandbox; keep the stamped log readable for assess."""
        env, env_record = sandbox_env(box, ctx.mode, policy.pass_env)
        if shutil.which("bash", path=env["PATH"]) is None:
            raise ToolMissingError("bash is not installed: the quickstart cannot be run", hint="apt-get install bash")
        script = quickstart_script(blocks, policy.quickstart)
        ctx.write_text("quickstart.sh", script)
        (box.root / "quickstart.sh").write_text(script, encoding="utf-8")
        ctx.progress(f"running {len(blocks)} quickstart block(s) from {policy.quickstart}")
        timeout_s = policy.block_timeout_s * len(blocks) + 30
        argv = stamped_argv(["bash", "--noprofile", "--norc", str(box.root / "quickstart.sh")], policy.block_timeout_s)
        run = ctx.run("quickstart", argv, cwd=box.copy, env=env, timeout_s=timeout_s)
        record = run_record(run, box, timeout_s)
        texts[record["log"]] = run.stdout()
        return {"quickstart_run": record, "leftovers": kill_leftovers(box), "environment": env_record}

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """FAIL on any finding; INCONCLUSIVE when nothing could be checked or the quickstart has nothing to run."""
        assert isinstance(policy, DocsPolicy)  # noqa: S101 - the registry pairs gate and policy
        inputs = evidence.read_json(INPUTS)
        if inputs["copy"]["git_error"] is not None:
            why = inputs["copy"]["git_error"]
            return Verdict.of(
                Status.INCONCLUSIVE,
                f"the target is not a git work tree ({why}): cannot know which docs a clean clone has",
            )
        result = assess(inputs, lambda name: evidence.read_bytes(name).decode("utf-8", errors="replace"), policy)
        external = sum(1 for link in result.links if link["kind"] == "external")
        measurements = [
            Measurement.judged("docs findings", len(result.findings), "<=", 0),
            Measurement(name="documents checked", value=len(result.checked)),
            Measurement(name="runbooks", value=len(result.runbooks)),
            Measurement(name="relative links and anchors checked", value=len(result.links) - external),
            Measurement(name="external links listed, not fetched", value=external),
            Measurement(name="alert rules checked", value=len(result.alerts)),
            Measurement(name="runnable quickstart blocks", value=len(result.quickstart["blocks"])),
        ]
        if "total_s" in result.quickstart:
            measurements.append(
                Measurement.judged(
                    "quickstart duration", result.quickstart["total_s"], "<=", policy.quickstart_budget_s, "s"
                )
            )
        config_checks = self._config_checks(evidence, inputs, policy)
        measurements += [check.measurement for check in config_checks]
        reasons = [f.sentence() for f in result.findings[:MAX_REASONS]]
        reasons += [check.reason for check in config_checks if check.reason]
        if len(result.findings) > MAX_REASONS:
            reasons.append(f"... and {len(result.findings) - MAX_REASONS} more finding(s) in {FINDINGS}")
        note = leftover_note(
            "the quickstart", (inputs.get("quickstart_run") or {}).get("left_running", []) + inputs["leftovers"]
        )
        details = {"findings": len(result.findings), "runbooks": result.runbooks, "quickstart": result.quickstart}
        if result.findings or any(check.reason for check in config_checks):
            status = Status.FAIL
        elif not result.quickstart["blocks"]:
            status = Status.INCONCLUSIVE
            reasons.append(f"{policy.quickstart} has no runnable sh/bash block: nothing shows the quickstart works")
        elif not result.quickstart.get("steps"):
            status = Status.INCONCLUSIVE
            reasons.append("the quickstart run was cancelled before it finished")
        elif len(config_checks) < 2:
            status = Status.INCONCLUSIVE
            reasons.append(f"{INPUTS} records no run configuration: D3's row for this run cannot be looked for")
        else:
            status = Status.PASS
            reasons.insert(0, self._summary(result, external))
        reasons += [note] if note else []
        return Verdict(status=status, reasons=tuple(reasons), measurements=tuple(measurements), details=details)

    @staticmethod
    def _config_checks(evidence: Evidence, inputs: dict[str, Any], policy: DocsPolicy) -> list[DocCheck]:
        """D3 (this run's row in the configuration matrix) and D4 (a troubleshooting guide), from the snapshot."""

        def text_of(path: str) -> str | None:
            """A tracked document's snapshot text, or None when the target does not track it."""
            name = f"snapshot/{path}"
            return evidence.read_text(name) if path in inputs["snapshot"] and evidence.exists(name) else None

        matrix = judge_configuration_matrix(
            policy.configuration_matrix, text_of(policy.configuration_matrix), inputs.get("run_configuration")
        )
        guide = judge_troubleshooting(
            policy.troubleshooting, text_of(policy.troubleshooting), policy.min_troubleshooting_words
        )
        return [check for check in (matrix, guide) if check is not None]

    @staticmethod
    def _summary(result: Assessment, external: int) -> str:
        """One sentence saying what a PASS covered."""
        return (
            f"{len(result.checked)} document(s) and {len(result.runbooks)} runbook(s) complete; "
            f"{len(result.links) - external} relative link(s) resolve ({external} external listed, not fetched); "
            f"{len(result.alerts)} alert(s) name existing runbooks; "
            f"{len(result.quickstart['blocks'])} quickstart block(s) ran in {result.quickstart['total_s']:.1f} s"
        )
