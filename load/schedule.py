"""The open-model arrival plan: when each request must start, decided before the run, whatever the target does.

A plan is deterministic (seeded), so the same profile and mode always plan the same arrivals, and the
number of planned arrivals is known before anything is sent: delivery is judged against it.
"""

from __future__ import annotations

import math
import random

from load.profiles import ArrivalShape

SEED = 20240601


def _even_times(shape: ArrivalShape, duration_s: float) -> list[float]:
    """Evenly spaced arrivals following the shape's rate curve."""
    if shape.kind == "constant":
        rate_s = shape.rate_per_min / 60.0
        return [k / rate_s for k in range(math.ceil(duration_s * rate_s)) if k / rate_s < duration_s]
    if shape.kind == "ramp":
        start_s, end_s = shape.start_per_min / 60.0, shape.end_per_min / 60.0
        slope = (end_s - start_s) / duration_s
        times: list[float] = []
        k = 0
        while True:
            # Cumulative arrivals N(t) = a t + slope t^2 / 2; arrival k is where N(t) = k.
            t = k / start_s if slope == 0 else (-start_s + math.sqrt(start_s**2 + 2 * slope * k)) / slope
            if t >= duration_s:
                return times
            times.append(t)
            k += 1
    cycles = max(1, math.floor(duration_s / shape.period_s + 1e-9))
    step = shape.burst_s / shape.burst_arrivals
    return [c * shape.period_s + i * step for c in range(cycles) for i in range(shape.burst_arrivals)]


def _poisson_times(shape: ArrivalShape, duration_s: float, rng: random.Random) -> list[float]:
    """Poisson arrivals with the shape's instantaneous rate (thinning of a homogeneous process)."""
    if shape.kind == "spike":
        rate_max = shape.burst_arrivals / shape.burst_s

        def rate(t: float) -> float:
            return rate_max if (t % shape.period_s) < shape.burst_s else 0.0

    elif shape.kind == "ramp":
        rate_max = max(shape.start_per_min, shape.end_per_min) / 60.0

        def rate(t: float) -> float:
            return (shape.start_per_min + (shape.end_per_min - shape.start_per_min) * t / duration_s) / 60.0

    else:
        rate_max = shape.rate_per_min / 60.0

        def rate(t: float) -> float:
            del t
            return rate_max

    times: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate_max)
        if t >= duration_s:
            return times
        if rng.random() * rate_max <= rate(t):
            times.append(t)


def plan_arrivals(
    shape: ArrivalShape, duration_s: float, mix: dict[str, float], seed: int = SEED
) -> list[list[object]]:
    """[[planned offset s, request name], ...] in time order; names drawn by weight from a seeded RNG."""
    rng = random.Random(seed)  # noqa: S311 - reproducible load plan, not cryptography
    times = _poisson_times(shape, duration_s, rng) if shape.poisson else _even_times(shape, duration_s)
    names = sorted(mix)
    weights = [mix[name] for name in names]
    return [[round(t, 6), rng.choices(names, weights)[0]] for t in times]
