"""Gate E2E: the target's browser and CLI journeys, run as a user would, with screenshots as evidence.

`collect` (e2e/runner.py does the work) installs pytest and Playwright into the target's venv,
finds a Chromium that starts, runs the journeys against an isolated instance (its [service]
command with `service_args` appended, e.g. a healer the journeys drive), then the journeys
marked `after_shutdown` once the harness has stopped it, runs the declared CLI journeys, and diffs
every visual checkpoint with the target's baselines. `evaluate` judges only the stored evidence:
JUnit XML, the journeys' findings (console errors, failed requests, unlabelled controls), the
recorded pixel counts, and the CLI runs' stored output against the expectations in the policy.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import Field, field_validator

from e2e import browser, rendering, runner
from e2e.report import describe_finding, render_report
from harness.checks import CheckSpec
from harness.context import GateContext
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict, worst

if TYPE_CHECKING:
    from pathlib import Path

    from harness.config import CertifyConfigBase

REPORT = "e2e_report.html"
FINDING_KINDS = {
    "console_errors": "console error",
    "page_errors": "uncaught page error",
    "failed_requests": "failed request",
    "a11y_issues": "accessibility",
}
PHASES = ("live", "after_shutdown")


def _compiles(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """Reject a pattern that is not a regular expression (a config error, not a crash in evaluate)."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            msg = f"{pattern!r} is not a regular expression: {exc}"
            raise ValueError(msg) from None
    return patterns


class CliJourney(Policy):
    """One command a user runs against the instance, with what it must answer."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$", description="Journey name (used in file names).")
    command: tuple[str, ...] = Field(min_length=1, description="Argv template: {python} {target_dir} {base_url}.")
    expect_exit: int = Field(0, description="Exit code the command must return.")
    expect_stdout: tuple[str, ...] = Field((), description="Regular expressions that must all occur in stdout.")
    expect_stderr: tuple[str, ...] = Field((), description="Regular expressions that must all occur in stderr.")
    timeout_s: float = Field(60.0, gt=0, description="Longest the command may run.")

    @field_validator("expect_stdout", "expect_stderr")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Every expectation must be a valid regular expression."""
        return _compiles(value)


class E2EPolicy(Policy):
    """Thresholds and settings of the E2E gate."""

    browser: str = Field(
        "auto", min_length=1, description='"auto" (Playwright\'s Chromium, else the system\'s), "none", or a path.'
    )
    journeys: str = Field("e2e", description="Directory of pytest journey files, relative to the target.")
    baselines: str = Field("e2e/baselines", description="Baseline screenshots: <journey>/<name>.png.")
    packages: tuple[str, ...] = Field(
        ("pytest>=7", "playwright>=1.40"), description="Installed into the target's venv when missing."
    )
    viewport: str = Field("1280x800", pattern=r"^\d{3,4}x\d{3,4}$", description="Browser viewport, WIDTHxHEIGHT.")
    action_timeout_ms: int = Field(10000, gt=0, description="Playwright's default timeout per action.")
    run_timeout_s: float = Field(600.0, gt=0, description="Longest one pytest run of the journeys may take.")
    pixel_tolerance: int = Field(
        24, ge=0, le=255, description="A pixel differs when a colour channel moved by more than this."
    )
    max_diff_ratio: float = Field(0.001, ge=0, le=1, description="Largest share of differing pixels per checkpoint.")
    require_baselines: bool = Field(
        default=True, description="A visual checkpoint without a baseline is INCONCLUSIVE (else a note)."
    )
    ignore_console: tuple[str, ...] = Field(
        (), description="Regexes of console errors that are not findings (each ignored one is listed in the verdict)."
    )
    cli: tuple[CliJourney, ...] = Field((), description="CLI journeys run while the instance is up.")
    service_args: tuple[str, ...] = Field(
        (),
        description="Arguments appended to the [service] command for the journeys' instance "
        "(e.g. a healer and fault injection the journeys drive); placeholders as in [service].",
    )

    @field_validator("service_args")
    @classmethod
    def _arguments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each argument is a non-empty string whose placeholders [service] can fill."""
        for argument in value:
            if not argument.strip():
                msg = "an empty argument"
                raise ValueError(msg)
            runner.check_placeholders(argument)
        return value

    @field_validator("ignore_console")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Every pattern must be a valid regular expression."""
        return _compiles(value)

    @field_validator("cli")
    @classmethod
    def _unique_names(cls, value: tuple[CliJourney, ...]) -> tuple[CliJourney, ...]:
        """CLI journeys are told apart by name."""
        names = [item.name for item in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            msg = f"CLI journey name(s) used twice: {', '.join(twice)}"
            raise ValueError(msg)
        return value


class EvidenceReader(Protocol):
    """What judging reads: `Evidence` in evaluate, the just-written files in collect."""

    def exists(self, name: str) -> bool:
        """Whether the file was recorded."""

    def read_text(self, name: str) -> str:
        """A file's text."""

    def read_json(self, name: str) -> Any:
        """A JSON file's content."""


@dataclass
class Findings:
    """Sub-verdicts collected while judging, folded into one Verdict at the end."""

    statuses: list[Status] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)

    def block(self, status: Status, reason: str) -> None:
        """Record a finding that blocks a PASS by itself."""
        self.statuses.append(status)
        self.problems.append(reason)

    def judge(self, measurement: Measurement, reasons: list[str]) -> None:
        """Record a judged count; a miss is a FAIL with its reasons."""
        self.measurements.append(measurement)
        self.statuses.append(Status.PASS if measurement.passed else Status.FAIL)
        if not measurement.passed:
            self.problems.extend(reasons)


