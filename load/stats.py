"""Exact statistics from raw per-request rows: percentiles, an order-statistic CI for p99, Wilson bounds.

Pure functions: gates G2/G3 call them in `evaluate` on the raw CSV kept in the pack, so `certify
verify` recomputes every percentile; Locust's own (rounded, bucketed) statistics are never used.
Percentiles are nearest-rank on the sorted samples: the value at 1-based rank ceil(p * n).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

RAW_FIELDS = ("kind", "seq", "request", "planned_s", "sent_s", "end_s", "status", "ok", "error", "end_by")
"""The columns of a driver's raw CSV (load/locustfile.py writes them, load/runner.py merges them)."""
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
HTTP_KINDS = ("arrival", "poll", "follow")
EXACT_BINOMIAL_MAX_N = 20000


@dataclass(frozen=True)
class RawRow:
    """One row of a driver's raw CSV (see load/locustfile.py)."""

    kind: str
    seq: int
    request: str
    planned_s: float
    sent_s: float
    end_s: float | None
    status: str
    ok: bool
    error: str
    end_by: str = ""
    """Whose clock end_s is: "socket" (the kernel's receive stamp of the answer), "driver", or "" (no end)."""


def parse_raw(data: bytes) -> list[RawRow]:
    """Rows of a raw CSV (gzip-compressed or not)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    return [
        RawRow(
            kind=row["kind"],
            seq=int(row["seq"]),
            request=row["request"],
            planned_s=float(row["planned_s"]),
            sent_s=float(row["sent_s"]),
            end_s=float(row["end_s"]) if row["end_s"] else None,
            status=row["status"],
            ok=row["ok"] == "1",
            error=row["error"],
            end_by=row.get("end_by") or "",
        )
        for row in reader
    ]


def nearest_rank(sorted_values: list[float], p: float) -> float:
    """The p-quantile of sorted samples by nearest rank."""
    rank = max(1, math.ceil(p * len(sorted_values) - 1e-9))
    return sorted_values[rank - 1]


def _binomial_cdf(n: int, p: float) -> list[float]:
    """P(B <= k) for k = 0..n, B ~ Binomial(n, p); exact (log space) or normal-approximated for large n."""
    if n > EXACT_BINOMIAL_MAX_N:
        dist = NormalDist(n * p, math.sqrt(n * p * (1 - p)))
        return [dist.cdf(k + 0.5) for k in range(n + 1)]
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    total = 0.0
    cdf = []
    for k in range(n + 1):
        total += math.exp(log_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        cdf.append(min(total, 1.0))
    return cdf


def quantile_ci_ranks(n: int, p: float, confidence: float) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) with P(X_(l) <= q_p <= X_(u)) >= confidence; None where n is too small."""
    if n == 0:
        return None, None
    alpha = (1 - confidence) / 2
    cdf = _binomial_cdf(n, p)
    # X_(u) >= q_p unless at least u samples fall below q_p: P = P(B <= u - 1).
    upper = next((k + 1 for k in range(n) if cdf[k] >= 1 - alpha), None)
    # X_(l) <= q_p unless fewer than l fall below: P(B <= l - 1) must stay <= alpha.
    lower = next((k + 1 for k in range(n - 1, -1, -1) if cdf[k] <= alpha), None)
    return lower, upper


