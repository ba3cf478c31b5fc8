"""`certify advisory-db update`: fetch the PyPA advisory database into the harness cache for G5."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UsageError

EXIT_CODES = """exit codes:
  0    the new copy is in place (the line printed names it, its advisories and its date)
  2    usage error (a URL that is not https/http/file, a cache directory that cannot be created)
  5    the database could not be fetched or is not a usable OSV zip; the previous copy is unchanged
"""


def add_advisory_db_parser(sub: Any) -> None:
    """Register `certify advisory-db update [--url URL] [--cache-dir DIR]` on the CLI's sub-parsers."""
    from gates.security.advisory_cache import DEFAULT_URL  # noqa: PLC0415 - keeps `certify --help` light

    advisory = sub.add_parser(
        "advisory-db",
        help="keep a local copy of the PyPA advisory database for G5's offline audit",
        description="A local copy of the PyPA advisory database (OSV JSON, PyPI) in the harness cache; G5 "
        "audits against it when [gates.G5] advisory_db is not set.",
    )
    actions = advisory.add_subparsers(dest="advisory_action", required=True)
    update = actions.add_parser(
        "update",
        help="fetch the advisory database, verify it and make it the cached copy",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download the OSV zip of PyPI advisories, check it is a zip of OSV JSON records with at "
        "least one PyPI advisory, unpack it and switch the cache to it in one rename; a failed or interrupted "
        "update leaves the previous copy in place.",
    )
    update.add_argument("--url", default=DEFAULT_URL, help=f"where to fetch the zip from (default {DEFAULT_URL})")
    update.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the copy is kept (default: ~/.cache/release-harness/advisory-db, the directory G5 reads)",
    )


def advisory_db_command(args: argparse.Namespace) -> int:
    """certify advisory-db update: fetch, verify, switch; prints one line."""
    from gates.security import advisory_cache  # noqa: PLC0415

    if args.advisory_action != "update":
        msg = f"advisory-db: unknown action {args.advisory_action!r}"
        raise UsageError(msg)
    copy = advisory_cache.update(args.url, args.cache_dir)
    used = (
        "G5 uses it when [gates.G5] advisory_db is unset"
        if copy.path.parent == advisory_cache.default_cache_dir().resolve()
        else f'set [gates.G5] advisory_db = "{copy.path.parent / advisory_cache.CURRENT}" to use it'
    )
    newest = (copy.newest_modified or "unknown")[:10]
    print(
        f"advisory database updated: {copy.advisories} advisories ({copy.pypi_advisories} PyPI), newest modified "
        f"{newest}, fetched {copy.fetched_at} from {copy.url}, in {copy.path}; {used}"
    )
    return 0
