"""Circular block bootstrap of quantile ratios for `certify compare` (numpy, seeded, vectorised).

A load run's latencies are a time series, not independent draws: one stall of the host slows every
request in flight for a second, so the slowest 1 % of a run can be a single event. Resampling
requests one by one (the iid bootstrap) treats those neighbours as independent evidence and gives a
p99 interval far too narrow (seen on guardian: one ~1 s stall moved a P4 p99 from 4.4 to 13.3 ms with
an iid interval of 1.29-6.27x, a false regression). The circular block bootstrap (Politis & Romano,
1992) resamples runs of consecutive requests instead: blocks of `block_s` seconds' worth of samples
each side, wrapped at the end, so a stall is in a resample only as often as its block is drawn.
A shift present throughout the run (an endpoint made 2x slower) keeps the same interval as before.

arch's CircularBlockBootstrap implements the same scheme but calls a Python function per resample;
the quantiles of every resample here come from one numpy call per batch instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Resamples drawn per numpy batch (bounds the index arrays to a few tens of MB on 10^4 samples).
BATCH = 100


def block_length(times_s: Sequence[float], block_s: float) -> int:
    """Samples per block: `block_s` seconds at the series' mean rate (1, the iid case, for block_s 0)."""
    if block_s <= 0 or len(times_s) < 2:
        return 1
    span = float(max(times_s) - min(times_s))
    if span <= 0:
        return 1
    return max(1, min(len(times_s), round(len(times_s) / span * block_s)))


def circular_block_indices(rng: np.random.Generator, n: int, reps: int, length: int) -> np.ndarray:
    """`reps` resamples of indices 0..n-1, each made of ceil(n/length) circular blocks cut to n."""
    length = max(1, min(length, n))
    blocks = math.ceil(n / length)
    starts = rng.integers(0, n, size=(reps, blocks))
    return ((starts[:, :, None] + np.arange(length)[None, None, :]) % n).reshape(reps, -1)[:, :n]


def quantile_ratio_interval(
    base: np.ndarray,
    new: np.ndarray,
    quantiles: tuple[float, ...],
    *,
    confidence: float,
    resamples: int,
    seed: int,
    base_block: int = 1,
    new_block: int = 1,
) -> list[tuple[float, float]]:
    """Percentile intervals of quantile(new)/quantile(base) for each quantile; samples in time order."""
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, BATCH):
        reps = min(BATCH, resamples - start)
        b = base[circular_block_indices(rng, len(base), reps, base_block)]
        n = new[circular_block_indices(rng, len(new), reps, new_block)]
        ratios.append(np.quantile(n, quantiles, axis=1) / np.quantile(b, quantiles, axis=1))
    every = np.concatenate(ratios, axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(every, alpha, axis=1), np.quantile(every, 1 - alpha, axis=1)
    return [(float(lo), float(hi)) for lo, hi in zip(np.atleast_1d(low), np.atleast_1d(high), strict=True)]
