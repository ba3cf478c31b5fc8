"""`certify init`: read a Python project as data and write a commented certify.toml that loads and runs.

What the project shows is configured (name, version source, layout, packages, tests, install, a
service command from its Procfile, Dockerfile CMD or ASGI/WSGI app); what it cannot show is a
`# GAP:` comment saying what to fill in, and the same gaps are what `certify run --plan` prints.
The project's files are parsed (TOML, INI, Python ASTs), never imported or run. Deterministic: the
same project gives the same file, byte for byte.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError

#: Constructor names that make a module-level assignment an ASGI or a WSGI application.
ASGI = ("FastAPI", "Starlette", "Litestar", "Quart")
WSGI = ("Flask", "Bottle")
SKIP_DIRS = {".git", ".venv", "venv", ".nox", ".tox", "node_modules", "build", "dist", "__pycache__", "tests", "test"}
PY_SERVERS = {"uvicorn", "gunicorn", "hypercorn", "waitress-serve", "daphne"}


@dataclass(frozen=True)
class ProjectFacts:
    """What certify init found in a project."""

    name: str
    version: tuple[str, str] | None
    source_root: str
    packages: tuple[str, ...]
    tests: str | None
    extras: tuple[str, ...]
    hash_files: tuple[str, ...]
    dependencies: tuple[str, ...]
    app: tuple[str, str] | None
    service_argv: tuple[str, ...] | None
    service_from: str | None
    console_scripts: tuple[str, ...]


def _pyproject(root: Path) -> dict[str, Any]:
    """pyproject.toml as data ({} when absent); a broken one is a UsageError naming it."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        msg = f"{path}: not valid TOML ({exc}); certify init reads it to find the project's name and layout"
        raise UsageError(msg) from None


def _setup_cfg(root: Path) -> configparser.ConfigParser:
    """setup.cfg as data (empty when absent)."""
    parser = configparser.ConfigParser(interpolation=None)
    path = root / "setup.cfg"
    if path.is_file():
        try:
            parser.read_string(path.read_text(encoding="utf-8"))
        except configparser.Error as exc:
            msg = f"{path}: not a readable setup.cfg ({exc.message})"
            raise UsageError(msg) from None
    return parser


def _packages(base: Path) -> tuple[str, ...]:
    """Top-level importable packages (directories with __init__.py) under base, tests excluded."""
    if not base.is_dir():
        return ()
    found = [
        child.name
        for child in sorted(base.iterdir())
        if child.is_dir() and (child / "__init__.py").is_file() and child.name not in SKIP_DIRS
    ]
    return tuple(found)


def _dep_name(requirement: str) -> str:
    """The distribution name of a requirement string, normalised."""
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _find_app(base: Path, packages: tuple[str, ...]) -> tuple[str, str] | None:
    """The first module-level `name = FastAPI(...)`-style assignment: ("asgi"|"wsgi", "module:name")."""
    candidates = [path for pkg in packages for path in sorted((base / pkg).rglob("*.py"))]
    candidates += sorted(p for p in base.glob("*.py") if p.is_file())
    for path in candidates:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
                continue
            func = node.value.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            kind = "asgi" if called in ASGI else "wsgi" if called in WSGI else None
            target = node.targets[0]
            if kind and isinstance(target, ast.Name):
                module = ".".join(path.relative_to(base).with_suffix("").parts).removesuffix(".__init__")
                return kind, f"{module}:{target.id}"
    return None


def _localise(argv: list[str]) -> tuple[str, ...]:
    """A deployment command made to serve one harness instance: 127.0.0.1, the harness's {port}, its python."""
    out = []
    for word in argv:
        local = re.sub(r"\$\{?PORT\}?", "{port}", word)
        out.append(local.replace("0.0.0.0", "127.0.0.1"))  # noqa: S104 - replaced, never bound
    if out and out[0] in PY_SERVERS:
        out = ["{python}", "-m", out[0].replace("-serve", ""), *out[1:]]
    elif out and re.fullmatch(r"python(3(\.\d+)?)?", out[0]):
        out[0] = "{python}"
    return tuple(out)


