"""Benchmark: mutants per minute on the reference target's critical modules, with and without test selection.

With selection is what G1.strength does: `mutmut run <names>` runs, for each mutant, only the tests
mutmut's stats run mapped to the mutated function. Without selection runs, for each of the same
mutants, every test of `--tests` (pytest -x, MUTANT_UNDER_TEST set, in mutmut's mutants/ copy).
Each figure is the median of `--repeats` timings of the same seeded sample.

    .venv-dev/bin/python benchmarks/mutation.py --python /var/cache/release-harness/venvs/guardian-*/bin/python

The target's venv must already exist (a G1 run creates it); mutmut is installed there when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gates.mutation import COPY_IGNORED, GENERATE_ONLY, MUTMUT, _setup_cfg


def _g1_settings(target: Path) -> tuple[list[str], list[str]]:
    """The critical modules and mutation_test_paths the target's certify.toml gives G1."""
    config = tomllib.loads((target / "certify.toml").read_text(encoding="utf-8"))
    return list(config["target"]["critical_modules"]), list(config["gates"]["G1"]["mutation_test_paths"])


def _names(work: Path, critical: list[str]) -> list[str]:
    """Every generated mutant name of the critical files."""
    names: list[str] = []
    for path in critical:
        meta = json.loads((work / "mutants" / f"{path}.meta").read_text(encoding="utf-8"))
        names += sorted(meta["exit_code_by_key"])
    return names


def _timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Seconds one command takes (its output discarded)."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    """Generate once, then time the sample with and without selection; print mutants per minute."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, type=Path, help="the target venv's python")
    parser.add_argument("--target", type=Path, default=Path("examples/guardian"))
    parser.add_argument("--sample", type=int, default=12)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    python: Path = args.python
    subprocess.run([str(python), "-m", "pip", "install", "-q", MUTMUT], check=True)
    mutmut = str(python.parent / "mutmut")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "target"
        shutil.copytree(args.target, work, ignore=COPY_IGNORED, symlinks=True)
        critical, tests = _g1_settings(args.target)
        (work / "setup.cfg").write_text(_setup_cfg(["guardian"], critical, tests), encoding="utf-8")
        generate_s = _timed([mutmut, "run", "--max-children", "2", GENERATE_ONLY], work)
        names = _names(work, critical)
        chosen = sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))
        print(f"{len(names)} mutants generated in {generate_s:.1f} s (with the stats run); sample {len(chosen)}")
        # mutmut's fixed cost per invocation (clean and forced-fail test runs), paid once per G1 run.
        overhead_s = [_timed([mutmut, "run", "--max-children", "2", GENERATE_ONLY], work) for _ in range(args.repeats)]
        with_s = [_timed([mutmut, "run", "--max-children", "2", *chosen], work) for _ in range(args.repeats)]
        pytest = [str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *tests]
        without_s = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for name in chosen:
                env = {**os.environ, "MUTANT_UNDER_TEST": name}
                _timed(pytest, work / "mutants", env)
            without_s.append(time.perf_counter() - start)
    fixed_s = statistics.median(overhead_s)
    print(f"mutmut run's fixed cost per invocation: {fixed_s:.1f} s (median of {[round(r, 1) for r in overhead_s]} s)")
    for label, runs in (("with per-function test selection (mutmut)", with_s), ("without (all tests)", without_s)):
        median_s = statistics.median(runs)
        print(f"{label}: {len(chosen) / (median_s / 60):.1f} mutants/min (median of {[round(r, 1) for r in runs]} s)")
    beyond_s = statistics.median(with_s) - fixed_s
    if beyond_s > 0:
        print(f"with selection, beyond mutmut's fixed cost: {len(chosen) / (beyond_s / 60):.1f} mutants/min")


if __name__ == "__main__":
    main()
