"""One certify run: plan, gates (concurrent where they can be), verdicts, pack, certificate."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.baseline import Baseline, resolve_baseline
from harness.config import CertifyConfigBase, canonical_digest, load_config, resolved_json
from harness.context import GateContext, RunServices
from harness.decide import COLLECT_RECORD, decide, not_implemented, overall
from harness.deviations import RunArgs
from harness.errors import HarnessError, TargetError, ToolMissingError, UsageError
from harness.evidence import EvidencePack
from harness.gate import Evidence, Gate
from harness.history import STORE_NAME
from harness.lifecycle import TargetVenv
from harness.model import GateResult, Verdict
from harness.observer import Observer
from harness.plan import Plan, PlanEntry, make_plan
from harness.policy import load_policy
from harness.policy_pack import (
    RUN_FORMAT,
    judge,
    not_applicable_requirements,
    not_applicable_results,
    run_facts,
    unselected_results,
    write_policy_files,
)
from harness.procs import REGISTRY
from harness.progress import Reporter
from harness.redact import Redactor, allowed_env
from harness.render import render_junit, render_reports, render_summary
from harness.runrecord import declared_version, git_identity, harness_packages, host_info, utc_now
from harness.schedule import next_to_start, ordered, overlaps
from harness.traceability import write_matrix
from harness.workdir import WorkDir

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner

GRACE_S = 5.0
POLL_S = 0.1


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for on the command line."""

    target_dir: Path
    gates: tuple[str, ...] | None
    mode: str
    out: Path | None
    jobs: int
    cache_dir: Path
    policy: Path | None = None
    #: Signs the finished pack into attestations.intoto.jsonl (harness/attest_pack.py); None: unsigned.
    signer: CryptoSigner | None = None
    #: `--baseline`: a pack (or history selector) to judge regression against when the policy names none.
    baseline: str | None = None
    #: `--history`: the run history a `newest-*` baseline is looked up in (default: beside the pack).
    history: Path | None = None


@dataclass(frozen=True)
class RunOutcome:
    """Where the pack is and how the run ended."""

    pack_root: Path
    exit_code: int
    certified: bool
    complete: bool


@dataclass
class _GateRun:
    """Bookkeeping of one gate's collect thread."""

    entry: PlanEntry
    gate: Gate
    ctx: GateContext
    cancel: threading.Event
    started: float
    record: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None
    timed_out_at: float | None = None