def _procfile(root: Path) -> tuple[str, ...] | None:
    """The Procfile's web command, localised."""
    path = root / "Procfile"
    if not path.is_file():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("web:"):
            return _localise(shlex.split(line.removeprefix("web:")))
    return None


def _docker_cmd(root: Path) -> tuple[str, ...] | None:
    """The Dockerfile's last CMD in exec (JSON) form, localised."""
    path = root / "Dockerfile"
    if not path.is_file():
        return None
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().upper().startswith("CMD "):
            try:
                value = json.loads(line.strip()[4:])
            except json.JSONDecodeError:
                continue
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                found = _localise(value)
    return found


def _app_argv(app: tuple[str, str]) -> tuple[str, ...]:
    """A production server command for an ASGI (uvicorn) or WSGI (gunicorn) application."""
    kind, spec = app
    if kind == "asgi":
        return ("{python}", "-m", "uvicorn", spec, "--host", "127.0.0.1", "--port", "{port}")
    return ("{python}", "-m", "gunicorn", "--bind", "127.0.0.1:{port}", spec)


def inspect_project(root: Path) -> ProjectFacts:
    """Read the project's metadata, layout, tests and deployment files."""
    data, cfg = _pyproject(root), _setup_cfg(root)
    project = data.get("project", {})
    name = str(project.get("name") or (cfg.get("metadata", "name", fallback="") or root.resolve().name))
    name = re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-._") or "service"
    version = None
    if "version" in project:
        version = ("pyproject.toml", "project.version")
    source_root = "src" if (root / "src").is_dir() and _packages(root / "src") else "."
    base = root / source_root
    packages = _packages(base)
    if version is None:
        for pkg in packages:
            init = (base / pkg / "__init__.py").read_text(encoding="utf-8", errors="replace")
            if re.search(r"^__version__\s*(?::[^=\n]*)?=(?!=)", init, re.M):
                version = (f"{source_root}/{pkg}/__init__.py".removeprefix("./"), "__version__")
                break
    tests = next((d for d in ("tests", "test") if (root / d).is_dir()), None)
    if tests is None and any(root.glob("test_*.py")):
        tests = "."
    extras = tuple(e for e in ("test", "tests", "dev") if e in project.get("optional-dependencies", {}))
    deps = tuple(sorted({_dep_name(d) for d in project.get("dependencies", [])}))
    hash_files = tuple(f for f in ("pyproject.toml", "setup.cfg", "setup.py") if (root / f).is_file())
    hash_files += tuple(sorted(p.name for p in root.glob("requirements*.txt")))
    app = _find_app(base, packages)
    argv, origin = _procfile(root), "Procfile"
    if argv is None:
        argv, origin = _docker_cmd(root), "Dockerfile CMD"
    if argv is None and app is not None:
        argv, origin = _app_argv(app), f"the {app[0].upper()} app {app[1]}"
    return ProjectFacts(
        name=name,
        version=version,
        source_root=source_root,
        packages=packages,
        tests=tests,
        extras=extras[:1],
        hash_files=hash_files,
        dependencies=deps,
        app=app,
        service_argv=argv,
        service_from=origin if argv is not None else None,
        console_scripts=tuple(sorted(project.get("scripts", {}))),
    )


