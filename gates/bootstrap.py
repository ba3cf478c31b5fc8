"""Gate G7: a clean copy of the target goes from `git ls-files` to a runnable service within the budget.

How it runs. The target's tracked files (`git ls-files`, working-tree content; no venv, no caches) are
copied into a fresh sandbox holding the copy, an empty HOME and a TMPDIR. The `[bootstrap] command`
runs in the copy with a minimal environment (PATH without the harness's own venv, HOME, LANG, TMPDIR,
plus the names listed in `pass_env`; no harness secrets). In release mode pip's cache is off
(`PIP_NO_CACHE_DIR=1`, a cold start); in ci mode pip may use the run's pip cache (`PIP_CACHE_DIR`,
inside the harness's cache; else the user's). Then the `[bootstrap] smoke` command runs in the same
copy and must exit 0: that is what shows the service is really runnable. `{target_dir}` in either
command is replaced by the copy's path.

Step timing convention. The bootstrap marks the start of each step by printing a line
`==> step: NAME` (stdout or stderr). Both streams are merged and every line is timestamped by the
harness as it arrives (`[   12.345] text`, seconds since the start); a step lasts until the next
marker or the end of the command. Without markers the whole bootstrap is one step.

Nothing survives. Every command runs under a small stamping wrapper that makes itself the child
subreaper, so even daemonised processes stay its descendants; when the command ends, the wrapper
records what is still running and stops it. Afterwards the gate also scans for processes whose
working directory or argv lies inside the sandbox, stops them and records that it had to.

Evidence: `bootstrap.json` (copy, environment names, cache mode, budget, how each run ended, leftover
processes) and the stamped logs under `runs/`; `evaluate` recomputes per-step times from those logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import psutil
from pydantic import Field

from gates.devex import DEVEX_CHECKS, import_graph, judge_devex, precommit
from harness.checks import CheckSpec
from harness.config import BootstrapSection, CertifyConfigBase
from harness.context import GateContext
from harness.errors import ToolMissingError
from harness.gate import Evidence, Gate, GateSpec, Policy
from harness.model import Measurement, Status, Verdict, worst
from harness.procs import ToolRun

EVIDENCE = "bootstrap.json"
STEP_MARKER = "==> step: "
STAMPED_LINE = re.compile(r"^\[\s*(\d+\.\d+)\] ?(.*)$")
OVERRUN_S = 5.0
PRECOMMIT_PLANNED_S = 30.0
GRAPH_PLANNED_S = 5.0

#: Runs argv with stdout+stderr merged, each line timestamped; optional per-step timeout; leaves nothing running.
STAMP_WRAPPER = r"""
import ctypes, json, os, subprocess, sys, threading, time
import psutil

step_timeout_s, argv = float(sys.argv[1]), sys.argv[2:]
with __import__("contextlib").suppress(Exception):
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans stay ours
start = time.monotonic()
state = {"step": None, "since": start}
out = sys.stdout.buffer

def pump(pipe):
    for raw in iter(pipe.readline, b""):
        now = time.monotonic()
        line = raw.rstrip(b"\r\n")
        if line.startswith(b"==> step: "):
            state["step"], state["since"] = line[10:].decode("utf-8", "replace").strip(), now
        out.write(b"[%10.3f] " % (now - start) + line + b"\n")
        out.flush()

def stop_descendants():
    kids, seen = [], []
    for kid in psutil.Process().children(recursive=True):
        try:
            if kid.status() != psutil.STATUS_ZOMBIE:
                seen.append({"pid": kid.pid, "name": kid.name(), "cmdline": kid.cmdline()[:6]})
                kids.append(kid)
        except psutil.Error:
            continue
    for kid in kids:
        with __import__("contextlib").suppress(psutil.Error):
            kid.terminate()
    _, alive = psutil.wait_procs(kids, timeout=3)
    for kid in alive:
        with __import__("contextlib").suppress(psutil.Error):
            kid.kill()
    psutil.wait_procs(alive, timeout=3)
    return seen

try:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
except OSError as exc:
    sys.stderr.write(json.dumps({"spawn_error": f"{argv[0]}: {exc.strerror}"}) + "\n")
    sys.exit(127)
reader = threading.Thread(target=pump, args=(child.stdout,), daemon=True)
reader.start()
timed_out_step = None
while True:
    try:
        code = child.wait(timeout=0.1)
        break
    except subprocess.TimeoutExpired:
        if step_timeout_s > 0 and time.monotonic() - state["since"] > step_timeout_s:
            timed_out_step = state["step"] or "(before the first step)"
            stop_descendants()
            code = child.wait()
            break
elapsed_s = time.monotonic() - start
left = stop_descendants()
reader.join(timeout=2.0)
sys.stdout.flush()
trailer = {"returncode": code, "elapsed_s": round(elapsed_s, 3), "step_timed_out": timed_out_step,
           "left_running": left, "output_closed": not reader.is_alive()}
sys.stderr.write(json.dumps(trailer) + "\n")
sys.stderr.flush()
os._exit(0 if code == 0 else 1)
"""


class BootstrapPolicy(Policy):
    """Thresholds of the bootstrap gate; the command and the time budget are in [bootstrap]."""

    smoke_timeout_s: float = Field(120.0, gt=0, description="Time the smoke command may take.")
    pass_env: tuple[str, ...] = Field(
        (),
        description="Extra environment variable names passed to the bootstrap (e.g. PIP_INDEX_URL); values unrecorded.",
    )
    precommit_config: str | None = Field(
        None,
        description="X4: the pre-commit config (relative to the target) whose local/system hooks must cover format, "
        "lint, type check and secret scan and pass offline; unset: X4 is not judged.",
    )
    import_graph: bool = Field(
        False,
        description="X5: write the import graph of [target] packages (grimp; DOT and SVG) and check the "
        "import-linter contracts the target declares; false: X5 is not judged.",
    )


@dataclass(frozen=True)
class Sandbox:
    """A fresh directory holding the copy of the target, an empty HOME and a TMPDIR."""

    root: Path
    copy: Path
    home: Path
    tmp: Path


@dataclass(frozen=True)
class Step:
    """One marked step of a stamped log."""

    name: str
    start_s: float
    duration_s: float


def new_sandbox(ctx: GateContext) -> Sandbox:
    """Create an empty sandbox in the gate's scratch area (the runner removes it after the run)."""
    root = Path(tempfile.mkdtemp(prefix="sandbox-", dir=ctx.scratch)).resolve()
    box = Sandbox(root=root, copy=root / "copy", home=root / "home", tmp=root / "tmp")
    for path in (box.copy, box.home, box.tmp):
        path.mkdir()
    return box


def copy_tracked(ctx: GateContext, dest: Path) -> dict[str, Any]:
    """Copy the files git tracks in the target dir into dest; `git_error` is set when git cannot say."""
    listing = ctx.run("git-ls-files", ["git", "ls-files", "-z"], timeout_s=60)
    if listing.returncode != 0:
        why = listing.stderr().strip()[-300:] or f"git ls-files exited {listing.returncode}"
        return {"git_error": why, "files": 0, "bytes": 0, "tracked": [], "skipped": []}
    names = sorted(name for name in listing.stdout().split("\0") if name)
    size, skipped = 0, []
    for name in names:
        source, target = ctx.target_dir / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
            size += source.stat().st_size
        else:
            skipped.append(name)  # deleted in the working tree, or a submodule
    missing = set(skipped)
    copied = [name for name in names if name not in missing]
    return {"git_error": None, "files": len(copied), "bytes": size, "tracked": copied, "skipped": skipped}


