"""`certify compare BASE NEW`: what changed between two verified packs, with statistics, not eyeballing.

Latency: per load profile and request, each quantile's ratio new/base with a bootstrap interval
(circular block bootstrap in time order, percentile method, seeded: harness/compare_bootstrap.py)
computed on the raw corrected samples the packs keep (gates/G2/load/<profile>/raw.csv.gz), never on
rounded percentiles. Error rate: per profile,
Fisher's exact test on the two 2x2 counts. Coverage, recovery, MTTR and bootstrap times are one
observation per pack: compared against a minimum effect only, and said so. Every figure is classed
as regression, improvement or no significant change under the policy's regression rules, except
a profile's latency where either pack's host was busy (harness/compare_host.py): "not compared:
host busy", undecided. Pure functions of the packs' files and the rules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from harness.compare_bootstrap import block_length, quantile_ratio_interval
from harness.compare_host import HOST_BUSY, HostLoad, apply_host, host_lines, host_load, judge_host
from harness.compare_rules import RegressionRules
from load.stats import http_rows, parse_raw, request_series

REGRESSION, IMPROVEMENT, NO_CHANGE, NOT_COMPARED = "regression", "improvement", "no significant change", "not compared"
#: A quantile is compared only when each side has at least this many samples beyond it (a bootstrap
#: of an extreme quantile resting on a handful of samples is no interval): p50 needs 30 samples
#: (the floor), p90 100, p99 1,000.
MIN_TAIL = 10
MIN_SAMPLES = 30


def needed_samples(q: float) -> int:
    """Samples a side needed to compare quantile q."""
    return max(MIN_SAMPLES, math.ceil(MIN_TAIL / (1 - q) - 1e-9))


COMPARE_FORMAT = "release-harness-compare/1"

#: Single-observation figures from results.json: (gate, measurement-name pattern, kind, higher is better).
SINGLE_FIGURES: tuple[tuple[str, str, str, bool], ...] = (
    ("G1", r"(overall|changed-line) (line |branch )?coverage.*|(line|branch) coverage of .*", "coverage", True),
    ("G4", r".* max recovery time", "duration", False),
    ("PB", r"MTTR (p50|p95|max)", "duration", False),
    ("G7", r"bootstrap total", "duration", False),
)


@dataclass(frozen=True)
class Figure:
    """One compared figure: both values, the change, its interval, its class, and whether it blocks."""

    kind: str
    name: str
    unit: str
    base: float | None
    new: float | None
    change: str
    interval: tuple[float, float] | None
    verdict: str
    blocks: bool
    why: str


def _load_json(path: Path) -> Any:
    """A JSON file of a pack (the packs were verified before this reads them)."""
    return json.loads(path.read_text(encoding="utf-8"))


#: One request's samples: planned start times (s) and corrected latencies (ms), in time order.
Series = tuple[list[float], list[float]]
#: One profile: each request's series, (errors, requests) over every HTTP row, the host's load.
Profile = tuple[dict[str, Series], tuple[int, int], HostLoad | None]


def _profiles(pack: Path) -> dict[str, Profile]:
    """Per G2 profile: each request's latency series, (errors, requests) over every HTTP row, host load."""
    load_dir = pack / "gates" / "G2" / "load"
    if not (load_dir / "index.json").is_file():
        return {}
    found = {}
    for pid in _load_json(load_dir / "index.json").get("profiles", []):
        raw, profile = load_dir / pid / "raw.csv.gz", load_dir / pid / "profile.json"
        if not raw.is_file() or not profile.is_file():
            continue
        rows = parse_raw(raw.read_bytes())
        counted = http_rows(rows)
        errors = sum(1 for row in counted if not row.ok)
        record = _load_json(profile)
        series = request_series(rows, float(record.get("warmup_s", 0.0)))
        found[pid] = (series, (errors, len(counted)), host_load(record))
    return found