def parse_junit(text: str) -> list[dict[str, str]]:
    """Every test case of a JUnit XML report: id, outcome (passed/failed/error/skipped) and message."""
    root = ET.fromstring(text)  # noqa: S314 - written by the journeys' own pytest run, in this run
    cases = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = ((found.get("message") or tag).splitlines() or [""])[0][:240]
                break
        cases.append(
            {"id": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome, "message": message}
        )
    return cases


def judge_phases(reader: EvidenceReader, found: Findings) -> list[dict[str, str]]:
    """The pytest runs: each must have finished and written JUnit; returns every test case."""
    cases: list[dict[str, str]] = []
    for phase in reader.read_json("phases.json"):
        if phase["timed_out"]:
            found.block(Status.INCONCLUSIVE, f"the {phase['phase']} journeys timed out after {phase['timeout_s']:g} s")
        elif phase["returncode"] == runner.PYTEST_NO_TESTS:
            if phase["phase"] == "live":
                found.block(Status.INCONCLUSIVE, "pytest collected no journey: nothing was exercised")
        elif phase["junit"] is None:
            found.block(
                Status.INCONCLUSIVE,
                f"the {phase['phase']} journeys exited {phase['returncode']} without a JUnit report: "
                + phase["output_tail"][-600:],
            )
        else:
            cases.extend(parse_junit(reader.read_text(phase["junit"])))
    return cases


def judge_journeys(
    cases: list[dict[str, str]], journeys: list[dict[str, Any]], policy: E2EPolicy, found: Findings
) -> None:
    """Failed journeys, findings recorded during journeys, and journeys that left no screenshot."""
    failed = [f"journey {c['id']} {c['outcome']}: {c['message']}" for c in cases if c["outcome"] in ("failed", "error")]
    skipped = [c for c in cases if c["outcome"] == "skipped"]
    found.notes.extend(f"journey {c['id']} skipped: {c['message']}" for c in skipped)
    if cases and len(skipped) == len(cases):
        found.block(Status.INCONCLUSIVE, "every journey was skipped: nothing was exercised")
    found.judge(Measurement.judged("failed journeys", len(failed), "<=", 0), failed)
    ignored = [re.compile(pattern) for pattern in policy.ignore_console]
    for kind, label in FINDING_KINDS.items():
        problems = []
        for journey in journeys:
            for item in journey[kind]:
                where = f"{label} in journey {journey['id']} after step {item['step']!r}: {describe_finding(item)}"
                if kind in ("console_errors", "failed_requests") and item.get("expected"):
                    continue
                if kind == "console_errors" and any(pattern.search(item["text"]) for pattern in ignored):
                    found.notes.append(f"ignored by [gates.E2E] ignore_console: {where}")
                    continue
                problems.append(where)
        found.judge(Measurement.judged(f"{label} findings", len(problems), "<=", 0), problems)
    for journey in journeys:
        if journey["outcome"] == "passed" and not journey["steps"]:
            found.block(Status.INCONCLUSIVE, f"journey {journey['id']} passed without a single screenshot step")
    steps = sum(len(journey["steps"]) for journey in journeys)
    found.measurements.append(Measurement(name="journey steps with screenshots", value=steps))


