"""Statistics for the gate: ratio with a paired bootstrap CI, Mann-Whitney U, McNemar.

The unit of evidence for latency and memory is the measurement round (one fresh process per
artifact per round), not the single call: calls inside one process share its memory layout, CPU
frequency and cache state, so pooling them would overstate the evidence and raise false alarms
on noisy machines. Rounds are interleaved (baseline, candidate, candidate, baseline, ...) and the
two measurements of a round are compared as a pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._deps import require


@dataclass(frozen=True)
class RatioTest:
    ratio: float  # median over rounds of candidate / baseline (paired by round)
    ci_low: float  # (1 - alpha) paired bootstrap interval of that median
    ci_high: float
    p_value: float  # one-sided Wilcoxon signed-rank on the log ratios: candidate larger
    p_mann_whitney: float  # one-sided Mann-Whitney U on the unpaired round values (reported)
    rounds: int


def bootstrap_median(values: np.ndarray, confidence: float, rng: np.random.Generator,
                     n_boot: int = 4000) -> tuple[float, float]:
    """Percentile bootstrap interval of the median, resampling whole rounds."""
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    meds = np.median(values[idx], axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(meds, [tail, 1 - tail])
    return float(lo), float(hi)


def mann_whitney_greater(cand: np.ndarray, base: np.ndarray) -> float:
    """One-sided p-value that candidate values tend to be larger (exact for small samples)."""
    stats = require("scipy.stats", extra="gate", purpose="the gate's statistical tests")
    return float(stats.mannwhitneyu(cand, base, alternative="greater").pvalue)


def signed_rank_greater(log_ratios: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value that the log ratios are centred above 0."""
    stats = require("scipy.stats", extra="gate", purpose="the gate's statistical tests")
    if np.all(log_ratios == 0):
        return 1.0
    return float(stats.wilcoxon(log_ratios, alternative="greater", zero_method="zsplit").pvalue)


def ratio_test(base: np.ndarray, cand: np.ndarray, ci_alpha: float,
               rng: np.random.Generator) -> RatioTest:
    """Compare per-round values of candidate and baseline measured in the same rounds.

    Rounds are paired: round i measured both artifacts back to back, so a slow spell of the
    machine (on these VMs processes run ~40% slower for seconds at a time) hits both and cancels
    in the ratio. The unpaired Mann-Whitney U on the same values is reported for reference; it
    cannot cancel that drift and so needs many more rounds to reach the same confidence.
    """
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    n = min(len(base), len(cand))
    base, cand = base[:n], cand[:n]
    log_r = np.log(cand / base)
    ratio = float(np.exp(np.median(log_r)))
    lo, hi = bootstrap_median(log_r, 1 - ci_alpha, rng)
    return RatioTest(ratio, float(np.exp(lo)), float(np.exp(hi)), signed_rank_greater(log_r),
                     mann_whitney_greater(cand, base), n)


def decide(test: RatioTest, floor: float, alpha: float) -> str:
    """'fail': a regression that is both significant (CI above 1, signed-rank p < alpha) and
    practically large (estimate above 1 + floor). 'pass': the CI rules out a regression larger
    than the floor. Otherwise 'ambiguous': more rounds are needed."""
    if test.ci_low > 1.0 and test.ratio >= 1.0 + floor and test.p_value < alpha:
        return "fail"
    if test.ci_high <= 1.0 + floor:
        return "pass"
    return "ambiguous"


@dataclass(frozen=True)
class McNemar:
    baseline_accuracy: float
    candidate_accuracy: float
    only_baseline_right: int
    only_candidate_right: int
    p_value: float  # one-sided exact test: the candidate is worse


def mcnemar_worse(base_correct: np.ndarray, cand_correct: np.ndarray) -> McNemar:
    """Exact McNemar test on paired correct/incorrect outcomes (same samples, two models)."""
    stats = require("scipy.stats", extra="gate", purpose="the gate's statistical tests")
    b = int(np.sum(base_correct & ~cand_correct))
    c = int(np.sum(~base_correct & cand_correct))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue)
    return McNemar(float(base_correct.mean()), float(cand_correct.mean()), b, c, p)