def _latency_figures(
    name: str, base: list[float], new: list[float], rules: RegressionRules, blocks: tuple[int, int] = (1, 1)
) -> list[Figure]:
    """The compared quantiles of one request of one profile (those with enough samples beyond them).

    base and new are in time order; `blocks` are their block lengths in samples (1, 1: iid).
    """
    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    comparable = tuple(q for q in rules.quantiles if min(len(b), len(n)) >= needed_samples(q))
    intervals = {}
    if comparable:
        found = quantile_ratio_interval(
            b,
            n,
            comparable,
            confidence=rules.confidence,
            resamples=rules.resamples,
            seed=rules.seed,
            base_block=blocks[0],
            new_block=blocks[1],
        )
        intervals = dict(zip(comparable, found, strict=True))
    figures = []
    limit = 1 + rules.latency_max_rise_pct / 100
    for q in rules.quantiles:
        label = f"{name} p{round(q * 100, 1):g}"
        if q not in intervals:
            why = f"{len(b)} and {len(n)} samples; comparing p{round(q * 100, 1):g} needs {needed_samples(q)} a side"
            figures.append(Figure("latency", label, "ms", None, None, "-", None, NOT_COMPARED, False, why))
            continue
        low, high = intervals[q]
        old_v, new_v = float(np.quantile(b, q)), float(np.quantile(n, q))
        shift = new_v - old_v
        if low > limit and shift >= rules.latency_min_effect_ms:
            verdict, why = REGRESSION, f"new/base >= {low:.2f} at {rules.confidence:.0%}, above {limit:.2f}"
        elif high < 1 / limit and -shift >= rules.latency_min_effect_ms:
            verdict, why = IMPROVEMENT, f"new/base <= {high:.2f} at {rules.confidence:.0%}, below {1 / limit:.2f}"
        else:
            verdict = NO_CHANGE
            why = f"interval {low:.2f}-{high:.2f} of new/base" + (
                "; significant but below the minimum effect" if low > 1 or high < 1 else ""
            )
        figures.append(
            Figure(
                "latency",
                label,
                "ms",
                round(old_v, 3),
                round(new_v, 3),
                f"{shift:+.2f} ms ({new_v / old_v - 1:+.0%})" if old_v else f"{shift:+.2f} ms",
                (round(low, 4), round(high, 4)),
                verdict,
                verdict == REGRESSION and q in rules.forbid_quantiles and "latency" in rules.forbid,
                why,
            )
        )
    return figures


def _error_figure(pid: str, base: tuple[int, int], new: tuple[int, int], rules: RegressionRules) -> Figure:
    """The error rate of one profile: Fisher's exact test, one-sided each way, and the minimum rise."""
    (be, bn), (ne, nn) = base, new
    if not bn or not nn:
        return Figure(
            "error_rate", f"G2 {pid} error rate", "%", None, None, "-", None, NOT_COMPARED, False, "no requests"
        )
    table = np.array([[ne, nn - ne], [be, bn - be]])
    worse = stats.fisher_exact(table, alternative="greater").pvalue
    better = stats.fisher_exact(table, alternative="less").pvalue
    old_r, new_r = 100 * be / bn, 100 * ne / nn
    alpha = 1 - rules.confidence
    if worse < alpha and new_r - old_r >= rules.error_rate_min_rise_pp:
        verdict = REGRESSION
    elif better < alpha and old_r - new_r >= rules.error_rate_min_rise_pp:
        verdict = IMPROVEMENT
    else:
        verdict = NO_CHANGE
    return Figure(
        "error_rate",
        f"G2 {pid} error rate",
        "%",
        round(old_r, 4),
        round(new_r, 4),
        f"{new_r - old_r:+.2f} pp ({be}/{bn} -> {ne}/{nn})",
        None,
        verdict,
        verdict == REGRESSION and "error_rate" in rules.forbid,
        f"Fisher's exact test: p = {worse:.3g} (worse), {better:.3g} (better)",
    )


def _numeric_measurements(pack: Path) -> dict[tuple[str, str], tuple[float, str]]:
    """Every numeric measurement of results.json, by (gate, name)."""
    found = {}
    for result in _load_json(pack / "results.json").get("results", []):
        for m in (result.get("verdict") or {}).get("measurements") or ():
            value = m.get("value")
            if isinstance(value, int | float) and not isinstance(value, bool):
                found[(str(result["gate"]), str(m["name"]))] = (float(value), str(m.get("unit") or ""))
    return found


