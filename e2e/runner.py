"""Collection for the E2E gate: tools in the target's venv, a browser, the journeys, CLI runs, pixel diffs.

Where things run: pytest and Playwright run in the *target's* venv (installed there with pip when
missing, as G1 installs pytest-cov); the plugin (e2e/plugin.py) is copied into the run as
``certify_e2e_plugin`` and put on PYTHONPATH, so neither side imports the other. The journeys
drive an isolated instance from ``ctx.instance()`` (or, with [gates.E2E] service_args, the same
launcher on a copy of [service] with those arguments appended); journeys marked ``after_shutdown``
run once the harness has stopped it. Screenshots, diff images and trace zips go to ``e2e/`` at
the pack root.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import string
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e import browser
from e2e.pixeldiff import compare
from harness.config import BASE_PLACEHOLDERS
from harness.errors import ConfigError, TargetError, ToolMissingError
from harness.lifecycle import Instance, InstanceLauncher, fill, target_env

if TYPE_CHECKING:
    from collections.abc import Iterator

    from harness.context import GateContext
    from harness.procs import ToolRun

PLUGIN_MODULE = "certify_e2e_plugin"
DEPENDENCY_PLACEHOLDER = re.compile(r"^[A-Za-z_]\w*_(url|port|host)$")
PYTEST_NO_TESTS = 5
TAIL_CHARS = 1500
_PROBE_TOOLS = (
    "import importlib.metadata as m, json\n"
    "def v(n):\n"
    "    try:\n        return m.version(n)\n"
    "    except m.PackageNotFoundError:\n        return None\n"
    "print(json.dumps({n: v(n) for n in ('pip', 'pytest', 'playwright')}))\n"
)


def tail(run: ToolRun) -> str:
    """The end of a run's combined output, for reasons."""
    return (run.stdout() + run.stderr()).strip()[-TAIL_CHARS:]


def venv_env(python: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The minimal target environment with its venv first on PATH."""
    return target_env(extra, venv=python.parent.parent)


def _versions(ctx: GateContext, python: Path, label: str) -> dict[str, str | None]:
    """Versions of pip, pytest and playwright in the target's venv."""
    probe = ctx.run(label, [str(python), "-c", _PROBE_TOOLS], env=venv_env(python), timeout_s=60)
    return json.loads(probe.stdout()) if probe.returncode == 0 else {}


def ensure_tools(ctx: GateContext, python: Path, packages: tuple[str, ...]) -> dict[str, str | None]:
    """pytest and Playwright in the target's venv, installed with pip (bootstrapped if absent) when missing."""
    versions = _versions(ctx, python, "probe-tools")
    if not (versions.get("pytest") and versions.get("playwright")):
        ctx.progress("installing pytest and playwright into the target's venv")
        if not versions.get("pip"):
            boot = ctx.run("ensurepip", [str(python), "-m", "ensurepip", "--default-pip"], env=venv_env(python))
            if boot.returncode != 0:
                msg = f"the target's venv has no pip and ensurepip failed: {tail(boot)[-400:]}"
                raise ToolMissingError(msg, hint="add playwright and pytest to the target's [install] command")
        argv = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]
        pip = ctx.run("pip-install-e2e-tools", argv, env=venv_env(python), timeout_s=900)
        if pip.returncode != 0:
            msg = f"{' and '.join(packages)} could not be installed into the target's venv: {tail(pip)[-400:]}"
            raise ToolMissingError(msg, hint="add playwright and pytest to the target's [install] command")
        versions = _versions(ctx, python, "probe-tools-again")
    for name in ("pytest", "playwright"):
        if not versions.get(name):
            msg = f"{name} is still missing from the target's venv after installing {', '.join(packages)}"
            raise ToolMissingError(msg, hint="add playwright and pytest to the target's [install] command")
        ctx.record_tool(name, str(versions[name]))
    return versions


def refuse_no_browser(setting: str) -> None:
    """NOT_RUN before anything is installed when the configuration says there is no browser."""
    if setting == "none":
        msg = "no browser: [gates.E2E] browser = 'none'"
        raise ToolMissingError(msg, hint=browser.INSTALL_HINT + ", then set browser = 'auto'")


