"""Prometheus text exposition for G6: families and types, label-filtered sums, histogram deltas and p99 buckets.

Pure functions over scrape texts kept in the pack. Parsing uses prometheus_client's own parser, which
strips `_total` from counter family names (family `x`, samples `x_total`) and accepts duplicate samples
silently; duplicates are reported here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

#: Suffixes a family's samples may carry, by family type.
SAMPLE_SUFFIXES = ("", "_total", "_created", "_count", "_sum", "_bucket", "_info", "_gcount", "_gsum")


@dataclass(frozen=True)
class Sample:
    """One exposed sample."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class Scrape:
    """A parsed scrape: family types, samples, and what was wrong with the text."""

    types: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    duplicates: list[str] = field(default_factory=list)

    @property
    def sample_names(self) -> set[str]:
        """Every sample name exposed (x_total, x_bucket, ...)."""
        return {sample.name for sample in self.samples}

    def family_of(self, sample_name: str) -> str | None:
        """The family a sample name belongs to, if exposed."""
        for suffix in SAMPLE_SUFFIXES:
            if suffix and not sample_name.endswith(suffix):
                continue
            base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
            if base in self.types:
                return base
        return None


def parse_scrape(text: str) -> Scrape:
    """Parse exposition text; a malformed text yields a Scrape with `error` set and what parsed before it."""
    scrape = Scrape()
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    try:
        for family in text_string_to_metric_families(text):
            scrape.types[family.name] = family.type
            for item in family.samples:
                labels = tuple(sorted(item.labels.items()))
                key = (item.name, labels)
                if key in seen:
                    scrape.duplicates.append(f"{item.name}{_label_text(labels)}")
                    continue
                seen.add(key)
                scrape.samples.append(Sample(item.name, labels, float(item.value)))
    except ValueError as exc:
        scrape.error = str(exc)[:300]
    return scrape


def _label_text(labels: tuple[tuple[str, str], ...]) -> str:
    """{a="b",...} for a sentence."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}" if labels else ""


def matches(labels: tuple[tuple[str, str], ...], selector: dict[str, str]) -> bool:
    """Whether every selector label's value fully matches its regex (a missing label is the empty string)."""
    present = dict(labels)
    return all(re.fullmatch(pattern, present.get(name, "")) is not None for name, pattern in selector.items())


def selected_sum(scrape: Scrape, name: str, selector: dict[str, str]) -> tuple[float, int]:
    """Sum of the samples called `name` whose labels match; and how many samples matched."""
    values = [s.value for s in scrape.samples if s.name == name and matches(s.labels, selector)]
    return math.fsum(values), len(values)


def bucket_counts(scrape: Scrape, histogram: str, selector: dict[str, str]) -> dict[float, float]:
    """Cumulative bucket counts by upper bound, summed over the matching series of a histogram family."""
    counts: dict[float, float] = {}
    for sample in scrape.samples:
        if sample.name != f"{histogram}_bucket":
            continue
        labels = tuple(item for item in sample.labels if item[0] != "le")
        if not matches(labels, selector):
            continue
        bound = float(dict(sample.labels)["le"])
        counts[bound] = counts.get(bound, 0.0) + sample.value
    return counts


def bucket_delta(before: dict[float, float], after: dict[float, float]) -> list[tuple[float, float]]:
    """(upper bound, cumulative count added between two scrapes), ascending bounds."""
    return [(bound, after[bound] - before.get(bound, 0.0)) for bound in sorted(after)]


def quantile_bucket(buckets: list[tuple[float, float]], q: float) -> int | None:
    """Index of the bucket holding the q-quantile of a cumulative histogram; None when it is empty."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    return next(i for i, (_, cumulative) in enumerate(buckets) if cumulative >= rank - 1e-9)


def bucket_range(buckets: list[tuple[float, float]], index: int) -> tuple[float, float]:
    """(lower, upper] bounds of bucket `index`, clamped to the histogram's ends."""
    index = max(0, min(index, len(buckets) - 1))
    lower = buckets[index - 1][0] if index > 0 else 0.0
    return lower, buckets[index][0]


def changed_samples(before: Scrape, after: Scrape, family: str) -> int:
    """How many samples of a family have a different value (or appeared) between two scrapes."""
    old = {(s.name, s.labels): s.value for s in before.samples if _in_family(s.name, family)}
    count = 0
    for sample in after.samples:
        if not _in_family(sample.name, family) or sample.name.endswith("_created"):
            continue
        if old.get((sample.name, sample.labels)) != sample.value:
            count += 1
    return count


def _in_family(sample_name: str, family: str) -> bool:
    """Whether a sample name belongs to a family (by suffix)."""
    return any(sample_name == family + suffix for suffix in SAMPLE_SUFFIXES)
