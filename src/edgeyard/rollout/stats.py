"""Is the new release worse than the one it replaces, on live traffic? The tests a rollout step
runs between its cohort (new release) and the rest of the fleet (old release).

The two cohorts run at the same time over the same step, so time-of-day and load effects hit
both alike. Calls from one device are not independent (a broken phone fails every call; a busy
one is slow for minutes), and treating them as if they were would halt healthy rollouts: rates
take the devices as their units (cluster-robust variance), latency the time buckets (the
server's aggregation buckets, 5 minutes by default), each compared within the bucket.

Figures (each has a margin: how much worse counts as worse):
- rates (fallbacks per call, engine errors per call), from per-device totals: the ratio new /
  old. Worse: the ratio is above 1 + margin with evidence (one-sided z on the log ratio <
  alpha). Not worse: the upper confidence bound is below 1 + margin (or the new rate's is below
  (1 + margin) x old + an absolute floor).
- latency p90 (per engine): per bucket, the log of the new cohort's p90 over the old cohort's;
  their mean against log(1 + margin) by a one-sided t-test over the buckets (the buckets are
  the units, so their scatter carries the overdispersion).
- expected accuracy (mean top-1 confidence, for classifiers): the difference new - old; worse:
  below -margin with evidence.
- drift: the new release's own drift verdict against its build-time reference, where the old
  release's is clean: worse.

`alpha` is the false-halt budget of one look at one figure: the figures are tested at every look
of every step, so the plan divides the rollout's budget among them (Bonferroni), as the gate
does. `beta` is the level of "not worse", which lets a step advance: the chance of taking a
release that is worse by more than the margin one step further, where the next, larger cohort
tests it again. The two differ on purpose: a false halt costs a release, an advance by mistake
costs one step; and "not worse" within a 25% margin cannot be shown at 1e-5 from a cohort of a
few hundred devices of which a few are broken phones.
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


def _outcome(p_worse: float, p_not: float, alpha: float, beta: float | None) -> str:
    if p_worse < alpha:
        return WORSE
    if p_not < (alpha if beta is None else beta):
        return NOT_WORSE
    return UNDECIDED


def rate_ratio(figure: str, events_new: np.ndarray, calls_new: np.ndarray,
               events_old: np.ndarray, calls_old: np.ndarray, margin: float, alpha: float,
               min_calls: int = 200, floor: float = 0.001, beta: float | None = None
               ) -> Verdict:
    """Events per call, new / old, from per-device totals over the step (one entry per device
    of each cohort). The devices are the units: a cohort's rate is sum(events) / sum(calls),
    and its variance the cluster-robust (ratio-estimator) one, sum((e_d - R c_d)^2) / C^2 x
    n / (n - 1), never below the Poisson variance R / C. So one broken phone that fails every
    call, or a cohort that happens to hold a few of them, widens the interval instead of
    halting a healthy rollout. `floor`: an absolute rate (per call) below which the new cohort
    is not worse whatever the ratio: with no events on either side a ratio cannot be bounded,
    but 0 in 10,000 calls is fine."""
    en, cn, eo, co = (np.asarray(a, dtype=np.float64) for a in
                      (events_new, calls_new, events_old, calls_old))
    samples = {"calls_new": int(cn.sum()), "calls_old": int(co.sum()),
               "events_new": int(en.sum()), "events_old": int(eo.sum()),
               "devices_new": int(np.count_nonzero(cn)), "devices_old": int(np.count_nonzero(co))}
    threshold = 1.0 + margin
    if cn.sum() < min_calls or co.sum() < min_calls:
        return Verdict(figure, UNDECIDED, None, threshold, 1.0, 1.0, samples, "too few calls")
    # continuity: half an event on each side, so zero-event cohorts have a finite ratio
    rn, vn = _cluster_rate(en, cn)
    ro, vo = _cluster_rate(eo, co)
    ratio = rn / ro
    se = math.sqrt(vn / rn ** 2 + vo / ro ** 2)  # of the log ratio (delta method)
    z = (math.log(ratio) - math.log(threshold)) / se
    p_worse, p_not = _norm_sf(z), _norm_sf(-z)
    # absolute: the new rate's one-sided upper bound against (1 + margin) x old + floor
    z_new = (ro * threshold + floor - rn) / math.sqrt(vn)
    p_not = min(p_not, _norm_sf(z_new))
    poisson = (en.sum() + 0.5) / cn.sum() ** 2
    return Verdict(figure, _outcome(p_worse, p_not, alpha, beta), ratio, threshold, p_worse, p_not,
                   samples, f"device-level variance x{vn / poisson:.2f} the Poisson one")


def _cluster_rate(e: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """A cohort's rate (half an event added) and its cluster-robust variance."""
    keep = c > 0
    e, c = e[keep], c[keep]
    total = float(c.sum())
    rate = (float(e.sum()) + 0.5) / total
    n = len(c)
    robust = float(np.sum((e - rate * c) ** 2)) / total ** 2 * (n / (n - 1)) if n > 1 else 0.0
    return rate, max(robust, rate / total)