def wilson(failures: int, total: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there is no trial."""
    if total == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    phat = failures / total
    denom = 1 + z * z / total
    centre = (phat + z * z / (2 * total)) / denom
    half = z * math.sqrt(phat * (1 - phat) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def latency_summary(samples_ms: list[float], confidence: float) -> dict[str, Any]:
    """Count, exact percentiles, max and a p99 confidence interval of latency samples in ms."""
    values = sorted(samples_ms)
    summary: dict[str, Any] = {"n": len(values)}
    if not values:
        return {**summary, **dict.fromkeys([name for name, _ in PERCENTILES] + ["max"]), "p99_ci": None}
    for name, p in PERCENTILES:
        summary[name] = round(nearest_rank(values, p), 3)
    summary["max"] = round(values[-1], 3)
    lower, upper = quantile_ci_ranks(len(values), 0.99, confidence)
    summary["p99_ci"] = {
        "confidence": confidence,
        "lower_rank": lower,
        "upper_rank": upper,
        "lower_ms": None if lower is None else round(values[lower - 1], 3),
        "upper_ms": None if upper is None else round(values[upper - 1], 3),
    }
    return summary


def http_rows(rows: list[RawRow]) -> list[RawRow]:
    """The rows that count as HTTP requests: every answered one, and each arrival still unanswered at the end."""
    answered = {row.seq for row in rows if row.kind == "arrival"}
    return [row for row in rows if row.kind in HTTP_KINDS or (row.kind == "unfinished" and row.seq not in answered)]


def request_series(rows: list[RawRow], warmup_s: float) -> dict[str, tuple[list[float], list[float]]]:
    """Per request name after warm-up: planned start times (s) and corrected latencies (ms), in time order."""
    by_request: dict[str, list[tuple[float, float]]] = {}
    for row in http_rows(rows):
        if row.planned_s >= warmup_s and row.end_s is not None:
            by_request.setdefault(row.request, []).append((row.planned_s, (row.end_s - row.planned_s) * 1000))
    series = {}
    for request, pairs in by_request.items():
        pairs.sort()
        series[request] = ([t for t, _ in pairs], [ms for _, ms in pairs])
    return series


def request_latencies(rows: list[RawRow], warmup_s: float) -> dict[str, list[float]]:
    """Corrected HTTP latencies (ms, planned start to answer) after warm-up, per request name."""
    by_request: dict[str, list[float]] = {}
    for row in http_rows(rows):
        if row.planned_s >= warmup_s and row.end_s is not None:
            by_request.setdefault(row.request, []).append((row.end_s - row.planned_s) * 1000)
    return by_request


def _http_samples(rows: list[RawRow], warmup_s: float) -> tuple[list[float], list[float], int, int]:
    """Corrected and uncorrected HTTP latencies (ms) after warm-up, plus request and error counts (all)."""
    corrected: list[float] = []
    uncorrected: list[float] = []
    requests = errors = 0
    for row in http_rows(rows):
        requests += 1
        errors += 0 if row.ok else 1
        if row.planned_s < warmup_s or row.end_s is None:
            continue
        # A request still unanswered at the end counts with the time it had waited so far.
        corrected.append((row.end_s - row.planned_s) * 1000)
        uncorrected.append((row.end_s - row.sent_s) * 1000)
    return corrected, uncorrected, requests, errors


def _ended_by(rows: list[RawRow]) -> dict[str, int]:
    """How many answered HTTP rows were timed by the socket's receive stamp and how many by the driver's clock."""
    counts = {"socket": 0, "driver": 0}
    for row in rows:
        if row.kind in HTTP_KINDS and row.end_s is not None and row.end_by in counts:
            counts[row.end_by] += 1
    return counts


def profile_stats(
    rows: list[RawRow], planned: int, warmup_s: float, lag_bound_s: float, confidence: float
) -> dict[str, Any]:
    """Delivery, HTTP latency (corrected and not), task latency and error counts of one profile run."""
    arrivals = [row for row in rows if row.kind in ("arrival", "drop")]
    answered = {row.seq for row in rows if row.kind == "arrival"}
    unanswered = {row.seq for row in rows if row.kind == "unfinished"} - answered
    dropped = sum(1 for row in rows if row.kind == "drop")
    sent = len(answered) + len(unanswered)
    lags = [row.sent_s - row.planned_s for row in rows if row.kind == "arrival"]
    corrected, uncorrected, requests, errors = _http_samples(rows, warmup_s)
    tasks = [row for row in rows if row.kind == "task"]
    unfinished_tasks = {row.seq for row in rows if row.kind == "unfinished"} - {row.seq for row in tasks}
    task_latency = [
        (row.end_s - row.planned_s) * 1000
        for row in tasks
        if row.ok and row.end_s is not None and row.planned_s >= warmup_s
    ]
    by_error: dict[str, int] = {}
    for row in rows:
        if not row.ok and row.kind != "task":
            by_error[row.error or row.status] = by_error.get(row.error or row.status, 0) + 1
    return {
        "delivery": {
            "planned": planned,
            "recorded": len(arrivals) + len(unanswered),
            "sent": sent,
            "dropped": dropped,
            "delivered_ratio": round(sent / planned, 6) if planned else 0.0,
            "late": sum(1 for lag in lags if lag > lag_bound_s),
            "late_bound_s": lag_bound_s,
            "max_send_lag_ms": round(max(lags, default=0.0) * 1000, 3),
        },
        "warmup_s": warmup_s,
        "http": {
            "requests": requests,
            "errors": errors,
            "corrected_ms": latency_summary(corrected, confidence),
            "uncorrected_ms": latency_summary(uncorrected, confidence),
            "ended_by": _ended_by(rows),
        },
        "tasks": {
            "submitted": len(tasks) + len(unfinished_tasks & {row.seq for row in rows if row.kind == "arrival"}),
            "completed": sum(1 for row in tasks if row.ok),
            "failed": sum(1 for row in tasks if not row.ok) + len(unfinished_tasks & answered),
            "latency_ms": latency_summary(task_latency, confidence),
        },
        "errors_by_kind": dict(sorted(by_error.items(), key=lambda item: (-item[1], item[0]))[:10]),
    }


def windows(rows: list[RawRow], plan_times: list[float], duration_s: float) -> dict[str, Any]:
    """Per-window series for charts: planned/sent/completed per second, errors, corrected latency percentiles."""
    width = next((w for w in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration_s / w <= 120), 1200)
    count = max(1, math.ceil(duration_s / width))
    planned = [0] * count
    sent = [0] * count
    completed = [0] * count
    errors = [0] * count
    latency: list[list[float]] = [[] for _ in range(count)]
    for t in plan_times:
        planned[min(count - 1, int(t // width))] += 1
    for row in rows:
        if row.kind == "arrival":
            sent[min(count - 1, int(row.sent_s // width))] += 1
        if row.kind in HTTP_KINDS and row.end_s is not None:
            index = min(count - 1, int(row.end_s // width))
            completed[index] += 1
            latency[index].append((row.end_s - row.planned_s) * 1000)
        if not row.ok:
            errors[min(count - 1, int((row.end_s or row.sent_s) // width))] += 1
    series: dict[str, Any] = {
        "window_s": width,
        "t_s": [i * width for i in range(count)],
        "planned_per_s": [n / width for n in planned],
        "sent_per_s": [n / width for n in sent],
        "completed_per_s": [n / width for n in completed],
        "errors": errors,
    }
    for name, p in PERCENTILES[:3]:
        series[f"{name}_ms"] = [round(nearest_rank(sorted(v), p), 3) if v else None for v in latency]
    return series