def choose_browser(ctx: GateContext, python: Path, setting: str) -> dict[str, Any]:
    """Launch each candidate browser from the target's venv; the first that renders a page is used."""
    refuse_no_browser(setting)
    candidates = browser.candidates(setting)
    ctx.progress("looking for a browser that starts: " + ", ".join(candidates))
    probe = ctx.run("probe-browser", [str(python), "-c", browser.PROBE, *candidates], env=venv_env(python))
    try:
        found: dict[str, Any] = json.loads(probe.stdout().strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        msg = f"the browser probe exited {probe.returncode} without an answer: {tail(probe)[-600:]}"
        raise ToolMissingError(msg, hint=browser.INSTALL_HINT) from None
    if found["chosen"] is None:
        tried = "; ".join(f"{item['candidate']}: {item['error'][:200]}" for item in found["attempts"])
        msg = f"no Chromium could be started (tried {tried or 'nothing'})"
        raise ToolMissingError(msg, hint=browser.INSTALL_HINT)
    ctx.record_tool("chromium", str(found["chosen"]["version"]))
    return found


def check_placeholders(argument: str) -> None:
    """Raise ValueError unless every placeholder of a service argument is one [service] fills."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(argument)]
    except ValueError as exc:
        msg = f"{argument!r} is not a valid template: {exc}"
        raise ValueError(msg) from None
    for name, spec, conversion in fields:
        if name is None:
            continue
        if spec or conversion or not (name in BASE_PLACEHOLDERS or DEPENDENCY_PLACEHOLDER.match(name)):
            known = ", ".join(f"{{{item}}}" for item in sorted(BASE_PLACEHOLDERS))
            msg = f"unknown placeholder {{{name}}} in {argument!r}; known: {known}, {{<dependency>_url|port|host}}"
            raise ValueError(msg)


@contextlib.contextmanager
def instance(ctx: GateContext, service_args: tuple[str, ...]) -> Iterator[Instance]:
    """`ctx.instance()`, with `service_args` appended to the [service] command when there are any.

    The harness's context starts the command as written; extra arguments need a launcher built
    from a copy of the config (as the PB gate does). Start-up output and the instance's output
    are kept under instances/ exactly as `ctx.instance()` keeps them.
    """
    if not service_args:
        with ctx.instance() as started:
            yield started
        return
    service = ctx.config.service
    if service is None:
        msg = "certify.toml has no [service] table: the E2E gate needs to start the target"
        raise ToolMissingError(msg)
    known = {f"{dep}_{part}" for dep in service.dependencies for part in ("url", "port", "host")}
    for argument in service_args:
        for _, name, _, _ in string.Formatter().parse(argument):
            if name is not None and name not in BASE_PLACEHOLDERS | known:
                msg = f"[gates.E2E] service_args: {{{name}}} names no dependency of [service]"
                raise ConfigError(msg)
    config = ctx.config.model_copy(
        update={"service": service.model_copy(update={"command": (*service.command, *service_args)})}
    )
    launcher = InstanceLauncher(config, ctx.target_dir, ctx.scratch / "work")
    try:
        started = launcher.start(ctx.target_python(), ctx.spec.id)
    except TargetError as exc:
        for item in exc.output_files:
            ctx.copy_in(f"instances/failed-start/{Path(str(item)).name}", Path(str(item)))
        raise
    try:
        yield started
    finally:
        launcher.stop(started)
        for path in started.output_files():
            ctx.copy_in(f"instances/{started.name}/{path.name}", path)


def ship_plugin(ctx: GateContext) -> Path:
    """Copy the journeys' pytest plugin into the run; return the directory to put on PYTHONPATH."""
    folder = ctx.scratch / "plugin"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("plugin.py"), folder / f"{PLUGIN_MODULE}.py")
    return folder


def run_journeys(
    ctx: GateContext, python: Path, phase: str, settings: dict[str, str], timeout_s: float
) -> dict[str, Any]:
    """One pytest run of the journeys (phase "live" or "after_shutdown"); returns its record."""
    junit = ctx.scratch / f"junit-{phase}.xml"
    selection = "after_shutdown" if phase == "after_shutdown" else "not after_shutdown"
    argv = [
        str(python), "-m", "pytest", settings["journeys"], "-p", PLUGIN_MODULE, "-p", "no:cacheprovider",
        "-m", selection, f"--junitxml={junit}", "-o", "junit_family=xunit2", "-q", "-rA",
    ]  # fmt: skip
    env = venv_env(python, {k: v for k, v in settings.items() if k.startswith(("E2E_", "PYTHON"))})
    ctx.progress(f"running the journeys ({phase})")
    run = ctx.run(f"journeys-{phase}", argv, env=env, timeout_s=timeout_s)
    if junit.is_file():
        ctx.copy_in(f"junit-{phase}.xml", junit)
    return {
        "phase": phase,
        "argv": argv,
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "timeout_s": timeout_s,
        "duration_s": round(run.duration_s, 3),
        "junit": f"junit-{phase}.xml" if junit.is_file() else None,
        "output_tail": tail(run),
    }


