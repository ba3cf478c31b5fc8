"""X4, pre-commit hooks: format, lint, type check and secret scan hooks pass, run offline by pre-commit.

The target's `.pre-commit-config.yaml` must declare all four kinds, and each hook must pass when
pre-commit's own runner runs it offline.

Offline means every hook is `repo: local` (or `meta`) with a language that needs no installation:
`system`, `script`, `pygrep`, `fail`. A remote repository, or a local hook in any other language
(pre-commit would build an environment for it from the network), is a FAIL: the requirement is a
property of the configuration file, so no amount of network would make the harness's verdict
different, and INCONCLUSIVE ("could not tell") would be wrong. Nothing is run then.

How it runs. The clean copy of the tracked files becomes a scratch git repository (pre-commit
reads `git ls-files`); each hook runs on its own, `python -m pre_commit run HOOK --all-files`, with
PRE_COMMIT_HOME in the run's work dir, an empty HOME, git's global config off, and the target
venv's bin first on a PATH without the harness's venv, so system hooks use the target's tools.
A hook that exits non-zero is a FAIL naming the hook id and the tracked files its output names;
a hook that matched no file ("no files to check") and a config without hooks are never a PASS.

Evidence: `precommit.json` (the hooks read from the config, their category and offline verdict,
the tracked files, each run with its log) and the runs' logs under `runs/`.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from harness.context import GateContext
from harness.errors import TargetError
from harness.model import Status, worst

EVIDENCE = "precommit.json"
HOOK_TIMEOUT_S = 300.0
OFFLINE_LANGUAGES = frozenset({"system", "script", "pygrep", "fail"})
CATEGORIES = ("format", "lint", "type check", "secret scan")
SKIPPED = re.compile(r"\(no files to check\)\s*Skipped")

#: The first word of a hook's entry (basename, or the module after `python -m`) -> its category.
TOOL_CATEGORIES: dict[str, str] = {
    "black": "format",
    "isort": "format",
    "autopep8": "format",
    "yapf": "format",
    "flake8": "lint",
    "pylint": "lint",
    "pyflakes": "lint",
    "bandit": "lint",
    "mypy": "type check",
    "dmypy": "type check",
    "pyright": "type check",
    "pytype": "type check",
    "detect-secrets-hook": "secret scan",
    "detect-secrets": "secret scan",
    "detect_secrets": "secret scan",
    "gitleaks": "secret scan",
    "trufflehog": "secret scan",
}


def hook_category(entry: str) -> str | None:
    """The category a hook's entry command belongs to (`ruff format` format, `ruff check` lint), or None."""
    try:
        words = shlex.split(entry)
    except ValueError:
        return None
    if not words:
        return None
    tool, rest = Path(words[0]).name, words[1:]
    if re.fullmatch(r"python(\d(\.\d+)?)?", tool) and rest[:1] == ["-m"] and len(rest) > 1:
        tool, rest = rest[1], rest[2:]
    if tool == "ruff":
        return "format" if "format" in rest else "lint"
    return TOOL_CATEGORIES.get(tool)


