"""Is the new release worse than the one it replaces, on live traffic? The tests a rollout step
runs between its cohort (new release) and the rest of the fleet (old release).

The two cohorts run at the same time, so they are compared bucket by bucket (the server's
aggregation buckets, 5 minutes by default): time-of-day and load effects hit both alike. The
evidence is pooled over the step's buckets, with an overdispersion factor estimated from how
much the per-bucket figures scatter beyond what independent calls would give (quasi-Poisson /
quasi-binomial): calls from one device are not independent (a broken phone fails every call),
and treating them as if they were would halt healthy rollouts.

Figures (each has a margin: how much worse counts as worse):
- rates (fallbacks per call, engine errors per call): the ratio new / old. Worse: the ratio is
  above 1 + margin with evidence (one-sided z on the log ratio < alpha). Not worse: the upper
  confidence bound is below 1 + margin.
- latency p90 (per engine): per bucket, the log of the new cohort's p90 over the old cohort's;
  their mean against log(1 + margin) by a one-sided t-test over the buckets (the buckets are
  the units, so their scatter carries the overdispersion).
- expected accuracy (mean top-1 confidence, for classifiers): the difference new - old; worse:
  below -margin with evidence.
- drift: the new release's own drift verdict against its build-time reference, where the old
  release's is clean: worse.

`alpha` is the false-halt budget of one look at one figure: `decide` is called at every look of
every step, so the plan divides the rollout's budget among them (Bonferroni), as the gate does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WORSE, NOT_WORSE, UNDECIDED = "worse", "not_worse", "undecided"


def _norm_sf(z: float) -> float:
    """P(Z > z) for a standard normal (math.erfc: no scipy on this path)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class Verdict:
    figure: str
    outcome: str  # worse / not_worse / undecided
    estimate: float | None  # the ratio, share or difference
    threshold: float  # what "worse" means for the estimate
    p_worse: float  # one-sided p-value of "worse by more than the margin"
    p_not_worse: float  # one-sided p-value of "within the margin"
    samples: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"figure": self.figure, "outcome": self.outcome, "estimate": self.estimate,
                "threshold": self.threshold, "p_worse": self.p_worse,
                "p_not_worse": self.p_not_worse, "samples": self.samples, "note": self.note}


def _outcome(p_worse: float, p_not: float, alpha: float) -> str:
    if p_worse < alpha:
        return WORSE
    if p_not < alpha:
        return NOT_WORSE
    return UNDECIDED


def rate_ratio(figure: str, events_new: np.ndarray, calls_new: np.ndarray,
               events_old: np.ndarray, calls_old: np.ndarray, margin: float, alpha: float,
               min_calls: int = 200, floor: float = 0.001) -> Verdict:
    """Events per call, new / old, per bucket (arrays aligned by bucket). `floor`: an absolute
    rate (per call) below which the new cohort is not worse whatever the ratio: with no
    fallbacks on either side a ratio cannot be bounded, but 0 in 10,000 calls is fine."""
    en, cn, eo, co = (np.asarray(a, dtype=np.float64) for a in
                      (events_new, calls_new, events_old, calls_old))
    keep = (cn > 0) & (co > 0)
    en, cn, eo, co = en[keep], cn[keep], eo[keep], co[keep]
    samples = {"calls_new": int(cn.sum()), "calls_old": int(co.sum()),
               "events_new": int(en.sum()), "events_old": int(eo.sum()), "buckets": int(keep.sum())}
    threshold = 1.0 + margin
    if cn.sum() < min_calls or co.sum() < min_calls:
        return Verdict(figure, UNDECIDED, None, threshold, 1.0, 1.0, samples, "too few calls")
    # continuity: half an event on each side, so zero-event cohorts have a finite ratio
    rn, ro = (en.sum() + 0.5) / cn.sum(), (eo.sum() + 0.5) / co.sum()
    ratio = rn / ro
    phi = _dispersion(en, cn, eo, co)
    se = math.sqrt(phi * (1.0 / (en.sum() + 0.5) + 1.0 / (eo.sum() + 0.5)))
    z = (math.log(ratio) - math.log(threshold)) / se
    p_worse, p_not = _norm_sf(z), _norm_sf(-z)
    # absolute: the new rate's one-sided upper bound against (1 + margin) x old + floor
    z_new = (ro * threshold + floor - rn) / (math.sqrt(phi * (en.sum() + 0.5)) / cn.sum())
    p_not = min(p_not, _norm_sf(z_new))
    return Verdict(figure, _outcome(p_worse, p_not, alpha), ratio, threshold, p_worse, p_not,
                   samples, f"overdispersion {phi:.2f}")


