"""The policy's regression rules: when a difference between two packs is a regression (`certify compare`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Which figures a regression of which blocks (exit 1), by kind.
KINDS = ("latency", "error_rate", "coverage", "duration")
#: Gates whose figures `certify compare` knows, hence the gates a policy may have judged against a baseline.
JUDGEABLE = ("G1", "G2", "G4", "G7", "PB")


class RegressionRules(BaseModel):
    """Confidence, minimum effect sizes, and which kinds of regression the policy forbids."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    confidence: float = Field(0.95, ge=0.5, lt=1.0, description="Confidence of every interval and test.")
    latency_max_rise_pct: float = Field(
        20.0,
        ge=0,
        description="A latency quantile is a regression when, at `confidence`, it rose by more than this "
        "(the bootstrap interval of new/base lies above 1 + this %).",
    )
    latency_min_effect_ms: float = Field(
        5.0,
        ge=0,
        description="And when its point estimate rose by at least this many ms (noise floor: a busy 2-core "
        "machine doubles a 2.5 ms p90; the 8 -> 16 ms p99 of the regression issue is still caught).",
    )
    max_host_other_cpu_pct: float = Field(
        25.0,
        ge=0,
        description="A G2 profile's latency is not compared ('not compared: host busy', undecided: compare exits 3, "
        "a baseline check is INCONCLUSIVE) when either pack's median CPU taken outside the run during the "
        "profile's measured window (by processes other than the target, its dependencies, Locust and the harness) "
        "exceeds this, in percent of one core (2 cores = 200). Error rates are still compared.",
    )
    max_host_steal_pct: float = Field(
        5.0,
        ge=0,
        description="... or when either pack's median hypervisor steal time in that window exceeds this "
        "(percent of one core).",
    )
    quantiles: tuple[float, ...] = Field((0.5, 0.9, 0.99), min_length=1, description="Latency quantiles compared.")
    forbid_quantiles: tuple[float, ...] = Field((0.9, 0.99), description="Quantiles whose regression blocks.")
    error_rate_min_rise_pp: float = Field(
        0.5, ge=0, description="An error-rate rise significant at `confidence` (Fisher's exact test) and >= this."
    )
    coverage_max_drop_pts: float = Field(
        0.5, ge=0, description="A coverage figure may not drop by more than this many points (the ratchet)."
    )
    duration_max_rise_pct: float = Field(
        50.0, ge=0, description="A recovery, MTTR or bootstrap time (one observation each) rising by more than this %"
    )
    duration_min_effect_s: float = Field(1.0, ge=0, description="... and by at least this many seconds.")
    forbid: tuple[str, ...] = Field(
        ("latency", "error_rate", "coverage"),
        description=f"Kinds whose regression makes `certify compare` exit 1 (of {', '.join(KINDS)}); the "
        "others are reported.",
    )
    baseline: str | None = Field(
        None,
        description="A pack directory, or `newest-certified` / `newest-passing` (the newest such complete run of "
        "the same target and mode in the run history): the judged gates then also FAIL on a forbidden "
        "regression against it. None: no baseline (`certify run --baseline PACK` may add one).",
    )
    judge_gates: tuple[str, ...] = Field(
        ("G1", "G2", "G4"),
        description="The gates judged against the baseline (of G1, G2, G4, G7, PB: the gates whose figures "
        "`certify compare` knows).",
    )
    block_s: float = Field(
        1.0,
        ge=0,
        le=30,
        description="Latency samples are resampled in circular blocks of this many seconds of consecutive "
        "requests (a host stall slows a run of neighbours, which one-by-one resampling would count as "
        "independent evidence); 0: one by one.",
    )
    resamples: int = Field(2000, ge=200, le=20000, description="Bootstrap resamples per figure.")
    seed: int = Field(20261207, description="Seed of the bootstrap (a rerun gives the same intervals).")

    @model_validator(mode="after")
    def _known(self) -> RegressionRules:
        """Only known kinds block, quantiles lie in (0, 1), and a blocking quantile is one that is compared."""
        unknown = [kind for kind in self.forbid if kind not in KINDS]
        if unknown:
            msg = f"forbid: unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}"
            raise ValueError(msg)
        if not all(0 < q < 1 for q in self.quantiles):
            raise ValueError("quantiles: each must lie strictly between 0 and 1")
        odd = [gate for gate in self.judge_gates if gate not in JUDGEABLE]
        if odd:
            msg = f"judge_gates: {', '.join(odd)} has no figures to compare; judgeable: {', '.join(JUDGEABLE)}"
            raise ValueError(msg)
        if not set(self.forbid_quantiles) <= set(self.quantiles):
            raise ValueError("forbid_quantiles: each must be one of quantiles")
        return self

    def describe(self) -> list[str]:
        """The rules in words, for `certify policy show`."""
        quantiles = ", ".join(f"{q:g}" for q in self.quantiles)
        blocking = ", ".join(f"{q:g}" for q in self.forbid_quantiles) or "none"
        return [
            f"latency quantiles {quantiles}: regression when new/base is above {1 + self.latency_max_rise_pct / 100:g}"
            f" at {self.confidence:.0%} and by >= {self.latency_min_effect_ms:g} ms (blocking: {blocking})",
            f"host contention: a profile's latency is not compared (host busy) when either pack's median other-CPU"
            f" exceeds {self.max_host_other_cpu_pct:g} % or steal {self.max_host_steal_pct:g} % of one core",
            f"error rate: Fisher's exact test at {self.confidence:.0%} and >= {self.error_rate_min_rise_pp:g} points",
            f"coverage: a drop of more than {self.coverage_max_drop_pts:g} points",
            f"recovery, MTTR, bootstrap: > {self.duration_max_rise_pct:g} % and >= {self.duration_min_effect_s:g} s",
            f"kinds that block: {', '.join(self.forbid) or 'none'}",
            (
                f"baseline: {self.baseline}; judged against it: {', '.join(self.judge_gates)}"
                if self.baseline
                else "baseline: none named (`certify run --baseline PACK` adds one to a run)"
            ),
        ]
