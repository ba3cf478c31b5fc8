"""`certify init [DIR]`: write a commented certify.toml for a Python project (harness/init_project.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_CODES = """exit codes:
  0    certify.toml written (the line printed counts its gaps)
  2    DIR is not a directory, certify.toml already exists there (never overwritten), or its pyproject.toml
       or setup.cfg cannot be read
"""


def add_init_parser(sub: Any) -> None:
    """Register `certify init [DIR]`."""
    init = sub.add_parser(
        "init",
        help="write a commented certify.toml for a Python project (never overwrites)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reads the project's pyproject.toml/setup.cfg, layout, tests, Procfile, Dockerfile CMD or "
        "ASGI/WSGI app as data and writes certify.toml: what it found is configured, what it could not tell is "
        "a `# GAP:` comment; `certify run --plan` then lists the gaps the harness sees.",
    )
    init.add_argument("dir", nargs="?", type=Path, default=Path("."), help="the project (default: here)")


def init_command(args: argparse.Namespace) -> int:
    """Write the file and say how many gaps it left."""
    from harness.config import load_config  # noqa: PLC0415
    from harness.init_project import write_config  # noqa: PLC0415

    path, facts = write_config(args.dir)
    load_config(args.dir)  # what init writes must load; a failure here is a harness bug, reported as one line
    gaps = sum(line.startswith("# GAP:") for line in path.read_text(encoding="utf-8").splitlines())
    print(
        f"wrote {path} for {facts.name} ({len(facts.packages)} package(s), service from "
        f"{facts.service_from or 'nowhere'}): {gaps} gap(s) to fill; `certify run --target {args.dir} --plan` "
        "lists them"
    )
    return 0
