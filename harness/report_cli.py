"""`certify report PACK --out DIR`: render a pack's index.html with the current templates, elsewhere.

The pack is never written to: its files are copied into DIR (so every link of the index resolves
inside DIR) and the freshly rendered index.html is written there. Old packs, written before the index
existed or by older templates, get an index this way without any change to their signed bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path
from typing import Any

from harness.errors import PackError, UsageError
from harness.evidence import MANIFEST, atomic_write

EXIT_CODES = """exit codes:
  0    DIR/index.html written
  2    PACK is missing, not an evidence pack or INCOMPLETE, or DIR exists and is not empty or lies inside PACK
"""


def add_report_parser(sub: Any) -> None:
    """Register `certify report PACK --out DIR`."""
    report = sub.add_parser(
        "report",
        help="re-render a pack's index.html with the current templates into a new folder (the pack is untouched)",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("pack", type=Path, help="evidence pack directory (only read)")
    report.add_argument("--out", type=Path, required=True, help="new folder: a copy of the pack plus index.html")


def _check_paths(pack: Path, out: Path) -> None:
    """Refuse a missing or non-pack PACK, and an --out that is not new or would write into the pack."""
    if not pack.is_dir():
        msg = f"{pack}: not a directory"
        raise PackError(msg)
    for name in (MANIFEST, "run.json", "results.json"):
        if not (pack / name).is_file():
            msg = f"{pack}: no {name}; not an evidence pack"
            raise PackError(msg)
    resolved_out, resolved_pack = out.resolve(), pack.resolve()
    if resolved_out == resolved_pack or resolved_out.is_relative_to(resolved_pack):
        msg = f"--out {out}: lies inside the pack {pack}; the pack is never written to"
        raise UsageError(msg)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        msg = f"--out {out}: exists and is not an empty directory"
        raise UsageError(msg)


def render_report(pack: Path, out: Path) -> Path:
    """Copy the pack into `out` and write index.html there, rendered from the pack; return its path."""
    from harness.render import render_reports  # noqa: PLC0415 - jinja2 loads only for this command
    from harness.render_index import INDEX  # noqa: PLC0415

    _check_paths(pack, out)
    digest = hashlib.sha256((pack / MANIFEST).read_bytes()).hexdigest()
    rendered = render_reports(pack, digest)
    if INDEX not in rendered:
        msg = f"{pack}: the run is INCOMPLETE (interrupted); it has no index to render"
        raise PackError(msg)
    if out.exists():
        out.rmdir()
    shutil.copytree(pack, out, symlinks=True)
    atomic_write(out / INDEX, rendered[INDEX])
    return out / INDEX


def report_command(args: argparse.Namespace) -> int:
    """certify report PACK --out DIR."""
    path = render_report(args.pack, args.out)
    print(f"wrote {path} (rendered from {args.pack}, which was not changed)")
    return 0