def quantile_ratio(figure: str, log_ratios: np.ndarray, calls_new: int, margin: float,
                   alpha: float, min_calls: int = 200, min_buckets: int = 5,
                   beta: float | None = None) -> Verdict:
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
    return Verdict(figure, _outcome(p_worse, p_not, alpha, beta), math.exp(mean), threshold, p_worse,
                   p_not, samples, f"per-bucket log ratio sd {float(r.std(ddof=1)):.3f}")


def _t_sf(t: float, df: int) -> float:
    """P(T > t), Student's t with `df` degrees of freedom (scipy, which the server has)."""
    from scipy import stats as st

    return float(st.t.sf(t, df))


def mean_difference(figure: str, mean_new: float, var_new: float, n_new: int, mean_old: float,
                    var_old: float, n_old: int, margin: float, alpha: float,
                    min_n: int = 200, beta: float | None = None) -> Verdict:
    """new - old of a mean (expected accuracy: the mean top-1 confidence); worse: below
    -margin."""
    samples = {"n_new": int(n_new), "n_old": int(n_old)}
    if n_new < min_n or n_old < min_n:
        return Verdict(figure, UNDECIDED, None, -margin, 1.0, 1.0, samples, "too few samples")
    diff = mean_new - mean_old
    se = math.sqrt(max(var_new, 1e-12) / n_new + max(var_old, 1e-12) / n_old)
    z = (-margin - diff) / se
    p_worse, p_not = _norm_sf(z), _norm_sf(-z)
    return Verdict(figure, _outcome(p_worse, p_not, alpha, beta), diff, -margin, p_worse, p_not,
                   samples)


@dataclass
class Evidence:
    """What one look compares, gathered over the current step (the server reads it from its
    database, the calibration benchmark simulates it):
    devices_new / devices_old: per device of each cohort, (calls, fallbacks, engine errors);
    latency: per engine both cohorts use, (per-bucket log(p90 new / p90 old), new calls);
    accuracy: (mean, variance, n) of the top-1 confidence, new then old, for classifiers."""

    devices_new: np.ndarray
    devices_old: np.ndarray
    latency: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    accuracy: tuple[tuple[float, float, int], tuple[float, float, int]] | None = None


def verdicts(plan: Any, ev: Evidence) -> list[Verdict]:
    """Every figure's verdict for one look: "worse" at the plan's per-look share of alpha (the
    false-halt budget), "not worse" at the plan's beta."""
    alpha = plan.alpha_per_look(2 + len(ev.latency) + 1)
    dn = np.asarray(ev.devices_new, dtype=np.float64).reshape(-1, 3)
    do = np.asarray(ev.devices_old, dtype=np.float64).reshape(-1, 3)
    beta = plan.beta
    out = [rate_ratio(figure, dn[:, col], dn[:, 0], do[:, col], do[:, 0],
                      margin=plan.fallback_margin, alpha=alpha, min_calls=plan.min_calls,
                      floor=plan.fallback_floor, beta=beta)
           for figure, col in (("fallback rate", 1), ("engine error rate", 2))]
    for engine, (log_ratios, calls) in sorted(ev.latency.items()):
        out.append(quantile_ratio(f"p90 latency {engine}", log_ratios, calls,
                                  plan.latency_margin, alpha, plan.min_calls, beta=beta))
    if ev.accuracy is not None:
        (mn, vn, nn), (mo, vo, no) = ev.accuracy
        out.append(mean_difference("expected accuracy (mean top-1 confidence)", mn, vn, nn,
                                   mo, vo, no, plan.accuracy_margin, alpha, plan.min_calls,
                                   beta=beta))
    return out


def combine(verdicts: list[Verdict]) -> str:
    """A step's decision from its figures: any worse -> worse; all (at least one) not worse ->
    not worse; else undecided (the step holds on and looks again)."""
    if any(v.outcome == WORSE for v in verdicts):
        return WORSE
    if verdicts and all(v.outcome == NOT_WORSE for v in verdicts):
        return NOT_WORSE
    return UNDECIDED