def read_hooks(text: str) -> list[dict[str, Any]]:
    """The hooks a pre-commit config declares, with repo, language, entry, category and why not offline."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("repos"), list):
        msg = "it is not a mapping with a `repos` list"
        raise ValueError(msg)
    hooks = []
    for repo in data["repos"]:
        url = str(repo.get("repo", "")) if isinstance(repo, dict) else ""
        for hook in repo.get("hooks", []) if isinstance(repo, dict) else []:
            if not isinstance(hook, dict):
                continue
            hook_id, language = str(hook.get("id", "")), str(hook.get("language", ""))
            entry = str(hook.get("entry", "")) if url == "local" else ""
            offline = None
            if url not in ("local", "meta"):
                offline = f"it comes from the remote repository {url} (pre-commit would clone it)"
            elif url == "local" and language not in OFFLINE_LANGUAGES:
                offline = f"its language {language!r} makes pre-commit build an environment from the network"
            elif url == "local" and hook.get("additional_dependencies"):
                offline = "it has additional_dependencies, which pre-commit installs from the network"
            hooks.append(
                {
                    "id": hook_id,
                    "repo": url,
                    "language": language,
                    "entry": entry,
                    "category": hook_category(entry) if url == "local" else None,
                    "not_offline": offline,
                }
            )
    return hooks


def _hook_env(ctx: GateContext, tools_bin: Path, base_path: str) -> dict[str, str]:
    """The environment of the pre-commit runs: target venv first on PATH, homes in the work dir."""
    root = ctx.scratch / "precommit"
    for name in ("home", "pre-commit-home", "tmp"):
        (root / name).mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.pathsep.join([str(tools_bin), base_path]),
        "HOME": str(root / "home"),
        "PRE_COMMIT_HOME": str(root / "pre-commit-home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "VIRTUAL_ENV": str(tools_bin.parent),
        "PYTHONUNBUFFERED": "1",
    }


def collect(ctx: GateContext, copy_root: Path, config_name: str, tracked: list[str], base_path: str) -> None:
    """Read the copy's pre-commit config and run each hook offline in it; write precommit.json.

    `base_path` is the PATH a clean machine has (without the harness's venv); the target venv's bin goes first.
    """
    record: dict[str, Any] = {"config": config_name, "present": False, "hooks": [], "runs": [], "tracked": tracked}
    path = copy_root / config_name
    if config_name not in tracked or not path.is_file():
        ctx.write_json(EVIDENCE, record)
        return
    record["present"] = True
    try:
        record["hooks"] = read_hooks(path.read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
        record["parse_error"] = str(exc).splitlines()[0][:300]
    if record.get("parse_error") or not record["hooks"] or any(h["not_offline"] for h in record["hooks"]):
        ctx.write_json(EVIDENCE, record)
        return
    try:
        tools_bin = ctx.target_python().parent
    except TargetError as exc:  # the bootstrap's own verdict stands; X4 cannot be judged without the tools
        record["tools_error"] = str(exc)
        ctx.write_json(EVIDENCE, record)
        return
    env = _hook_env(ctx, tools_bin, base_path)
    record["tools_bin"] = "target venv bin"
    for argv, label in (
        (["git", "init", "-q"], "precommit-git-init"),
        (["git", "add", "-f", "--", "."], "precommit-git-add"),  # the copy holds only tracked files
    ):
        ctx.run(label, argv, cwd=copy_root, env=env, timeout_s=60)
    for hook_id in dict.fromkeys(h["id"] for h in record["hooks"]):
        ctx.progress(f"X4: pre-commit hook {hook_id}")
        argv = [sys.executable, "-m", "pre_commit", "run", hook_id, "--all-files", "--color", "never"]
        argv += ["--config", config_name]
        run = ctx.run(
            f"pre-commit-{re.sub(r'[^A-Za-z0-9_.-]', '_', hook_id)}",
            argv,
            cwd=copy_root,
            env=env,
            timeout_s=HOOK_TIMEOUT_S,
        )
        record["runs"].append(
            {
                "hook": hook_id,
                "returncode": run.returncode,
                "timed_out": run.timed_out,
                "duration_s": round(run.duration_s, 3),
                "log": f"runs/{run.stdout_path.name}",
                "stderr_log": f"runs/{run.stderr_path.name}",
            }
        )
    ctx.write_json(EVIDENCE, record)


def named_files(output: str, tracked: list[str], limit: int = 3) -> list[str]:
    """The tracked files a hook's output names (longest paths first, so `a/b.py` wins over `b.py`)."""
    found: list[str] = []
    for name in sorted(tracked, key=len, reverse=True):
        if re.search(rf"(?<![\w/.-]){re.escape(name)}(?![\w/-])", output) and not any(name in f for f in found):
            found.append(name)
    return sorted(found)[:limit]


def judge(data: dict[str, Any], logs: dict[str, str]) -> tuple[Status, list[str], dict[str, str]]:
    """The X4 status, reasons and per-hook statuses from precommit.json and the run logs; pure."""
    config = data["config"]
    if not data["present"]:
        return Status.FAIL, [f"X4: {config} is not in the target's tracked files"], {}
    if data.get("parse_error"):
        return Status.FAIL, [f"X4: {config} cannot be read: {data['parse_error']}"], {}
    hooks = data["hooks"]
    if not hooks:
        return Status.FAIL, [f"X4: {config} declares no hooks"], {}
    remote = [h for h in hooks if h["not_offline"]]
    if remote:
        why = "; ".join(f"hook {h['id']!r}: {h['not_offline']}" for h in remote[:3])
        return Status.FAIL, [f"X4: {config} has hook(s) that cannot run offline as local/system hooks: {why}"], {}
    if data.get("tools_error"):
        return (
            Status.INCONCLUSIVE,
            [f"X4: the hooks' tools (the target's venv) are not there: {data['tools_error']}"],
            {},
        )
    reasons: list[str] = []
    covered = {h["category"] for h in hooks}
    missing = [c for c in CATEGORIES if c not in covered]
    statuses = [Status.FAIL] if missing else []
    if missing:
        reasons.append(
            f"X4: {config} has no {', no '.join(missing)} hook (needs format, lint, type check, secret scan)"
        )
    per_hook: dict[str, str] = {}
    for run in data["runs"]:
        output = logs.get(run["log"], "") + "\n" + logs.get(run["stderr_log"], "")
        status, reason = _judge_run(run, output, data["tracked"], config)
        per_hook[run["hook"]] = status.value
        statuses.append(status)
        reasons += [reason] if reason else []
    status = worst(statuses) if statuses else Status.INCONCLUSIVE
    if status is Status.PASS:
        reasons.insert(
            0, f"X4: {len(per_hook)} pre-commit hook(s) of {config} passed offline ({', '.join(CATEGORIES)})"
        )
    return status, reasons, per_hook


def _judge_run(run: dict[str, Any], output: str, tracked: list[str], config: str) -> tuple[Status, str | None]:
    """One hook run: PASS, FAIL naming the files its output names, or INCONCLUSIVE when it checked nothing."""
    hook = run["hook"]
    if run["timed_out"] or run["returncode"] is None:
        return Status.FAIL, f"X4: hook {hook!r} did not finish within {HOOK_TIMEOUT_S:g} s"
    if run["returncode"] != 0:
        files = named_files(output, tracked)
        where = f" on {', '.join(files)}" if files else " (its output names no tracked file)"
        tail = " | ".join(line for line in output.splitlines() if line.strip())[-300:]
        return Status.FAIL, f"X4: hook {hook!r} failed{where}: {tail}"
    if SKIPPED.search(output):
        return Status.INCONCLUSIVE, f"X4: hook {hook!r} of {config} matched no file, so it checked nothing"
    return Status.PASS, None