def _harness_free_path() -> tuple[str, bool]:
    """PATH without the harness's own virtualenv (a clean machine does not have it)."""
    entries = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    if sys.prefix == sys.base_prefix:
        return os.pathsep.join(entries), False
    prefix = str(Path(sys.prefix).resolve())
    kept = [entry for entry in entries if not str(Path(entry).resolve()).startswith(prefix + os.sep)]
    return os.pathsep.join(kept), len(kept) != len(entries)


def sandbox_env(box: Sandbox, mode: str, pass_env: tuple[str, ...]) -> tuple[dict[str, str], dict[str, Any]]:
    """The minimal environment of sandboxed commands, and what the evidence says about it (names only)."""
    path, stripped = _harness_free_path()
    env = {
        "PATH": path,
        "HOME": str(box.home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TMPDIR": str(box.tmp),
        "PYTHONUNBUFFERED": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    if mode == "release":
        env["PIP_NO_CACHE_DIR"] = "1"
        cache = "cold: PIP_NO_CACHE_DIR=1 and an empty HOME (release mode)"
    else:
        cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR") or str(Path(cache_home) / "pip")
        cache = "warm: pip may use the harness's pip cache (ci mode)"
    passed = [name for name in pass_env if name in os.environ]
    env.update({name: os.environ[name] for name in passed})
    record = {
        "names": sorted(env),
        "passed_through": passed,
        "harness_venv_removed_from_path": stripped,
        "cache": cache,
    }
    return env, record


def stamped_argv(argv: list[str], step_timeout_s: float = 0.0) -> list[str]:
    """The argv that runs `argv` under the stamping wrapper (0: no per-step timeout)."""
    return [sys.executable, "-I", "-c", STAMP_WRAPPER, str(step_timeout_s), *argv]


def run_record(run: ToolRun, box: Sandbox, timeout_s: float) -> dict[str, Any]:
    """How a stamped run ended, with the wrapper's trailer; paths inside the sandbox shortened."""
    trailer: dict[str, Any] = {}
    for line in reversed(run.stderr().splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            parsed = json.loads(line)
            if isinstance(parsed, dict):
                trailer = parsed
                break
    for item in trailer.get("left_running", []):
        item["cmdline"] = [str(part).replace(str(box.root), "<sandbox>") for part in item.get("cmdline", [])]
    return {
        "returncode": trailer.get("returncode", run.returncode) if run.returncode is not None else None,
        "wrapper_returncode": run.returncode,
        "timed_out": run.timed_out,
        "cancelled": run.cancelled,
        "timeout_s": timeout_s,
        "duration_s": round(run.duration_s, 3),
        "elapsed_s": trailer.get("elapsed_s"),
        "spawn_error": trailer.get("spawn_error"),
        "step_timed_out": trailer.get("step_timed_out"),
        "left_running": trailer.get("left_running", []),
        "log": f"runs/{run.stdout_path.name}",
    }


def kill_leftovers(box: Sandbox, grace_s: float = 3.0) -> list[dict[str, Any]]:
    """Stop every process whose cwd or argv lies inside the sandbox; return what had to be stopped."""
    root = str(box.root)
    found: list[psutil.Process] = []
    seen: list[dict[str, Any]] = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cwd", "status"]):
        info = proc.info
        if proc.pid == os.getpid() or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cwd, cmdline = str(info.get("cwd") or ""), [str(part) for part in info.get("cmdline") or []]
        if cwd == root or cwd.startswith(root + os.sep) or any(root in part for part in cmdline):
            found.append(proc)
            seen.append(
                {
                    "pid": proc.pid,
                    "name": info.get("name"),
                    "cmdline": [p.replace(root, "<sandbox>") for p in cmdline[:6]],
                }
            )
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(found, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return seen


def parse_steps(log: str, end_s: float) -> list[Step]:
    """Steps of a stamped log: each `==> step: NAME` marker until the next one or `end_s`."""
    marks: list[tuple[str, float]] = []
    for line in log.splitlines():
        match = STAMPED_LINE.match(line)
        if match and match.group(2).startswith(STEP_MARKER):
            marks.append((match.group(2)[len(STEP_MARKER) :].strip() or "(unnamed)", float(match.group(1))))
    if not marks:
        return [Step("(whole command, no step markers)", 0.0, round(end_s, 3))]
    if marks[0][1] > 0.5:
        marks.insert(0, ("(before the first step)", 0.0))
    ends = [start for _, start in marks[1:]] + [max(end_s, marks[-1][1])]
    return [Step(name, start, round(end - start, 3)) for (name, start), end in zip(marks, ends, strict=True)]


def output_tail(log: str, lines: int = 4, max_chars: int = 400) -> str:
    """The last lines of a stamped log without their stamps, for a reason sentence."""
    texts = [m.group(2) if (m := STAMPED_LINE.match(line)) else line for line in log.splitlines()]
    texts = [text for text in texts if text.strip() and not text.startswith(STEP_MARKER)]
    tail = " | ".join(texts[-lines:])
    return tail[-max_chars:] or "(no output)"


def leftover_note(what: str, procs: list[dict[str, Any]]) -> str | None:
    """A sentence naming processes the harness had to stop, or None."""
    if not procs:
        return None
    names = ", ".join(f"{p.get('name')} (pid {p.get('pid')})" for p in procs[:5])
    return f"{what} left {len(procs)} process(es) running, stopped by the harness: {names}"


def _bootstrap_failure(boot: dict[str, Any], log: str, total_s: float, budget_s: float, last_step: str) -> str | None:
    """Why the bootstrap itself failed (did not finish, could not start, exited non-zero, too slow), or None."""
    if boot["timed_out"]:
        return f"the bootstrap was still running at {total_s:.1f} s (budget {budget_s:g} s), in step {last_step!r}"
    if boot["spawn_error"]:
        return f"the bootstrap command could not be started: {boot['spawn_error']}"
    if boot["returncode"] != 0:
        where = f"in step {last_step!r} after {total_s:.1f} s"
        return f"the bootstrap exited {boot['returncode']} {where}; last output: {output_tail(log)}"
    if total_s > budget_s:
        return f"the bootstrap took {total_s:.1f} s, more than its budget of {budget_s:g} s"
    return None


#: What this gate evidences (the traceability matrix).
CHECKS = (
    CheckSpec(
        id="G7.bootstrap",
        title="the bootstrap script, timed on a clean copy of the tracked files, then the smoke script",
        requirements=("G7", "X1"),
        measurements=("bootstrap total", "smoke *"),
        evidence=("gates/G7/bootstrap.json",),
    ),
    *DEVEX_CHECKS,
)


class BootstrapGate(Gate):
    """Times the bootstrap of a clean copy step by step and checks the service is runnable after it."""

    spec: ClassVar[GateSpec] = GateSpec(
        id="G7", title="Bootstrap time", requirements=("G7", "X1", "X4", "X5"), timeout_s=1800, checks=CHECKS
    )
    policy_model: ClassVar[type[Policy]] = BootstrapPolicy

    def config_gaps(self, config: CertifyConfigBase, target_dir: Path) -> list[str]:
        """A [bootstrap] command: what takes a clean clone to a running service."""
        gaps = super().config_gaps(config, target_dir)
        if config.bootstrap is None:
            gaps.append("no [bootstrap] table: the command that takes a fresh clone to a running service")
        return gaps

    def planned_duration_s(self, policy: Policy, mode: str) -> float:
        """A typical bootstrap (the hard limit is [bootstrap] budget_s) plus the X4/X5 checks configured."""
        del mode
        assert isinstance(policy, BootstrapPolicy)  # noqa: S101 - the registry pairs gate and policy
        return (
            120.0
            + (PRECOMMIT_PLANNED_S if policy.precommit_config else 0.0)
            + (GRAPH_PLANNED_S if policy.import_graph else 0.0)
        )

    def plan_lines(self, policy: Policy, mode: str) -> list[str]:
        """The developer-experience checks G7 runs after the bootstrap, when certify.toml asks for them."""
        del mode
        assert isinstance(policy, BootstrapPolicy)  # noqa: S101 - the registry pairs gate and policy
        lines = []
        if policy.precommit_config:
            lines.append(f"X4 pre-commit hooks of {policy.precommit_config}, offline (~{PRECOMMIT_PLANNED_S:g} s)")
        if policy.import_graph:
            lines.append(f"X5 import graph (grimp) and import-linter contracts (~{GRAPH_PLANNED_S:g} s)")
        return lines

    def collect(self, ctx: GateContext, policy: Policy) -> None:
        """Copy the tracked files, run bootstrap then smoke in the copy, and stop whatever they left."""
        assert isinstance(policy, BootstrapPolicy)  # noqa: S101 - the registry pairs gate and policy
        section = ctx.config.bootstrap
        if section is None:
            msg = "certify.toml has no [bootstrap] table: nothing says how to bootstrap the target"
            raise ToolMissingError(msg, hint='add [bootstrap] command = ["sh", "scripts/bootstrap.sh"], smoke = [...]')
        box = new_sandbox(ctx)
        record: dict[str, Any] = {
            "mode": ctx.mode,
            "budget_s": section.budget_s,
            "command": list(section.command),
            "smoke": list(section.smoke),
        }
        ctx.progress("copying the tracked files into a clean sandbox")
        copy = copy_tracked(ctx, box.copy)
        record["copy"] = {key: value for key, value in copy.items() if key != "tracked"}
        if copy["git_error"] is None and copy["files"]:
            env, record["environment"] = sandbox_env(box, ctx.mode, policy.pass_env)
            record.update(self._run_in(ctx, box, env, section, policy))
        ctx.write_json(EVIDENCE, record)
        if copy["git_error"] is None and (policy.precommit_config or policy.import_graph):
            devex_copy = box.root / "devex"
            tracked = copy_tracked(ctx, devex_copy)["tracked"]
            if policy.import_graph:
                import_graph.collect(ctx, devex_copy)
            if policy.precommit_config:
                precommit.collect(ctx, devex_copy, policy.precommit_config, tracked, _harness_free_path()[0])

    @staticmethod
    def _run_in(
        ctx: GateContext, box: Sandbox, env: dict[str, str], section: BootstrapSection, policy: BootstrapPolicy
    ) -> dict[str, Any]:
        """Run bootstrap (then smoke, if it passed) in the sandbox; return their records."""
        argv = [part.replace("{target_dir}", str(box.copy)) for part in section.command]
        ctx.progress(f"bootstrap: {' '.join(section.command)} (budget {section.budget_s:g} s)")
        timeout_s = section.budget_s + OVERRUN_S
        run = ctx.run("bootstrap", stamped_argv(argv), cwd=box.copy, env=env, timeout_s=timeout_s)
        boot = run_record(run, box, timeout_s)
        result = {"bootstrap": boot, "leftovers_after_bootstrap": kill_leftovers(box), "smoke_run": None}
        if boot["returncode"] == 0 and section.smoke:
            ctx.progress(f"smoke: {' '.join(section.smoke)}")
            smoke_argv = [part.replace("{target_dir}", str(box.copy)) for part in section.smoke]
            run = ctx.run("smoke", stamped_argv(smoke_argv), cwd=box.copy, env=env, timeout_s=policy.smoke_timeout_s)
            result["smoke_run"] = run_record(run, box, policy.smoke_timeout_s)
            result["leftovers_after_smoke"] = kill_leftovers(box)
        return result

    def evaluate(self, evidence: Evidence, policy: Policy) -> Verdict:
        """FAIL on a failed step, a failed smoke or an exceeded budget; PASS needs a passing smoke."""
        data = evidence.read_json(EVIDENCE)
        copy = data["copy"]
        if copy["git_error"] is not None:
            why = copy["git_error"]
            return Verdict.of(
                Status.INCONCLUSIVE, f"the target is not a git work tree ({why}): cannot know what is tracked"
            )
        if not copy["files"]:
            return Verdict.of(Status.INCONCLUSIVE, "git tracks no files in the target directory: nothing to bootstrap")
        boot = data["bootstrap"]
        if boot["cancelled"]:
            return Verdict.of(Status.INCONCLUSIVE, "the bootstrap was cancelled before it finished")
        log = evidence.read_text(boot["log"])
        total_s = float(boot["elapsed_s"] if boot["elapsed_s"] is not None else boot["duration_s"])
        budget_s = float(data["budget_s"])
        steps = parse_steps(log, total_s)
        measurements = [Measurement.judged("bootstrap total", round(total_s, 3), "<=", budget_s, "s")]
        measurements += [
            Measurement(name=f"step {i} {s.name}", value=s.duration_s, unit="s") for i, s in enumerate(steps, 1)
        ]
        failure = _bootstrap_failure(boot, log, total_s, budget_s, steps[-1].name)
        statuses, reasons = [Status.FAIL if failure else Status.PASS], [failure] if failure else []
        if not boot["timed_out"] and boot["returncode"] == 0:
            status, reason = self._judge_smoke(evidence, data, measurements)
            statuses.append(status)
            reasons.append(reason)
        for what, procs in (
            ("the bootstrap", boot["left_running"] + data["leftovers_after_bootstrap"]),
            ("the smoke command", self._smoke_leftovers(data)),
        ):
            reasons += filter(None, [leftover_note(what, procs)])
        status = worst(statuses)
        cache = data["environment"]["cache"]
        if status is Status.PASS:
            summary = f"bootstrap of a clean copy took {total_s:.1f} s of {budget_s:g} s"
            reasons.insert(0, f"{summary} ({cache.split(':')[0]} cache), {len(steps)} step(s)")
        details: dict[str, Any] = {"steps": [asdict(s) for s in steps], "cache": cache, "mode": data["mode"]}
        assert isinstance(policy, BootstrapPolicy)  # noqa: S101 - the registry pairs gate and policy
        devex = judge_devex(evidence, policy.precommit_config, judge_graph=policy.import_graph)
        if devex:
            details["devex"] = {key: {"status": value[0].value, **value[2]} for key, value in devex.items()}
            status = worst([status, *(value[0] for value in devex.values())])
            reasons += [reason for value in devex.values() for reason in value[1]]
        return Verdict(status=status, reasons=tuple(reasons), measurements=tuple(measurements), details=details)

    @staticmethod
    def _smoke_leftovers(data: dict[str, Any]) -> list[dict[str, Any]]:
        """Processes left running by the smoke command."""
        smoke = data.get("smoke_run") or {}
        return list(smoke.get("left_running", [])) + list(data.get("leftovers_after_smoke", []))

    @staticmethod
    def _judge_smoke(evidence: Evidence, data: dict[str, Any], measurements: list[Measurement]) -> tuple[Status, str]:
        """Whether the smoke command shows the bootstrapped service runs."""
        smoke = data["smoke_run"]
        if not data["smoke"] or smoke is None:
            return Status.INCONCLUSIVE, "no [bootstrap] smoke command: nothing shows the bootstrapped service runs"
        measurements.append(Measurement(name="smoke duration", value=smoke["duration_s"], unit="s"))
        shown = " ".join(data["smoke"])
        if smoke["timed_out"] or smoke["cancelled"]:
            return Status.FAIL, f"the smoke command `{shown}` did not finish within {smoke['timeout_s']:g} s"
        if smoke["spawn_error"]:
            return Status.FAIL, f"the smoke command could not be started: {smoke['spawn_error']}"
        if smoke["returncode"] != 0:
            tail = output_tail(evidence.read_text(smoke["log"]))
            return Status.FAIL, f"the smoke command `{shown}` exited {smoke['returncode']}; last output: {tail}"
        return Status.PASS, f"smoke command `{shown}` passed in {smoke['duration_s']:.1f} s"