def _single_figure(
    spec: tuple[str, str, str, bool], pair: tuple[float, float], unit: str, rules: RegressionRules
) -> Figure:
    """A figure observed once per pack (spec: gate, name, kind, higher is better): judged on the minimum effect only."""
    gate, name, kind, higher_better = spec
    old_v, new_v = pair
    shift = new_v - old_v
    worse = -shift if higher_better else shift
    if kind == "coverage":
        regressed, improved = worse > rules.coverage_max_drop_pts, -worse > rules.coverage_max_drop_pts
        rule = f"the ratchet: a drop of more than {rules.coverage_max_drop_pts:g} points"
    else:
        rel = abs(shift) / old_v * 100 if old_v else float("inf")
        big = rel > rules.duration_max_rise_pct and abs(shift) >= rules.duration_min_effect_s
        regressed, improved = big and worse > 0, big and worse < 0
        rule = f"more than {rules.duration_max_rise_pct:g} % and {rules.duration_min_effect_s:g} s"
    verdict = REGRESSION if regressed else IMPROVEMENT if improved else NO_CHANGE
    return Figure(
        kind,
        f"{gate} {name}",
        unit,
        old_v,
        new_v,
        f"{shift:+.3g} {unit}".rstrip(),
        None,
        verdict,
        regressed and kind in rules.forbid,
        f"one observation per pack: no interval; {rule}",
    )


Measured = dict[tuple[str, str], tuple[float, str]]


def single_figures(old_m: Measured, new_m: Measured, rules: RegressionRules) -> list[Figure]:
    """Coverage, recovery, MTTR and bootstrap figures present in both sets of measurements, by (gate, name)."""
    figures = []
    for gate, pattern, kind, higher_better in SINGLE_FIGURES:
        for key in sorted(k for k in old_m.keys() & new_m.keys() if k[0] == gate and re.fullmatch(pattern, k[1])):
            pair = (old_m[key][0], new_m[key][0])
            figures.append(_single_figure((gate, key[1], kind, higher_better), pair, new_m[key][1], rules))
    return figures


def profile_figures(
    base: Path, new: Path, rules: RegressionRules
) -> tuple[list[Figure], list[str], list[dict[str, Any]]]:
    """Latency and error-rate figures of the profiles both packs hold, the profiles one holds, the host verdicts.

    A profile whose host was busy in either pack has its latency figures not compared; its error rate still is.
    """
    figures: list[Figure] = []
    host: list[dict[str, Any]] = []
    old_p, new_p = _profiles(base), _profiles(new)
    for pid in sorted(old_p.keys() & new_p.keys()):
        (old_lat, old_err, old_host), (new_lat, new_err, new_host) = old_p[pid], new_p[pid]
        verdict = judge_host(f"G2 {pid}", old_host, new_host, rules)
        host.append(verdict.record())
        for request in sorted(old_lat.keys() & new_lat.keys()):
            (old_t, old_ms), (new_t, new_ms) = old_lat[request], new_lat[request]
            blocks = (block_length(old_t, rules.block_s), block_length(new_t, rules.block_s))
            latency = _latency_figures(f"G2 {pid} {request}", old_ms, new_ms, rules, blocks)
            figures += apply_host(latency, verdict)
        figures.append(_error_figure(pid, old_err, new_err, rules))
    return figures, sorted(old_p.keys() ^ new_p.keys()), host


def compare_packs(base: Path, new: Path, rules: RegressionRules) -> dict[str, Any]:
    """compare.json of two (already verified) packs: every figure both hold, classed; pure."""
    figures, only_in_one, host = profile_figures(base, new, rules)
    figures += single_figures(_numeric_measurements(base), _numeric_measurements(new), rules)
    labels = (REGRESSION, IMPROVEMENT, NO_CHANGE, HOST_BUSY)
    counts = {label: sum(f.verdict == label for f in figures) for label in labels}
    return {
        "format": COMPARE_FORMAT,
        "base": _identity(base),
        "new": _identity(new),
        "rules": rules.model_dump(mode="json"),
        "only_in_one": only_in_one,
        "counts": counts,
        "blocking": [f.name for f in figures if f.blocks],
        # not compared because a side's host was busy: the comparison is undecided (exit 3), not clean
        "undecided": [f.name for f in figures if f.verdict == HOST_BUSY],
        "host": host,
        "figures": [asdict(f) for f in figures],
    }