def judge_visuals(visuals: list[dict[str, Any]], policy: E2EPolicy, found: Findings, rendering_note: str = "") -> None:
    """Each visual checkpoint against its baseline; missing baselines per policy.

    rendering_note (from e2e.rendering.difference) goes with any visual change: where the baselines
    were drawn by another browser or with other fonts, the reader is told so.
    """
    worst_ratio, changed = 0.0, []
    for entry in visuals:
        where = f"{entry['journey']}/{entry['name']}"
        if not entry["compared"]:
            why = f"visual checkpoint {where}: {entry['why']} at {entry['baseline_path']}"
            why += " (create it with `python -m e2e.update_baselines --target DIR`)"
            if policy.require_baselines:
                found.block(Status.INCONCLUSIVE, why)
            else:
                found.notes.append(why)
            continue
        ratio = 1.0 if not entry["same_size"] else entry["differing_pixels"] / max(entry["total_pixels"], 1)
        worst_ratio = max(worst_ratio, ratio)
        if not entry["same_size"]:
            changed.append(
                f"visual change in {where}: size {entry['size']} differs from the baseline's {entry['baseline_size']}"
            )
        elif ratio > policy.max_diff_ratio:
            changed.append(
                f"visual change in {where}: {entry['differing_pixels']} of {entry['total_pixels']} pixels "
                f"({ratio:.4%}) differ by more than {entry['tolerance']}/255; diff image {entry['diff']}"
            )
    if changed and rendering_note:
        changed.append(rendering_note)
    if any(entry["compared"] for entry in visuals):
        found.judge(
            Measurement.judged("largest visual diff", round(worst_ratio, 6), "<=", policy.max_diff_ratio), changed
        )


def judge_cli(reader: EvidenceReader, policy: E2EPolicy, found: Findings) -> None:
    """Each CLI journey's stored exit code and output against its expectations."""
    records = {item["name"]: item for item in reader.read_json("cli.json")}
    problems = []
    for journey in policy.cli:
        record = records.get(journey.name)
        if record is None:
            found.block(Status.INCONCLUSIVE, f"CLI journey {journey.name} did not run")
            continue
        if record["timed_out"]:
            problems.append(f"CLI journey {journey.name} timed out after {journey.timeout_s:g} s")
            continue
        if record["returncode"] != journey.expect_exit:
            problems.append(f"CLI journey {journey.name} exited {record['returncode']}, expected {journey.expect_exit}")
        for stream, patterns in (("stdout", journey.expect_stdout), ("stderr", journey.expect_stderr)):
            text = reader.read_text(record[stream])
            problems.extend(
                f"CLI journey {journey.name}: {stream} does not match /{pattern}/"
                for pattern in patterns
                if not re.search(pattern, text, re.MULTILINE)
            )
    if policy.cli:
        found.judge(Measurement.judged("failed CLI checks", len(problems), "<=", 0), problems)


def judge(reader: EvidenceReader, policy: E2EPolicy) -> Verdict:
    """The E2E verdict from the stored evidence; pure."""
    context = reader.read_json("context.json")
    found = Findings()
    if not context["journey_files"]:
        found.block(Status.INCONCLUSIVE, f"no journey file (test_*.py) under {context['journeys_dir']}")
    cases = judge_phases(reader, found)
    journeys = reader.read_json("journeys.json")
    judge_journeys(cases, journeys, policy, found)
    note = rendering.difference(context.get("baseline_rendering"), context.get("rendering"))
    judge_visuals(reader.read_json("visual.json"), policy, found, note)
    judge_cli(reader, policy, found)
    shutdown = reader.read_json("shutdown.json")
    if not shutdown["unreachable"]:
        found.block(Status.FAIL, f"the stopped instance {shutdown['base_url']} {shutdown['detail']}")
    status = worst(found.statuses) if found.statuses else Status.INCONCLUSIVE
    summary = []
    if status is Status.PASS:
        passed = sum(case["outcome"] == "passed" for case in cases)
        summary.append(
            f"{passed} journeys passed in headless Chromium {context['browser']['version']} "
            f"({sum(len(j['steps']) for j in journeys)} screenshot steps), "
            f"{len(reader.read_json('visual.json'))} visual checkpoint(s) within tolerance, "
            f"{len(policy.cli)} CLI journey(s) as expected"
        )
    return Verdict(
        status=status,
        reasons=tuple(summary + found.problems + found.notes),
        measurements=tuple(found.measurements),
        details={"journeys": [c["id"] for c in cases], "browser": context["browser"]},
    )


class _Written:
    """The evidence collect has just written, readable like `Evidence` (for rendering the report)."""

    def __init__(self, ctx: GateContext) -> None:
        """Bind to the context that writes the files."""
        self.texts: dict[str, str] = {}
        self._ctx = ctx

    def keep(self, name: str, data: Any) -> None:
        """Write a JSON evidence file and remember it."""
        self.texts[name] = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        self._ctx.write_text(name, self.texts[name])

    def exists(self, name: str) -> bool:
        """Whether collect wrote the file."""
        return name in self.texts or (self._ctx.scratch / name).is_file()

    def read_text(self, name: str) -> str:
        """A written file's text (JSON kept here, or a tool output in the scratch dir)."""
        if name in self.texts:
            return self.texts[name]
        return (self._ctx.scratch / name.removeprefix("runs/")).read_text(encoding="utf-8", errors="replace")

    def read_json(self, name: str) -> Any:
        """A written JSON file's content."""
        return json.loads(self.read_text(name))


