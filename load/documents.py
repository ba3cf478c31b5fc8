"""load_test_results/ at the pack root: P<n>.json per profile and deterministic SVG charts.

These are documents for people; the verdicts never read them (evaluate recomputes from the raw CSV).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

from harness.context import GateContext
from harness.evidence import dump_json
from load.charts import line_chart
from load.stats import parse_raw, profile_stats, windows

DOCS = "load_test_results"


def resource_summary(resources_csv: str) -> dict[str, Any]:
    """Per role: peak and mean CPU, peak RSS, fds and threads, IO bytes at the end."""
    by_role: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(resources_csv)):
        by_role.setdefault(row["role"], []).append(row)
    summary = {}
    for role, rows in sorted(by_role.items()):
        live = [row for row in rows if int(row["processes"]) > 0] or rows
        cpu = [float(row["cpu_percent"]) for row in live]
        summary[role] = {
            "samples": len(rows),
            "cpu_percent_max": max(cpu),
            "cpu_percent_mean": round(sum(cpu) / len(cpu), 1),
            "rss_bytes_max": max(int(row["rss_bytes"]) for row in live),
            "read_bytes_end": int(live[-1]["read_bytes"]),
            "write_bytes_end": int(live[-1]["write_bytes"]),
            "fds_max": max(int(row["fds"]) for row in live),
            "threads_max": max(int(row["threads"]) for row in live),
        }
    return summary


def _resource_series(
    resources_csv: str,
) -> tuple[list[float], dict[str, list[float | None]], dict[str, list[float | None]]]:
    """CPU and RSS (MiB) series per role on a common time axis."""
    rows = list(csv.DictReader(io.StringIO(resources_csv)))
    times = sorted({float(row["t_s"]) for row in rows})
    position = {t: i for i, t in enumerate(times)}
    cpu: dict[str, list[float | None]] = {}
    rss: dict[str, list[float | None]] = {}
    for row in rows:
        index = position[float(row["t_s"])]
        cpu.setdefault(row["role"], [None] * len(times))[index] = float(row["cpu_percent"])
        rss.setdefault(row["role"], [None] * len(times))[index] = int(row["rss_bytes"]) / 2**20
    return times, cpu, rss


def write_documents(ctx: GateContext, out: Path, policy: Any) -> None:
    """Write load_test_results/P<n>.json, charts and summary.json from the shared run's files."""
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    overview = {"mode": index["mode"], "ci_scale": index["ci_scale"], "locust": index["locust"], "profiles": {}}
    for pid in index["profiles"]:
        pdir = out / pid
        record = json.loads((pdir / "profile.json").read_text(encoding="utf-8"))
        plan = json.loads(gzip.decompress((pdir / "plan.json.gz").read_bytes()))
        rows = parse_raw((pdir / "raw.csv.gz").read_bytes())
        stats = profile_stats(rows, len(plan), record["warmup_s"], record["late_bound_s"], policy.confidence)
        resources_csv = (pdir / "resources.csv").read_text(encoding="utf-8")
        rate = record.get("rate_scale", 1.0)
        note = (
            f"ci mode: {record['duration_s']:g} s of the {record['release_duration_s']:g} s release duration"
            + (f", at {rate:g}x the profile's arrival rate" if rate != 1 else "")
            if record["scaled"]
            else f"release mode: {record['duration_s']:g} s"
        )
        document = {
            "profile": pid,
            "title": record["title"],
            "mode": record["mode"],
            "scaled": record["scaled"],
            "note": note,
            "duration_s": record["duration_s"],
            "release_duration_s": record["release_duration_s"],
            "warmup_s_excluded": record["warmup_s"],
            "shape": record["shape"],
            "rate_scale": rate,
            "release_shape": record.get("release_shape"),
            "mix": record["mix"],
            "thresholds": {"p99_ms": record["p99_ms"], "task_p99_ms": record["task_p99_ms"]},
            "statistics": stats,
            "percentile_method": "nearest rank over every raw sample; p99 CI from binomial order statistics",
            "resources": resource_summary(resources_csv),
            "gpu": record["gpu"],
            # host contention in the measured window (host.csv); absent from packs before issue #23
            "host": record.get("host"),
            "raw_evidence": f"gates/{ctx.spec.id}/load/{pid}/raw.csv.gz",
        }
        ctx.write_document(f"{DOCS}/{pid}.json", dump_json(document))
        plan_times = [float(item[0]) for item in plan]
        _charts(ctx, pid, {**record, "note": note}, (rows, plan_times, resources_csv))
        overview["profiles"][pid] = {
            "note": note,
            "p99_ms": stats["http"]["corrected_ms"]["p99"],
            "requests": stats["http"]["requests"],
            "errors": stats["http"]["errors"],
        }
    ctx.write_document(f"{DOCS}/summary.json", dump_json(overview))


def _charts(ctx: GateContext, pid: str, record: dict[str, Any], data: tuple[list[Any], list[float], str]) -> None:
    """Latency percentiles, planned vs achieved throughput, errors, CPU and RSS over time."""
    rows, plan_times, resources_csv = data
    note = record["note"]
    series = windows(rows, plan_times, max(record["duration_s"], 1.0))
    xs = series["t_s"]
    width = series["window_s"]
    time_axis = "time (s)"
    charts = {
        "latency": line_chart(
            f"{pid} {record['title']}: latency from planned start (per {width} s)",
            (time_axis, "ms"),
            xs,
            {"p50": series["p50_ms"], "p90": series["p90_ms"], "p99": series["p99_ms"]},
            note=note,
        ),
        "throughput": line_chart(
            f"{pid}: planned vs achieved arrivals",
            (time_axis, "per second"),
            xs,
            {"planned": series["planned_per_s"], "sent": series["sent_per_s"], "responses": series["completed_per_s"]},
            note=note,
        ),
        "errors": line_chart(
            f"{pid}: failed requests and tasks (per {width} s)",
            (time_axis, "count"),
            xs,
            {"errors": [float(n) for n in series["errors"]]},
            note=note,
        ),
    }
    times, cpu, rss = _resource_series(resources_csv)
    if times:
        charts["cpu"] = line_chart(f"{pid}: CPU per process tree", (time_axis, "% of one core"), times, cpu, note=note)
        charts["rss"] = line_chart(
            f"{pid}: resident memory per process tree", (time_axis, "MiB"), times, rss, note=note
        )
    for name, svg in charts.items():
        ctx.write_document(f"{DOCS}/{pid}-{name}.svg", svg.encode("utf-8"))
