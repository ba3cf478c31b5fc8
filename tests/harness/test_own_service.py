"""The README's "Certify your own service" commands, run verbatim on a fixture project (but the install)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

from tests.conftest import certify, commit_all, git

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "tests" / "fixtures" / "projects" / "flat-cli"


def readme_commands() -> list[list[str]]:
    """The shell lines between the own-service markers of README.md, comments stripped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- own-service:start -->\n```sh\n(.*?)```\n<!-- own-service:end -->", text, re.S)
    assert block is not None, "README lost its own-service block"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_commands_give_a_first_merge_gate_report(tmp_path: Path) -> None:
    """init, --plan and the first ci run work as written; the report is honest about what is not configured."""
    service = tmp_path / "your-service"
    shutil.copytree(PROJECT, service)
    git(service, "init", "-q")
    git(service, "config", "user.name", "Certify Tests")
    git(service, "config", "user.email", "certify-tests@example.invalid")
    commit_all(service, "a service")
    commands = readme_commands()
    assert commands[0][:4] == ["python3", "-m", "pip", "install"]
    assert commands[1] == ["cd", "your-service"]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    for argv in commands[2:]:
        assert argv[0] == "certify", argv
        proc = certify(*argv[1:], cwd=service, env=env)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert proc.returncode in {0, 3}, (argv, proc.stdout, proc.stderr)
    assert (service / "first-pack" / "merge_gate_report.md").is_file()
    results = json.loads((service / "first-pack" / "results.json").read_text(encoding="utf-8"))["results"]
    status = {r["gate"]: r["verdict"]["status"] for r in results if r["gate"] in ("ID", "G1")}
    assert status == {"ID": "PASS", "G1": "INCONCLUSIVE"}
