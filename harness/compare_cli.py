"""`certify compare BASE NEW`: verify both packs, compare them, print the verdict, write compare.json/.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.errors import UsageError

EXIT_CODES = """exit codes:
  0    no regression the policy forbids (improvements and allowed changes are printed)
  1    a forbidden regression, or a pack that does not verify (nothing is compared then)
  2    usage error (a pack that is not a directory or not a pack, an unusable --out or policy)
  3    not decided: no forbidden regression among the compared figures, but some latency figures were
       not compared because the host was busy in either run ("not compared: host busy": other processes'
       CPU or the hypervisor's steal above the policy's [regression] bounds); rerun on a quiet host
"""

#: The exit code of a comparison that is not decided (latency not compared on a busy host).
EXIT_UNDECIDED = 3

COMPARE_JSON, COMPARE_MD = "compare.json", "compare.md"


def add_compare_parser(sub: Any) -> None:
    """Register `certify compare BASE NEW [--out DIR] [--policy FILE]`."""
    compare = sub.add_parser(
        "compare",
        help="compare two evidence packs: latency, error rate, coverage, recovery and bootstrap times",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Both packs are verified first. Latency quantiles get a bootstrap interval on the raw "
        "samples, error rates Fisher's exact test; each figure is classed under the policy's [regression] rules. A "
        "profile whose host was busy in either run has its latency not compared (exit 3).",
    )
    compare.add_argument("base", type=Path, help="the baseline pack")
    compare.add_argument("new", type=Path, help="the pack to judge against it")
    compare.add_argument("--out", type=Path, default=None, help="write compare.json and compare.md into DIR")
    compare.add_argument(
        "--policy", type=Path, default=None, help="the policy whose [regression] rules apply (default: the standard)"
    )


def compare_command(args: argparse.Namespace) -> int:
    """Verify, compare, print, write."""
    from harness.compare import compare_markdown, compare_packs, summary_lines  # noqa: PLC0415 - numpy/scipy
    from harness.evidence import atomic_write  # noqa: PLC0415
    from harness.policy import load_policy  # noqa: PLC0415
    from harness.verify import verify_pack  # noqa: PLC0415

    rules = load_policy(args.policy).policy.regression
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        msg = f"--out {args.out}: exists and is not a directory"
        raise UsageError(msg)
    for label, pack in (("base", args.base), ("new", args.new)):
        report = verify_pack(pack)
        if not report.ok:
            for problem in report.problems:
                print(f"{label}: {problem}")
            print(f"{label} pack {pack} does not verify ({len(report.problems)} problem(s)); nothing compared")
            return 1
    result = compare_packs(args.base.resolve(), args.new.resolve(), rules)
    if args.out is not None:
        atomic_write(args.out / COMPARE_JSON, (json.dumps(result, indent=2, sort_keys=True) + "\n").encode())
        atomic_write(args.out / COMPARE_MD, compare_markdown(result).encode())
    print("\n".join(summary_lines(result)))
    if result["blocking"]:
        return 1
    return EXIT_UNDECIDED if result["undecided"] else 0