#: What this gate evidences (the traceability matrix).
CHECKS = (
    CheckSpec(
        id="E2E.journeys",
        title="browser journeys in headless Chromium, without console, page, request or accessibility findings",
        requirements=("E1",),
        measurements=("failed journeys", "* findings"),
        evidence=("e2e/*/*.png",),
    ),
    CheckSpec(
        id="E2E.cli",
        title="CLI journeys",
        requirements=("E2",),
        measurements=("failed CLI checks",),
        evidence=("gates/E2E/cli.json",),
    ),
    CheckSpec(
        id="E2E.visual",
        title="pixel diff of the screens against their baselines",
        requirements=("E3",),
        measurements=("largest visual diff",),
        evidence=("e2e/*/visual-*.diff.png",),
    ),
    CheckSpec(
        id="E2E.report",
        title="the E2E report of every journey and step",
        requirements=("E4",),
        evidence=("e2e_report.html",),
    ),
)


class E2EGate(Gate):
    """Runs the target's Playwright and CLI journeys against an isolated instance; screenshots as evidence."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="E2E",
        title="End-to-end journeys",
        requirements=("E1", "E2", "E3", "E4"),
        needs_service=True,
        timeout_s=1800,
        documents=(REPORT, "e2e"),
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = E2EPolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """A service, and journeys: pytest files under the journeys directory or declared CLI journeys."""
        gaps = super().config_gaps(config, target_dir)
        policy = config.policy("E2E")
        if not policy.cli and not any((target_dir / policy.journeys).rglob("test_*.py")):
            gaps.append(f"no journey: no test_*.py under {policy.journeys}/ and no [[gates.E2E.cli]]")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Installing the tools once, a browser probe, the instance and the journeys."""
        del policy, mode
        return 60.0

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Tools, browser, journeys (live then after shutdown), CLI journeys, pixel diffs, the report."""
        assert isinstance(policy, E2EPolicy)  # noqa: S101 - the registry pairs gate and policy
        written = _Written(ctx)
        journeys_dir = ctx.target_dir / policy.journeys
        files = sorted(p.relative_to(ctx.target_dir).as_posix() for p in journeys_dir.rglob("test_*.py"))
        browser_info: dict[str, Any] = {"version": "not started"}
        if files:
            runner.refuse_no_browser(policy.browser)
            python = ctx.target_python()
            tools = runner.ensure_tools(ctx, python, policy.packages)
            probe = runner.choose_browser(ctx, python, policy.browser)
            browser_info = {**probe["chosen"], "attempts": probe["attempts"], "tools": tools}
        drawn_with = rendering.environment(str(browser_info["version"])) if files else None
        written.keep(
            "context.json",
            {
                "mode": ctx.mode,
                "journeys_dir": policy.journeys,
                "journey_files": files,
                "browser": browser_info,
                "service_args": list(policy.service_args),
                "rendering": drawn_with,
                "baseline_rendering": rendering.read_record(ctx.target_dir / policy.baselines),
            },
        )
        phases, cli, shutdown = [], [], {"unreachable": True, "detail": "no instance started", "base_url": ""}
        artifacts = ctx.scratch / "artifacts"
        if files:
            settings = {
                "journeys": str(journeys_dir),
                "E2E_ARTIFACTS": str(artifacts),
                "E2E_BROWSER_PATH": browser.executable_path(browser_info),
                "E2E_VIEWPORT": policy.viewport,
                "E2E_ACTION_TIMEOUT_MS": str(policy.action_timeout_ms),
                "PYTHONPATH": str(runner.ship_plugin(ctx)),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            with runner.instance(ctx, policy.service_args) as instance:
                settings["E2E_BASE_URL"] = instance.base_url
                phases.append(runner.run_journeys(ctx, python, "live", settings, policy.run_timeout_s))
                cli = runner.run_cli(ctx, python, policy.cli, instance.base_url)
            shutdown = {"base_url": instance.base_url, **runner.unreachable(instance.base_url)}
            phases.append(runner.run_journeys(ctx, python, "after_shutdown", settings, policy.run_timeout_s))
        journeys, visuals = runner.gather(ctx, artifacts, ctx.target_dir / policy.baselines, policy.pixel_tolerance)
        for name, data in (("phases.json", phases), ("cli.json", cli), ("shutdown.json", shutdown)):
            written.keep(name, data)
        written.keep("journeys.json", journeys)
        written.keep("visual.json", visuals)
        verdict = judge(written, policy)
        cases = [case for phase in phases if phase["junit"] for case in parse_junit(written.read_text(phase["junit"]))]
        report = render_report(verdict, written, ctx.config.target.name, cases, policy)
        ctx.write_document(REPORT, report.encode("utf-8"))

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Journeys passed with no finding, visuals within tolerance, CLI journeys as expected."""
        assert isinstance(policy, E2EPolicy)  # noqa: S101 - the registry pairs gate and policy
        return judge(evidence, policy)
