"""O6 collect side: synthetic promtool tests derived from the declared SLOs, ci window scaling, the resolve wait.

For every declared burn-rate alert the harness writes two `promtool test rules` files of its own
against the rule file the target ships: one with an SLI error ratio (1 + margin) x the alert's
threshold (burn_rate x (1 - objective)) held for the long window plus the alert's `for:`, which must
leave the alert firing, and one at (1 - margin) x the threshold, which must not. An alert reading the
wrong metric, or comparing with the wrong threshold, fails the first or the second.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import yaml

from gates.observability.policy import BurnAlert, ObservabilityPolicy, SloSpec
from gates.observability.rulecheck import rule_entries

if TYPE_CHECKING:
    from gates.observability.prom import PrometheusServer

SYNTHETIC = "slo/synthetic.json"
SERIES_LABELS = {"job": "target", "instance": "127.0.0.1:9"}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(text: str) -> float:
    """Seconds of a Prometheus duration such as 1h or 5m."""
    return sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(str(text)))


def threshold_ratio(slo: SloSpec, alert: BurnAlert) -> float:
    """The SLI error ratio an alert fires above: burn_rate x error budget."""
    return alert.burn_rate * (1.0 - slo.objective)


def ci_windows(policy: ObservabilityPolicy) -> dict[str, dict[str, str]]:
    """Alert -> {shipped window: ci window} for the alerts that declare ci windows."""
    out: dict[str, dict[str, str]] = {}
    for slo in policy.slos:
        for alert in slo.alerts:
            mapping = {}
            if alert.ci_long_window:
                mapping[alert.long_window] = alert.ci_long_window
            if alert.ci_short_window:
                mapping[alert.short_window] = alert.ci_short_window
            if mapping:
                out[alert.alert] = mapping
    return out


def scale_expr(expr: str, mapping: dict[str, str]) -> str:
    """An expression with each range `[<shipped>]` replaced by `[<ci>]` (one pass, so 1h->5m, 5m->10s do not chain)."""
    if not mapping:
        return expr
    pattern = re.compile(r"\[\s*(" + "|".join(re.escape(w) for w in mapping) + r")\s*\]")
    return pattern.sub(lambda m: f"[{mapping[m.group(1)]}]", expr)


def _series(slo: SloSpec, ratio: float, per_step: float, steps: int) -> list[dict[str, str]]:
    """Counter series whose increments give the SLI error `ratio` (per_step events a step)."""
    bad, good = per_step * ratio, per_step * (1.0 - ratio)

    def series(name: str, labels: dict[str, str], inc: float) -> dict[str, str]:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted({**SERIES_LABELS, **labels}.items()))
        return {"series": f"{name}{{{inner}}}", "values": f"0+{inc:.6g}x{steps}"}

    if slo.kind == "ratio":
        return [
            series(slo.metric, {**slo.labels, **slo.good_labels}, good),
            series(slo.metric, {**slo.labels, **slo.bad_labels}, bad),
        ]
    return [
        series(f"{slo.metric}_bucket", {**slo.labels, "le": slo.le}, good),
        series(f"{slo.metric}_bucket", {**slo.labels, "le": "+Inf"}, per_step),
        series(f"{slo.metric}_count", slo.labels, per_step),
    ]


def synthetic_test(  # noqa: PLR0917 - one test file is the product of these six facts
    slo: SloSpec, alert: BurnAlert, rule_file: str, for_s: float, case: str, margin: float
) -> Any:
    """A promtool test file: `fire` (ratio above the threshold, must fire) or `quiet` (below, must not)."""
    wanted = threshold_ratio(slo, alert) * ((1 + margin) if case == "fire" else (1 - margin))
    ratio = min(1.0, wanted)
    step_s = max(1.0, min(60.0, seconds(alert.short_window) / 5))
    eval_s = seconds(alert.long_window) + for_s + 5 * step_s
    steps = int(eval_s / step_s) + 5
    query = f'count(ALERTS{{alertname="{alert.alert}",alertstate="firing"}}) > bool 0'
    expected = [{"labels": "{}", "value": 1}] if case == "fire" else []
    return {
        "rule_files": [rule_file],
        "evaluation_interval": f"{int(step_s)}s",
        "tests": [
            {
                "name": f"{alert.alert} {case}: SLI error ratio {ratio:.6g}",
                "interval": f"{int(step_s)}s",
                "input_series": _series(slo, ratio, 1000.0, steps),
                "promql_expr_test": [{"expr": query, "eval_time": f"{int(eval_s)}s", "exp_samples": expected}],
            }
        ],
    }, ratio


def alert_rules(rules: list[dict[str, Any]], read_text: Any) -> dict[str, dict[str, Any]]:
    """Alert name -> {file (relative to the target), for_s, expr} over the copied rule files."""
    found: dict[str, dict[str, Any]] = {}
    for item in rules:
        entries, _ = rule_entries(read_text(item["evidence"]))
        for entry in entries:
            if "alert" in entry:
                found.setdefault(
                    str(entry["alert"]),
                    {"file": item["source"], "for_s": seconds(entry.get("for", "0s")), "expr": str(entry["expr"])},
                )
    return found


def run_synthetic(ctx: Any, rec: Any, policy: ObservabilityPolicy, facts: dict[str, Any]) -> None:
    """Write and run both synthetic test files per declared alert; keep them and promtool's outcome."""
    promtool = facts["promtool"]
    record: dict[str, Any] = {"available": promtool["available"], "why": promtool.get("why", ""), "runs": []}
    if promtool["available"] and policy.slos:
        shipped = alert_rules(facts["rules"], rec.read_text)
        workdir = ctx.scratch / "slo-synthetic"
        for slo in policy.slos:
            for alert in slo.alerts:
                rule = shipped.get(alert.alert)
                if rule is None:
                    continue
                copy = workdir / "rules" / rule["file"]
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text((ctx.target_dir / rule["file"]).read_text(encoding="utf-8"), encoding="utf-8")
                for case in ("fire", "quiet"):
                    record["runs"].append(_one(ctx, rec, slo, alert, rule, case, policy.slo_margin, promtool["path"]))
    rec.write_json(SYNTHETIC, record)