def run_cli(ctx: GateContext, python: Path, journeys: tuple[Any, ...], base_url: str) -> list[dict[str, Any]]:
    """Run each declared CLI journey as a user would; keep argv, exit code and output files."""
    records = []
    values = {"python": str(python), "target_dir": str(ctx.target_dir), "base_url": base_url}
    for item in journeys:
        argv = [fill(part, values) for part in item.command]
        ctx.progress(f"CLI journey {item.name}")
        run = ctx.run(f"cli-{item.name}", argv, env=venv_env(python), timeout_s=item.timeout_s)
        records.append(
            {
                "name": item.name,
                "argv": argv,
                "returncode": run.returncode,
                "timed_out": run.timed_out,
                "duration_s": round(run.duration_s, 3),
                "stdout": f"runs/{run.stdout_path.name}",
                "stderr": f"runs/{run.stderr_path.name}",
            }
        )
    return records


def unreachable(base_url: str) -> dict[str, Any]:
    """Whether the stopped instance's address now refuses connections (what the shutdown journey checks)."""
    try:
        with urllib.request.urlopen(base_url + "/", timeout=3) as response:  # noqa: S310 - loopback URL
            return {"unreachable": False, "detail": f"still answers HTTP {response.status}"}
    except urllib.error.HTTPError as exc:
        return {"unreachable": False, "detail": f"still answers HTTP {exc.code}"}
    except (urllib.error.URLError, OSError) as exc:
        return {"unreachable": True, "detail": str(getattr(exc, "reason", exc))}


def gather(ctx: GateContext, artifacts: Path, baselines: Path, tolerance: int) -> tuple[list[Any], list[Any]]:
    """Copy every journey's screenshots and trace into e2e/, and diff each visual checkpoint with its baseline."""
    journeys: list[dict[str, Any]] = []
    visuals: list[dict[str, Any]] = []
    for record_path in sorted(artifacts.glob("*/journey.json")):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        folder = record_path.parent
        for item in [*record["steps"], *record["visuals"], *([{"file": record["trace"]}] if record["trace"] else [])]:
            if (folder / item["file"]).is_file():
                item["pack_file"] = ctx.write_document(
                    f"e2e/{record['id']}/{item['file']}", (folder / item["file"]).read_bytes()
                )
        for visual in record["visuals"]:
            visuals.append(_diff_one(ctx, record["id"], visual, folder, baselines=baselines, tolerance=tolerance))
        journeys.append(record)
    return journeys, visuals


def _diff_one(
    ctx: GateContext, journey_id: str, visual: dict[str, Any], folder: Path, *, baselines: Path, tolerance: int
) -> dict[str, Any]:
    """Compare one visual checkpoint with baselines/<journey>/<name>.png; keep the baseline and the diff."""
    baseline = baselines / journey_id / f"{visual['name']}.png"
    entry: dict[str, Any] = {
        "journey": journey_id,
        "name": visual["name"],
        "actual": visual.get("pack_file"),
        "baseline_path": str(baseline.relative_to(ctx.target_dir)) if baseline.is_relative_to(ctx.target_dir) else "",
        "tolerance": tolerance,
        "baseline": None,
        "diff": None,
    }
    actual = folder / visual["file"]
    if not baseline.is_file() or not actual.is_file():
        entry["compared"] = False
        entry["why"] = "no baseline" if actual.is_file() else "no screenshot"
        return entry
    stem = f"e2e/{journey_id}/visual-{visual['name']}"
    entry["baseline"] = ctx.write_document(f"{stem}.baseline.png", baseline.read_bytes())
    result = compare(actual.read_bytes(), baseline.read_bytes(), tolerance)
    if result.diff_png is not None:
        entry["diff"] = ctx.write_document(f"{stem}.diff.png", result.diff_png)
    entry.update(
        compared=True,
        same_size=result.same_size,
        size=list(result.size),
        baseline_size=list(result.baseline_size),
        differing_pixels=result.differing_pixels,
        total_pixels=result.total_pixels,
        max_channel_delta=result.max_channel_delta,
    )
    return entry