def _dispersion(en: np.ndarray, cn: np.ndarray, eo: np.ndarray, co: np.ndarray) -> float:
    """Pearson chi-square / df of the per-bucket counts around a model with one rate per cohort
    (floored at 1): how much more the buckets scatter than independent calls would."""
    chi2, df = 0.0, -2
    for e, c in ((en, cn), (eo, co)):
        rate = e.sum() / c.sum() if c.sum() else 0.0
        expected = rate * c
        ok = expected > 0
        chi2 += float(np.sum((e[ok] - expected[ok]) ** 2 / expected[ok]))
        df += int(ok.sum())
    return max(1.0, chi2 / df) if df > 0 else 1.0


def quantile_ratio(figure: str, log_ratios: np.ndarray, calls_new: int, margin: float,
                   alpha: float, min_calls: int = 200, min_buckets: int = 5) -> Verdict:
    """p90 latency, new / old, from the per-bucket ratios `log_ratios` (log of the new cohort's
    p90 over the old cohort's, in buckets where both have calls enough for a p90). The buckets
    are the units: their scatter carries device-to-device and load differences, and both
    cohorts in a bucket ran at the same time. Worse: the mean log ratio is above log(1 +
    margin) with evidence (one-sided t-test); not worse: below it."""
    r = np.asarray(log_ratios, dtype=np.float64)
    r = r[np.isfinite(r)]
    threshold = 1.0 + margin
    samples = {"calls_new": int(calls_new), "buckets": int(r.size)}
    if calls_new < min_calls or r.size < min_buckets:
        return Verdict(figure, UNDECIDED, None if r.size == 0 else float(np.exp(r.mean())),
                       threshold, 1.0, 1.0, samples, "too few calls or buckets")
    mean = float(r.mean())
    se = max(float(r.std(ddof=1)) / math.sqrt(r.size), 1e-9)
    t = (mean - math.log(threshold)) / se
    p_worse, p_not = _t_sf(t, r.size - 1), _t_sf(-t, r.size - 1)
    return Verdict(figure, _outcome(p_worse, p_not, alpha), math.exp(mean), threshold, p_worse,
                   p_not, samples, f"per-bucket log ratio sd {float(r.std(ddof=1)):.3f}")


def _t_sf(t: float, df: int) -> float:
    """P(T > t), Student's t with `df` degrees of freedom (scipy, which the server has)."""
    from scipy import stats as st

    return float(st.t.sf(t, df))


def mean_difference(figure: str, mean_new: float, var_new: float, n_new: int, mean_old: float,
                    var_old: float, n_old: int, margin: float, alpha: float,
                    min_n: int = 200) -> Verdict:
    """new - old of a mean (expected accuracy: the mean top-1 confidence); worse: below
    -margin."""
    samples = {"n_new": int(n_new), "n_old": int(n_old)}
    if n_new < min_n or n_old < min_n:
        return Verdict(figure, UNDECIDED, None, -margin, 1.0, 1.0, samples, "too few samples")
    diff = mean_new - mean_old
    se = math.sqrt(max(var_new, 1e-12) / n_new + max(var_old, 1e-12) / n_old)
    z = (-margin - diff) / se
    p_worse, p_not = _norm_sf(z), _norm_sf(-z)
    return Verdict(figure, _outcome(p_worse, p_not, alpha), diff, -margin, p_worse, p_not,
                   samples)


def combine(verdicts: list[Verdict]) -> str:
    """A step's decision from its figures: any worse -> worse; all (at least one) not worse ->
    not worse; else undecided (the step holds on and looks again)."""
    if any(v.outcome == WORSE for v in verdicts):
        return WORSE
    if verdicts and all(v.outcome == NOT_WORSE for v in verdicts):
        return NOT_WORSE
    return UNDECIDED