def _identity(pack: Path) -> dict[str, Any]:
    """Which run a pack is: its path, commit, mode, start time and policy."""
    run = _load_json(pack / "run.json")
    target = run.get("target") or {}
    return {
        "pack": str(pack),
        "target": target.get("name"),
        "commit": target.get("commit"),
        "mode": run.get("mode"),
        "started_at": run.get("started_at"),
        "policy": run.get("policy", {}).get("name"),
    }


def compare_markdown(report: dict[str, Any]) -> str:
    """compare.md: the verdict line, then one table row per figure; pure."""
    base, new, counts = report["base"], report["new"], report["counts"]
    head = (
        f"REGRESSION: {', '.join(report['blocking'])}"
        if report["blocking"]
        else f"NOT DECIDED: {len(report['undecided'])} figure(s) not compared, host busy"
        if report.get("undecided")
        else "no regression the policy forbids"
    )
    lines = [
        f"# Compare: {head}",
        "",
        f"Base: `{base['pack']}` ({base['target']} {str(base['commit'])[:10]}, {base['mode']}, {base['started_at']})  ",
        f"New: `{new['pack']}` ({new['target']} {str(new['commit'])[:10]}, {new['mode']}, {new['started_at']})  ",
        f"{counts[REGRESSION]} regression(s), {counts[IMPROVEMENT]} improvement(s), "
        f"{counts[NO_CHANGE]} without significant change, {counts.get(HOST_BUSY, 0)} not compared (host busy); "
        f"confidence {report['rules']['confidence']:.0%}.",
        "",
        *(f"- host: {line}" for line in host_lines(report.get("host", []))),
        *([""] if host_lines(report.get("host", [])) else []),
        "| figure | base | new | change | interval (new/base) | class | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:
        interval = f"{f['interval'][0]:.2f}-{f['interval'][1]:.2f}" if f["interval"] else "-"
        verdict = (
            f["verdict"].upper() + (" (blocks)" if f["blocks"] else "") if f["verdict"] == REGRESSION else f["verdict"]
        )
        lines.append(
            f"| {f['name']} | {_num(f['base'])} {f['unit']} | {_num(f['new'])} {f['unit']} | {f['change']} "
            f"| {interval} | {verdict} | {f['why']} |"
        )
    if report["only_in_one"]:
        lines += ["", f"Profiles in only one of the packs (not compared): {', '.join(report['only_in_one'])}"]
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    """A figure for the table."""
    return "-" if value is None else f"{value:g}"


def summary_lines(report: dict[str, Any], pick: Callable[[dict[str, Any]], bool] | None = None) -> Iterable[str]:
    """What `certify compare` prints: each figure not 'no significant change', the host notes, the verdict."""
    for f in report["figures"]:
        if (pick or (lambda fig: fig["verdict"] not in (NO_CHANGE,)))(f):
            yield f"{f['verdict']:<12} {f['name']}: {_num(f['base'])} -> {_num(f['new'])} {f['unit']} ({f['change']})"
    yield from (f"host: {line}" for line in host_lines(report.get("host", [])))
    c = report["counts"]
    tail = f"{c[REGRESSION]} regression(s), {c[IMPROVEMENT]} improvement(s), {c[NO_CHANGE]} unchanged"
    undecided = report.get("undecided") or []
    if undecided:
        tail += f", {len(undecided)} not compared (host busy)"
    if report["blocking"]:
        yield f"REGRESSION ({', '.join(report['blocking'])}); " + tail
    elif undecided:
        yield f"NOT DECIDED (host busy: {', '.join(undecided)}); " + tail
    else:
        yield "no forbidden regression; " + tail