def _one(  # noqa: PLR0917 - one synthetic run is the product of these facts
    ctx: Any, rec: Any, slo: SloSpec, alert: BurnAlert, rule: dict[str, Any], case: str, margin: float, binary: str
) -> dict[str, Any]:
    """One synthetic promtool run."""
    test, ratio = synthetic_test(slo, alert, f"rules/{rule['file']}", rule["for_s"], case, margin)
    name = f"{alert.alert}-{case}.test.yml"
    path = ctx.scratch / "slo-synthetic" / name
    text = "# GENERATED by release-harness G6 (O6) from the declared SLO; not a file the target ships.\n"
    text += yaml.safe_dump(test, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    rec.write_text(f"slo/synthetic/{name}", text)
    run = ctx.run(f"promtool-slo-{alert.alert}-{case}", [binary, "test", "rules", name], cwd=path.parent, timeout_s=60)
    return {
        "slo": slo.name,
        "alert": alert.alert,
        "case": case,
        "ratio": round(ratio, 9),
        "threshold": round(threshold_ratio(slo, alert), 9),
        "file": f"slo/synthetic/{name}",
        "rule_file": rule["file"],
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "output": (run.stdout() + run.stderr())[-1500:],
    }


def must_fire(policy: ObservabilityPolicy) -> tuple[str, ...]:
    """Names of the burn-rate alerts that must fire during the fault."""
    return tuple(a.alert for slo in policy.slos for a in slo.alerts if a.must_fire)


def wait_resolved(server: PrometheusServer, alerts: tuple[str, ...], limit_s: float, interval_s: float) -> float:
    """Wait until none of `alerts` has fired for three evaluations in a row (or the limit); the time it stopped."""
    if not alerts:
        return time.time()
    names = "|".join(re.escape(a) for a in alerts)
    deadline = time.monotonic() + limit_s
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        body = server.query(f'ALERTS{{alertstate="firing",alertname=~"{names}"}}', time.time())
        silent = body.get("status") == "success" and not body.get("data", {}).get("result")
        quiet = quiet + 1 if silent else 0
        time.sleep(interval_s)
    return time.time()


def slo_plan_lines(policy: ObservabilityPolicy, mode: str) -> list[str]:
    """The plan's SLO lines: objectives, synthetic cases, the must-fire alerts and their (ci) windows."""
    if not policy.slos:
        return ["SLOs (O6): none declared"]
    alerts = [a for slo in policy.slos for a in slo.alerts]
    lines = [
        "SLOs (O6): "
        + ", ".join(f"{slo.name} {slo.objective:.3%}" for slo in policy.slos)
        + f"; {2 * len(alerts)} synthetic promtool cases for {len(alerts)} burn-rate alerts"
    ]
    for alert in (a for a in alerts if a.must_fire):
        windows = f"{alert.long_window}/{alert.short_window}"
        if mode == "ci" and (alert.ci_long_window or alert.ci_short_window):
            ci_long = alert.ci_long_window or alert.long_window
            ci_short = alert.ci_short_window or alert.short_window
            windows = f"{ci_long}/{ci_short} (ci copy; ships {windows})"
        lines.append(
            f"must fire in the fault and resolve within {policy.slo_resolve_s:g} s: "
            f"{alert.alert} ({alert.burn_rate:g}x over {windows})"
        )
    return lines