def _toml(value: Any) -> str:
    """A TOML value (strings and lists of strings are all certify init writes)."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def render_config(facts: ProjectFacts) -> str:
    """The commented certify.toml for these facts; every unknown is a `# GAP:` line."""
    lines = [
        "# certify.toml written by `certify init`: what the project shows is configured; each `# GAP:`",
        "# is what it could not tell. `certify run --plan` lists the gaps the harness sees; a gate with",
        "# one ends NOT_RUN or INCONCLUSIVE, never PASS. Reference: README, Configuration reference.",
        "",
        "[target]",
        f"name = {_toml(facts.name)}",
    ]
    if facts.version:
        lines.append(f"version = {{ file = {_toml(facts.version[0])}, key = {_toml(facts.version[1])} }}")
    else:
        lines.append("# GAP: no version found (pyproject [project] version or a package __version__); ID will FAIL")
    if facts.source_root != ".":
        lines.append(f"source_root = {_toml(facts.source_root)}")
    lines.append(f"packages = {_toml(facts.packages)}")
    example = f"{facts.source_root}/{facts.packages[0] if facts.packages else 'pkg'}/core.py".removeprefix("./")
    lines += [
        "# GAP: critical_modules: the modules whose coverage must reach the critical-path bar (G1), e.g.",
        f"# critical_modules = [{_toml(example)}]",
        "",
        "[install]",
    ]
    if {"pyproject.toml", "setup.py", "setup.cfg"} & set(facts.hash_files):
        target = "." + (f"[{facts.extras[0]}]" if facts.extras else "")
        lines.append(f"command = {_toml(['{python}', '-m', 'pip', 'install', '-e', target])}")
    else:
        lines += [
            "# GAP: no pyproject.toml or setup.py: the venv stays bare; install the dependencies here",
            "command = []",
        ]
    if facts.hash_files:
        lines.append(f"hash_files = {_toml(facts.hash_files)}")
    lines.append("")
    if facts.tests is None:
        lines += ["# GAP: no tests found (tests/, test/ or test_*.py): G1 will FAIL on an empty suite", ""]
    lines += _service_lines(facts)
    lines += [
        "# GAP: [bootstrap]: the command that takes a fresh clone to a running service (G7), e.g.",
        '# [bootstrap]\n# command = ["sh", "scripts/bootstrap.sh"]',
        "",
        "# GAP: [gates.G2.requests.<name>]: what the load profiles send, e.g.",
        '# [gates.G2.requests.home]\n# path = "/"',
        "# GAP: [[gates.G4.experiments]]: the faults to inject (see README, gates.G4)",
        "# GAP: E2E journeys: pytest files under e2e/ or [[gates.E2E.cli]]"
        + (f" (console scripts: {', '.join(facts.console_scripts)})" if facts.console_scripts else ""),
    ]
    return "\n".join(lines) + "\n"


def _service_lines(facts: ProjectFacts) -> list[str]:
    """The [service] table, or the gap saying it is missing."""
    if facts.service_argv is None:
        return ["# GAP: [service]: no Procfile, Dockerfile CMD or ASGI/WSGI app found; how to start one instance", ""]
    lines = ["[service]", f"# from {facts.service_from}", f"command = {_toml(facts.service_argv)}"]
    server = facts.service_argv[2] if facts.service_argv[:2] == ("{python}", "-m") else None
    if server and server not in facts.dependencies:
        lines.append(f"# GAP: {server} is not among the project's dependencies: add it, or the service will not start")
    lines += [
        "# GAP: confirm the health endpoints; the harness waits for readiness before any service gate",
        'liveness = "/healthz"',
        'readiness = "/readyz"',
        'metrics = "/metrics"',
        "",
    ]
    return lines


def write_config(root: Path) -> tuple[Path, ProjectFacts]:
    """Write root/certify.toml for the project; never overwrites (UsageError naming the existing file)."""
    if not root.is_dir():
        msg = f"{root}: not a directory"
        raise UsageError(msg)
    path = root / "certify.toml"
    if path.exists():
        msg = f"{path}: already exists; certify init never overwrites (move it away to start again)"
        raise UsageError(msg)
    facts = inspect_project(root)
    text = render_config(facts)
    with path.open("x", encoding="utf-8") as handle:  # "x": a file appearing meanwhile is not overwritten
        handle.write(text)
    return path, facts