def _collect(gate: Gate, ctx: GateContext, policy: Any, record: dict[str, Any]) -> None:
    """Run a gate's collect and note how it ended; the one broad except of the runner."""
    try:
        gate.collect(ctx, policy)
        record["outcome"] = "ok"
    except ToolMissingError as exc:
        record.update(outcome="not_run", reason=exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))
    except TargetError as exc:
        record.update(outcome="target_failed", reason=f"the target failed: {exc.message}")
    except HarnessError as exc:
        record.update(outcome="error", reason=exc.message)
    except Exception as exc:
        ctx.write_text("traceback.txt", traceback.format_exc())
        record.update(outcome="error", reason=f"gate crashed: {type(exc).__name__}: {exc} (see traceback.txt)")


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag the run loop checks, and restores the handlers after."""

    def __init__(self) -> None:
        """Install the handlers (main thread only)."""
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Remember the interruption; the run loop does the cleanup."""
        del signum, frame
        self.event.set()

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Runner:
    """Executes a plan against a target and writes the evidence pack."""

    def __init__(self, options: RunOptions, reporter: Reporter) -> None:
        """Read the target's config and prepare the plan (config errors surface here)."""
        self.options = options
        self.reporter = reporter
        self.target_config: CertifyConfigBase = load_config(options.target_dir)
        self.policy = load_policy(options.policy)
        self.run_args = RunArgs(options.mode, options.gates, dt.datetime.now(dt.UTC).date())
        # The gates see the effective config: never looser than the policy, required gates from it.
        self.deviations, self.config = judge(self.policy, self.target_config, self.run_args)
        selected = options.gates or self.config.certificate.required_gates
        self.plan: Plan = make_plan(self.config, selected, options.mode, options.jobs, options.target_dir)
        self.baseline = self._baseline()
        self.results: dict[str, GateResult] = {}
        #: Per gate: when it started and ended, in seconds since the gates began.
        self.timeline: dict[str, dict[str, Any]] = {}
        self._t0 = time.monotonic()

    def _baseline(self) -> Baseline | None:
        """The baseline the policy (or else --baseline) names, resolved and verified; None when there is none."""
        named, asked = self.policy.policy.regression.baseline, self.options.baseline
        if named is not None and asked is not None and asked != named:
            msg = f"--baseline {asked}: the policy {self.policy.label()} names the baseline {named}; a run cannot"
            msg += " replace it"
            raise UsageError(msg)
        spec = named or asked
        if spec is None:
            return None
        folder = self.options.out.parent if self.options.out is not None else Path("release") / "artifacts"
        store = self.options.history or folder / STORE_NAME
        return resolve_baseline(spec, store=store, target=self.config.target.name, mode=self.options.mode)

    def default_out(self, short_commit: str) -> Path:
        """release/artifacts/<UTC time>-<short commit>/ under the current directory."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return Path("release") / "artifacts" / f"{stamp}-{short_commit}"

    def run(self) -> RunOutcome:
        """Run every planned gate, then write results, manifest and (if complete) the certificate."""
        interrupt = _Interrupt()
        try:
            return self._run(interrupt)
        finally:
            interrupt.restore()

    def _run(self, interrupt: _Interrupt) -> RunOutcome:
        """The body of `run`, with SIGINT/SIGTERM already turned into a flag."""
        baseline_lines = [self.baseline.describe()] if self.baseline is not None else []
        for text in [*self.deviations.lines(), *baseline_lines, *self.plan.describe()]:
            self.reporter.line(text)
        identity = git_identity(self.options.target_dir)
        pack = EvidencePack((self.options.out or self.default_out(identity["short"])).resolve(), Redactor(os.environ))
        resolved = resolved_json(self.target_config)
        pack.write_json("config.resolved.json", resolved)
        write_policy_files(pack, self.policy, self.deviations)
        run_doc: dict[str, Any] = {
            "format": RUN_FORMAT,
            **run_facts(self.policy, self.run_args),
            "state": "RUNNING",
            "harness_version": __version__,
            "mode": self.options.mode,
            "started_at": utc_now(),
            "ended_at": None,
            "target": {
                "name": self.config.target.name,
                "dir": str(self.options.target_dir),
                "version": declared_version(self.config, self.options.target_dir),
                **identity,
            },
            "config_digest": canonical_digest(resolved),
            "host": host_info(),
            "env": allowed_env(os.environ),
            "gates_selected": [entry.gate_id for entry in self.plan.entries],
            "plan": self.plan.as_json(),
            "scaled_durations": self.options.mode == "ci",
            "interrupted": False,
            "tools": {},
        }
        if self.baseline is not None:
            run_doc["baseline"] = self.baseline.record()
        pack.write_json("run.json", run_doc)
        # TMPDIR of the run and of every child, and pip's cache inside the harness's, until close()
        work = WorkDir({"PIP_CACHE_DIR": str(self.options.cache_dir / "pip")})
        work_dir = work.path
        services = RunServices(
            config=self.config,
            target_dir=self.options.target_dir,
            mode=self.options.mode,
            pack=pack,
            work_dir=work_dir,
            venv=TargetVenv(self.config, self.options.target_dir, self.options.cache_dir),
            cancel=interrupt.event,
            progress=self.reporter.gate_message,
        )
        try:
            services.observer = self._start_observer(services)
            self._execute(services, interrupt.event)
        finally:
            try:
                if services.observer is not None:
                    services.observer.stop()
                REGISTRY.kill_all(GRACE_S)
            finally:
                work.close(keep=bool(os.environ.get("CERTIFY_KEEP_WORK")))
        complete = not interrupt.event.is_set()
        return self._finish(pack, run_doc, services, complete)

    def _start_observer(self, services: RunServices) -> Observer | None:
        """The first observer a planned gate offers (G6's shared Prometheus), started before any gate."""
        planned = tuple(entry.gate_id for entry in self.plan.entries)
        for entry in self.plan.entries:
            if entry.gate is not None:
                observer = entry.gate.run_observer(self.config.policy(entry.gate_id), services, planned)
                if observer is not None:
                    return observer
        return None

    def _execute(self, services: RunServices, interrupted: threading.Event) -> None:
        """Start gates as the scheduler allows (harness/schedule.py), enforce timeouts, stop on interrupt."""
        for entry in self.plan.entries:
            if entry.gate is None:
                self._record(entry, not_implemented(entry.gate_id, __version__), 0.0, ())
        entries = {e.gate_id: e for e in self.plan.entries if e.gate is not None}
        pending = ordered([e.slot for e in entries.values()])
        self._t0 = time.monotonic()
        finished: set[str] = set()
        running: list[_GateRun] = []
        while (pending or running) and not interrupted.is_set():
            jobs = self.options.jobs
            while (slot := next_to_start(pending, [r.entry.slot for r in running], finished, jobs)) is not None:
                pending.remove(slot)
                self.timeline[slot.gate_id] = {"start_s": round(time.monotonic() - self._t0, 3)}
                running.append(self._start(entries[slot.gate_id], services, interrupted))
            for gate_run in list(running):
                if self._poll(gate_run, services):
                    running.remove(gate_run)
                    finished.add(gate_run.entry.gate_id)
            time.sleep(POLL_S)
        if interrupted.is_set():
            self.reporter.line("interrupted: stopping every child process")
            for gate_run in running:
                gate_run.cancel.set()
            REGISTRY.kill_all(GRACE_S / 2)
            for gate_run in running:
                if gate_run.thread is not None:
                    gate_run.thread.join(timeout=1.0)
                gate_run.record.clear()
                gate_run.record.update(
                    outcome="interrupted", reason="the run was interrupted before this gate finished"
                )
                self._conclude(gate_run, services)

    def _start(self, entry: PlanEntry, services: RunServices, interrupted: threading.Event) -> _GateRun:
        """Start one gate's collect in its own thread with its own cancel flag."""
        assert entry.gate is not None  # noqa: S101 - pending holds implemented gates only
        cancel = threading.Event()
        gate_services = RunServices(**{**services.__dict__, "cancel": cancel})
        ctx = GateContext(entry.gate.spec, gate_services)
        gate_run = _GateRun(entry=entry, gate=entry.gate, ctx=ctx, cancel=cancel, started=time.monotonic())
        policy = entry.gate.policy_for(self.config)
        gate_run.thread = threading.Thread(
            target=_collect,
            args=(entry.gate, ctx, policy, gate_run.record),
            name=f"gate-{entry.gate_id}",
            daemon=True,
        )
        self.reporter.gate_started(entry.gate_id, entry.planned_s)
        if interrupted.is_set():
            cancel.set()
        gate_run.thread.start()
        return gate_run

    def _poll(self, gate_run: _GateRun, services: RunServices) -> bool:
        """Check one running gate; conclude it when finished or hopelessly past its timeout."""
        assert gate_run.thread is not None  # noqa: S101 - set in _start
        if services.cancel.is_set():
            gate_run.cancel.set()
        if not gate_run.thread.is_alive():
            if gate_run.timed_out_at is not None:
                gate_run.record.update(outcome="timeout", reason=self._timeout_reason(gate_run))
            self._conclude(gate_run, services)
            return True
        now = time.monotonic()
        if gate_run.timed_out_at is None and now - gate_run.started > gate_run.gate.spec.timeout_s:
            gate_run.timed_out_at = now
            gate_run.cancel.set()
        elif gate_run.timed_out_at is not None and now - gate_run.timed_out_at > GRACE_S:
            gate_run.record.clear()
            gate_run.record.update(outcome="timeout", reason=self._timeout_reason(gate_run) + "; it did not stop")
            self._conclude(gate_run, services)
            return True
        return False

    @staticmethod
    def _timeout_reason(gate_run: _GateRun) -> str:
        """Why a gate has no verdict of its own."""
        return f"gate {gate_run.entry.gate_id} timed out after {gate_run.gate.spec.timeout_s:g} s"

    def _conclude(self, gate_run: _GateRun, services: RunServices) -> None:
        """Write the collect record and decide the verdict from the evidence now in the pack."""
        gate_id = gate_run.entry.gate_id
        record = dict(gate_run.record) or {"outcome": "error", "reason": "collect ended without a record"}
        gate_run.ctx.write_json(COLLECT_RECORD, record)
        rules = self.policy.policy.regression
        if self.baseline is not None and gate_id in rules.judge_gates and record.get("outcome") == "ok":
            for name, data in self.baseline.files_for(gate_id).items():
                gate_run.ctx.write_bytes(name, data)
        evidence = Evidence(services.pack.root, gate_id, services.pack.files_of(gate_id))
        verdict = decide(gate_run.gate, evidence, gate_run.gate.policy_for(self.config), rules)
        duration = time.monotonic() - gate_run.started
        if gate_id in self.timeline:
            self.timeline[gate_id]["end_s"] = round(time.monotonic() - self._t0, 3)
        self._record(gate_run.entry, verdict, duration, services.pack.files_of(gate_id))

    def _record(self, entry: PlanEntry, verdict: Verdict, duration_s: float, files: tuple[str, ...]) -> None:
        """Keep a gate's result and tell the reporter."""
        self.results[entry.gate_id] = GateResult(
            gate=entry.gate_id,
            title=entry.title,
            requirements=entry.requirements,
            required=entry.required,
            verdict=verdict,
            duration_s=round(duration_s, 3),
            evidence=files,
        )
        self.reporter.gate_finished(entry.gate_id, verdict.status.value, duration_s)

    def _finish(self, pack: EvidencePack, run_doc: dict[str, Any], services: RunServices, complete: bool) -> RunOutcome:
        """Write results, junit, summary, run record and manifest; render reports only for a complete run."""
        order = [entry.gate_id for entry in self.plan.entries]
        results = [self.results[gate_id] for gate_id in order if gate_id in self.results]
        results += unselected_results(results, self.config.certificate.required_gates)
        results += not_applicable_results(results, self.deviations)
        blocking_ids = [deviation.id for deviation in self.deviations.blocking]
        traceability = write_matrix(pack, results, self.policy, not_applicable_requirements(self.deviations))
        decision = overall(
            results,
            self.config.certificate.required_gates,
            self.options.mode,
            complete,
            blocking_ids,
            traceability=traceability,
        )
        results_doc = {
            "format": "release-harness-results/1",
            "results": [result.model_dump(mode="json") for result in results],
            "overall": decision,
        }
        run_doc.update(
            state="COMPLETE" if complete else "INCOMPLETE",
            ended_at=utc_now(),
            interrupted=not complete,
            tools=dict(sorted({**harness_packages(), **services.tools}.items())),
            timeline=overlaps(self.timeline),
        )
        pack.write_json("results.json", results_doc)
        pack.write_json("run.json", run_doc)
        deviations_doc = self.deviations.model_dump(mode="json")
        pack.write_bytes("junit.xml", render_junit(results_doc, run_doc, deviations_doc))
        summary = render_summary(results_doc, run_doc, deviations_doc, index_link=complete)
        pack.write_text("summary.md", summary)
        digest = pack.write_manifest()
        if complete:
            for name, data in render_reports(pack.root, digest).items():
                pack.write_rendered(name, data)
            if self.options.signer is not None:
                from harness.attest_pack import sign_pack  # noqa: PLC0415 - protobuf loads only for signed runs

                sign_pack(pack.root, self.options.signer)
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if step_summary:
            with Path(step_summary).open("a", encoding="utf-8") as handle:
                handle.write(summary)
        return RunOutcome(pack.root, int(decision["exit_code"]), bool(decision["certified"]), complete)
